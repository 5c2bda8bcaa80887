"""Fuzz detector.images with mutated image files.

Every mutated input must end as an RGB image of the expected shape (the whole
upright picture, within the pixel limit) or as an ImageDecodeError, within a
time bound, under the pipeline's per-file decode deadline; any other exception
or a hang fails. Seeds are
small files generated here, plus two real files from ../shared/samples when
that folder exists.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image

from detector.extract import DecodeTimeout, decode_deadline
from detector.images import ImageDecodeError, decode_image, image_metadata

FUZZ_MAX_PIXELS = 4_000_000  # a mutated header must not make us allocate a huge buffer
HANG_LIMIT_S = 10.0  # the pipeline's per-file deadline, short: a hang fails instead of waiting
SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"


def _encode(img: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def _picture(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
    return Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)


def _generated_seeds() -> dict[str, bytes]:
    picture = _picture(48, 32)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "FuzzCam"
    rgba = picture.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(picture.size))
    frames = [picture.convert("P"), picture.rotate(90).convert("P")]
    return {
        "jpeg": _encode(picture, "JPEG", quality=80, exif=exif),
        "progressive.jpeg": _encode(picture, "JPEG", progressive=True),
        "png": _encode(rgba, "PNG"),
        "gif": _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "webp": _encode(picture, "WEBP", quality=70),
    }


def _sample_seeds() -> dict[str, bytes]:
    if not SAMPLES.is_dir():
        return {}
    seeds = {}
    for suffix in (".jpg", ".png"):
        files = sorted(SAMPLES.rglob(f"*{suffix}"), key=lambda p: (p.stat().st_size, p.name))
        if files:
            seeds[f"sample{suffix}"] = files[0].read_bytes()
    return seeds


SEEDS = {**_generated_seeds(), **_sample_seeds()}

# A mutation is (kind, position, argument); positions are taken modulo the length,
# and small positions are favoured because headers are where parsers branch.
_positions = st.one_of(st.integers(0, 128), st.integers(0, 1 << 20))
_mutation = st.one_of(
    st.tuples(st.just("flip"), _positions, st.integers(1, 255)),
    st.tuples(st.just("truncate"), _positions, st.just(0)),
    st.tuples(st.just("insert"), _positions, st.binary(min_size=1, max_size=48)),
    st.tuples(st.just("delete"), _positions, st.integers(1, 64)),
    st.tuples(st.just("repeat"), _positions, st.integers(1, 64)),
    st.tuples(st.just("set"), _positions, st.sampled_from([0x00, 0xFF, 0x7F, 0x80])),
)


def mutate(data: bytes, mutations: list[tuple]) -> bytes:
    """Apply byte-level mutations in order."""
    buffer = bytearray(data)
    for kind, raw_position, argument in mutations:
        position = raw_position % (len(buffer) + 1)
        if kind == "flip" and position < len(buffer):
            buffer[position] ^= argument
        elif kind == "set" and position < len(buffer):
            buffer[position] = argument
        elif kind == "truncate":
            del buffer[position:]
        elif kind == "insert":
            buffer[position:position] = argument
        elif kind == "delete":
            del buffer[position : position + argument]
        elif kind == "repeat":
            buffer[position:position] = buffer[position : position + argument]
    return bytes(buffer)


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every PNG chunk CRC, so mutations reach the decoder instead of the CRC check."""
    if not data.startswith(b"\x89PNG"):
        return data
    out, pos = bytearray(data[:8]), 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if pos + 12 + length > len(data):
            break
        body = data[pos + 4 : pos + 8 + length]
        out += data[pos : pos + 8 + length] + zlib.crc32(body).to_bytes(4, "big")
        pos += 12 + length
    return bytes(out + data[pos:])


def test_seeds_decode_cleanly():
    assert {"jpeg", "png", "gif", "webp"} <= set(SEEDS)
    for name, data in SEEDS.items():
        decoded = decode_image(data, path=name, max_pixels=FUZZ_MAX_PIXELS)
        assert decoded.image.mode == "RGB", name


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.sampled_from(sorted(SEEDS)),
    mutations=st.lists(_mutation, min_size=1, max_size=4),
    min_side=st.sampled_from([None, 8]),
    fix_crcs=st.booleans(),
)
def test_mutated_files_decode_or_fail_cleanly(seed, mutations, min_side, fix_crcs):
    data = mutate(SEEDS[seed], mutations)
    if fix_crcs:
        data = fix_png_crcs(data)
    name = f"fuzz/{seed}"
    try:
        with decode_deadline(HANG_LIMIT_S):  # the guard the pipeline puts around each file
            decoded = decode_image(data, path=name, max_pixels=FUZZ_MAX_PIXELS, min_side=min_side)
    except DecodeTimeout:
        pytest.fail(f"{name}: decoding hung for {HANG_LIMIT_S:g} s")
    except ImageDecodeError as err:
        assert err.path == name
        assert str(err).startswith(f"{name}: ")
        assert err.reason and err.reason.isprintable()
        event(f"refused: {err.reason.split('(')[0].strip()}")
    else:
        event(f"decoded: {decoded.format}")
        assert decoded.image.mode == "RGB"
        assert decoded.image.width > 0 and decoded.image.height > 0
        assert decoded.width > 0 and decoded.height > 0
        assert decoded.width * decoded.height <= FUZZ_MAX_PIXELS  # bounded memory
        if min_side is None:  # the expected shape: the whole upright picture
            assert decoded.image.size == (decoded.width, decoded.height)
        else:  # a reduced-scale decode never goes below what the resize needs
            assert min(decoded.image.size) >= min(min_side, decoded.width, decoded.height)
        assert decoded.n_frames >= 1

    try:
        meta = image_metadata(data, path=name)
    except ImageDecodeError as err:
        assert err.reason
    else:
        assert isinstance(meta["c2pa_present"], bool)
        assert meta["jpeg_quality"] is None or 1 <= meta["jpeg_quality"] <= 100


@pytest.mark.parametrize("cut", [1, 2, 3, 8, 16, 64])
def test_every_seed_cut_short_fails_cleanly(cut):
    for name, data in SEEDS.items():
        try:
            decode_image(data[:cut], path=name)
        except ImageDecodeError as err:
            assert err.reason
