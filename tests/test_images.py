"""Tests for detector.images: decoding untrusted files safely, and provenance metadata.

Every input is generated here with Pillow/numpy into tmp_path; nothing is downloaded.
"""

from __future__ import annotations

import ast
import io
import pickle
import re
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile

from detector.images import (
    ALPHA_BACKGROUND,
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    ImageDecodeError,
    decode_image,
    estimate_jpeg_quality,
    image_metadata,
    load_rgb,
    read_bytes,
    supported_formats,
)

# ----------------------------------------------------------------------------- helpers


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    """The bytes Pillow writes for ``img`` in ``fmt``."""
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def textured(width: int, height: int, seed: int = 0) -> Image.Image:
    """A small RGB test picture with smooth colour and some noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    red = 255 * x / max(width - 1, 1)
    green = 255 * y / max(height - 1, 1)
    blue = 128 + rng.normal(0, 20, (height, width))
    pixels = np.stack([red, green, blue], axis=-1)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def png_header_only(width: int, height: int, bit_depth: int = 1, colour_type: int = 0) -> bytes:
    """A valid PNG signature + IHDR claiming ``width`` x ``height``, but almost no pixel data.

    Decoding the pixels would fail as truncated, so a 'too large' refusal proves
    the size was judged from the header alone.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def insert_app11(jpeg: bytes, payload: bytes) -> bytes:
    """Insert an APP11 segment right after the JPEG SOI marker."""
    segment = b"\xff\xeb" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


def fake_c2pa_jumbf() -> bytes:
    """A JUMBF superbox shaped like a C2PA manifest store (content is not a real manifest)."""
    label = b"c2pa\x00"
    description = b"c2pa" + bytes.fromhex("00110010800000aa00389b71") + b"\x00\x03" + label
    jumd = struct.pack(">I", 8 + len(description)) + b"jumd" + description
    jumb = struct.pack(">I", 8 + len(jumd)) + b"jumb" + jumd
    # APP11 JUMBF header: common identifier 'JP', box instance, packet sequence number.
    return b"JP" + b"\x02\x11" + struct.pack(">I", 1) + jumb


def assert_refused(path: Path, reason_part: str, **kwargs) -> ImageDecodeError:
    """Decoding ``path`` raises ImageDecodeError naming the file and a readable reason."""
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(path, **kwargs)
    err = caught.value
    assert err.path == str(path)
    assert str(path) in str(err)
    assert str(err) == f"{path}: {err.reason}"
    assert reason_part in err.reason
    assert err.reason.isprintable() and len(err.reason) < 200
    assert not re.search(r"at 0x[0-9a-f]+", err.reason)  # no object reprs leaking from Pillow
    return err


# ------------------------------------------------------------------- the bad-input corpus

# name, file name, builder -> bytes, expected size (w, h) or the refusal's reason fragment
Builder = Callable[[], bytes]


def _truncated_jpeg() -> bytes:
    data = encode(textured(64, 48), "JPEG", quality=90)
    return data[: len(data) // 2]


def _heic(size=(64, 64)) -> bytes:
    return encode(textured(*size), "HEIF")  # pillow-heif's encoder (registered by detector.images)


def _truncated_heic() -> bytes:
    data = _heic()
    return data[: len(data) // 2]


def _huge_heic() -> bytes:
    """A 64x64 HEIC whose image-size property ('ispe') claims 30,000 x 30,000 pixels."""
    data = bytearray(_heic())
    at = data.find(b"ispe")
    data[at + 8 : at + 16] = (30_000).to_bytes(4, "big") * 2
    return bytes(data)


CORPUS: list[tuple[str, str, Builder, tuple[int, int] | str]] = [
    ("zero bytes", "empty.jpg", lambda: b"", "empty file"),
    ("truncated jpeg", "half.jpg", _truncated_jpeg, "truncated JPEG data"),
    ("text named png", "notes.png", lambda: b"just some text\n" * 20, "not an image"),
    (
        "pdf named jpg",
        "doc.jpg",
        lambda: b"%PDF-1.7\n%\xe2\xe3\n1 0 obj\n",
        "unsupported format PDF",
    ),
    ("png signature only", "sig.png", lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * 9, "PNG header"),
    ("huge header", "huge.png", lambda: png_header_only(30_000, 30_000), "too large"),
    ("one pixel", "dot.png", lambda: encode(Image.new("RGB", (1, 1), "red"), "PNG"), (1, 1)),
    ("panorama", "wide.png", lambda: encode(textured(20_000, 50), "PNG"), (20_000, 50)),
    ("webp", "a.webp", lambda: encode(textured(30, 20), "WEBP"), (30, 20)),
    ("bmp", "a.bmp", lambda: encode(textured(30, 20), "BMP"), (30, 20)),
    ("tiff", "a.tiff", lambda: encode(textured(30, 20), "TIFF"), (30, 20)),
    ("gif", "a.gif", lambda: encode(textured(30, 20).convert("P"), "GIF"), (30, 20)),
    ("jpeg named png", "photo.png", lambda: encode(textured(30, 20), "JPEG"), (30, 20)),
    ("png named jpg", "photo.jpg", lambda: encode(textured(30, 20), "PNG"), (30, 20)),
    ("cmyk jpeg", "cmyk.jpg", lambda: encode(Image.new("CMYK", (30, 20)), "JPEG"), (30, 20)),
    ("LA png", "la.png", lambda: encode(Image.new("LA", (30, 20)), "PNG"), (30, 20)),
    ("I tiff", "i.tif", lambda: encode(Image.new("I", (30, 20), 70_000), "TIFF"), (30, 20)),
    ("F tiff", "f.tif", lambda: encode(Image.new("F", (30, 20), -3.5), "TIFF"), (30, 20)),
    ("heic", "phone.heic", _heic, (64, 64)),
    ("avif", "a.avif", lambda: encode(textured(30, 20), "AVIF"), (30, 20)),
    ("truncated heic", "half.heic", _truncated_heic, "HEIF"),
    ("heic over the pixel limit", "huge.heic", _huge_heic, "too large"),
]


@pytest.mark.parametrize(
    ("file_name", "build", "expected"),
    [case[1:] for case in CORPUS],
    ids=[case[0] for case in CORPUS],
)
def test_corpus_decodes_to_rgb_or_raises_a_readable_error(tmp_path, file_name, build, expected):
    path = write(tmp_path, file_name, build())
    if isinstance(expected, str):
        assert_refused(path, expected)
        return
    decoded = decode_image(path)
    assert isinstance(decoded, DecodedImage)
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == expected
    assert (decoded.width, decoded.height) == expected
    assert load_rgb(path).size == expected


# ---------------------------------------------------------------------- reading files


def test_read_bytes_reports_missing_empty_and_directory(tmp_path):
    with pytest.raises(ImageDecodeError, match="file not found"):
        read_bytes(tmp_path / "nope.jpg")
    with pytest.raises(ImageDecodeError, match="empty file"):
        read_bytes(write(tmp_path, "empty.png", b""))
    with pytest.raises(ImageDecodeError, match="directory"):
        read_bytes(tmp_path)
    assert read_bytes(write(tmp_path, "x.bin", b"abc")) == b"abc"


def test_bytes_input_and_error_without_path():
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(b"")
    assert caught.value.path is None
    assert str(caught.value) == "empty file"
    decoded = decode_image(bytearray(encode(textured(8, 6), "PNG")))
    assert decoded.format == "PNG"
    assert decoded.image.size == (8, 6)


def test_path_argument_names_bytes_in_errors():
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(b"garbage bytes", path="upload/cat.jpg")
    assert str(caught.value).startswith("upload/cat.jpg: not an image")


def test_path_argument_also_names_unreadable_files(tmp_path):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(tmp_path / "missing.jpg", path="dataset/missing.jpg")
    assert str(caught.value) == "dataset/missing.jpg: file not found"


def test_module_imports_neither_torch_nor_streamlit():
    import detector.images as images

    tree = ast.parse(Path(images.__file__).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not {name for name in imported if name.split(".")[0] in {"torch", "streamlit"}}


def test_error_survives_pickling():
    err = ImageDecodeError("a/b.jpg", "truncated JPEG data")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.reason, str(copy)) == (err.path, err.reason, str(err))


def test_supported_formats_are_real_pillow_plugins():
    formats = supported_formats()
    for name in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF"):
        assert name in formats
    assert "EPS" not in formats


def test_truncated_images_are_not_accepted_globally():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# ------------------------------------------------------------------------- size limits


def test_small_pixel_limit_refuses_from_the_header(tmp_path):
    path = write(tmp_path, "square.png", encode(textured(300, 300), "PNG"))
    err = assert_refused(path, "too large", max_pixels=10_000)
    assert err.reason == "too large: 300x300 = 0.1 MP exceeds the 0.01 MP limit"
    assert decode_image(path, max_pixels=90_000).image.size == (300, 300)


@pytest.fixture
def pixel_loads(monkeypatch):
    """Records every decode of pixel data (Pillow's ``ImageFile.load``)."""
    calls = []
    original = ImageFile.ImageFile.load

    def load(self, *args, **kwargs):
        calls.append(self.size)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


def test_large_header_is_refused_before_decoding_and_without_pillow_warnings(tmp_path, pixel_loads):
    # 9500 x 9500 = 90.25 MP: over our 64 MP default and over Pillow's warning threshold.
    path = write(tmp_path, "big.png", png_header_only(9_500, 9_500))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        err = assert_refused(path, "too large: 9500x9500 = 90.2 MP exceeds the 64 MP limit")
    assert pixel_loads == []
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert "truncated" not in err.reason  # the pixel data (cut short) was never decoded


def test_pillow_bomb_limit_becomes_a_decode_error(tmp_path, pixel_loads):
    path = write(tmp_path, "bomb.png", png_header_only(30_000, 30_000))
    err = assert_refused(path, "too large: 900.0 MP exceeds the 64 MP limit")
    assert pixel_loads == []
    # Above Pillow's own limit, the reason says which limit refused it.
    err = assert_refused(path, "decompression-bomb limit", max_pixels=10**12)
    assert "MAX_IMAGE_PIXELS" in err.reason
    assert DEFAULT_MAX_PIXELS == 64_000_000


def test_a_huge_real_png_is_refused_before_decoding(tmp_path, pixel_loads):
    # A genuine 1-bit 30000 x 3000 PNG (90 MP) compresses to a few kB.
    data = encode(Image.new("1", (30_000, 3_000)), "PNG")
    assert len(data) < 200_000
    path = write(tmp_path, "blank.png", data)
    assert_refused(path, "too large: 30000x3000 = 90.0 MP")
    assert pixel_loads == []


# ------------------------------------------------------------------------ colour modes


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (8, 1))
    path = write(tmp_path, "depth16.png", encode(Image.fromarray(ramp), "PNG"))
    decoded = decode_image(path)
    assert decoded.mode == "I;16"
    grey = np.asarray(decoded.image)[..., 0].astype(int)
    assert grey.min() <= 1 and grey.max() >= 254
    assert np.all(np.diff(grey[0]) >= 0)
    assert abs(int(grey[0, 128]) - 128) <= 2  # mid-range stays mid-grey, not saturated
    assert (np.asarray(decoded.image) == grey[..., None]).all()  # grey in all channels


def test_big_endian_16_bit_is_scaled(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(">u2"), (4, 1))
    img = Image.frombytes("I;16B", (64, 4), ramp.tobytes())
    decoded = decode_image(write(tmp_path, "be.tif", encode(img, "TIFF")))
    grey = np.asarray(decoded.image)[..., 0].astype(int)
    assert grey.min() <= 1 and grey.max() >= 254


def test_32_bit_integer_and_float_images_are_rescaled(tmp_path):
    ramp16 = np.tile(np.linspace(0, 65535, 64), (4, 1)).astype(np.int32)
    i_img = decode_image(write(tmp_path, "i.tif", encode(Image.fromarray(ramp16), "TIFF")))
    assert i_img.mode == "I"
    grey = np.asarray(i_img.image)[..., 0]
    assert grey.min() <= 1 and grey.max() >= 254

    unit = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (4, 1))
    f_unit = decode_image(write(tmp_path, "unit.tif", encode(Image.fromarray(unit), "TIFF")))
    assert f_unit.mode == "F"
    grey = np.asarray(f_unit.image)[..., 0].astype(int)
    assert grey.min() == 0 and grey.max() == 255 and abs(int(grey[0, 32]) - 129) <= 2

    wide = np.tile(np.linspace(-40.0, 900.0, 64, dtype=np.float32), (4, 1))
    f_wide = decode_image(write(tmp_path, "wide.tif", encode(Image.fromarray(wide), "TIFF")))
    grey = np.asarray(f_wide.image)[..., 0].astype(int)
    assert grey.min() == 0 and grey.max() == 255
    assert np.all(np.diff(grey[0]) >= 0)


def test_cmyk_jpeg_converts_to_rgb(tmp_path):
    red_in_cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))
    decoded = decode_image(write(tmp_path, "cmyk.jpg", encode(red_in_cmyk, "JPEG", quality=95)))
    assert decoded.mode == "CMYK"
    red, green, blue = decoded.image.getpixel((16, 16))
    assert red > 240 and green < 15 and blue < 15


def test_palette_png_transparency_composites_on_white(tmp_path):
    img = Image.new("P", (20, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    img.paste(1, (10, 0, 20, 10))  # right half: palette entry 1 (red)
    data = encode(img, "PNG", transparency=0)  # entry 0 (black) is transparent
    decoded = decode_image(write(tmp_path, "pal.png", data))
    assert decoded.mode == "P"
    assert decoded.image.getpixel((2, 5)) == ALPHA_BACKGROUND == (255, 255, 255)
    assert decoded.image.getpixel((15, 5)) == (255, 0, 0)


def test_palette_png_without_transparency_keeps_colours(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 255] + [0] * 765)
    decoded = decode_image(encode(img, "PNG"))
    assert decoded.image.getpixel((1, 1)) == (0, 0, 255)


def test_alpha_channels_composite_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    decoded = decode_image(encode(rgba, "PNG"))
    assert decoded.image.getpixel((0, 0)) == (255, 0, 0)
    assert decoded.image.getpixel((2, 2)) == (255, 255, 255)
    assert all(abs(c - 127) <= 2 for c in decoded.image.getpixel((1, 0)))

    la = Image.new("LA", (4, 4), (0, 0))
    la.putpixel((0, 0), (50, 255))
    decoded = decode_image(encode(la, "PNG"))
    assert decoded.mode == "LA"
    assert decoded.image.getpixel((0, 0)) == (50, 50, 50)
    assert decoded.image.getpixel((3, 3)) == (255, 255, 255)


def test_other_modes_become_rgb(tmp_path):
    cases = {
        "1": encode(Image.new("1", (8, 8), 1), "PNG"),
        "L": encode(Image.new("L", (8, 8), 77), "PNG"),
        "YCbCr": encode(Image.new("RGB", (8, 8), (0, 0, 255)).convert("YCbCr"), "JPEG"),
        "LAB": encode(Image.new("LAB", (8, 8), (255, 128, 128)), "TIFF"),
    }
    expected = {"1": (255, 255, 255), "L": (77, 77, 77), "LAB": (255, 255, 255)}
    for name, data in cases.items():
        decoded = decode_image(data)
        assert decoded.image.mode == "RGB", name
        assert decoded.image.size == (8, 8), name
        if name in expected:
            got = decoded.image.getpixel((4, 4))
            assert all(abs(a - b) <= 2 for a, b in zip(got, expected[name], strict=True)), name


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "lime", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    decoded = decode_image(write(tmp_path, "anim.gif", data))
    assert decoded.format == "GIF"
    assert decoded.n_frames == 3
    assert decoded.image.getpixel((8, 8)) == (255, 0, 0)


def test_animated_webp_uses_the_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue")]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    decoded = decode_image(data)
    assert decoded.n_frames == 2
    assert decoded.image.getpixel((8, 8)) == (255, 0, 0)


def test_multipage_tiff_uses_the_first_page():
    pages = [Image.new("RGB", (8, 8), colour) for colour in ("blue", "red")]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    decoded = decode_image(data)
    assert decoded.n_frames == 2
    assert decoded.image.getpixel((4, 4)) == (0, 0, 255)


# ------------------------------------------------------------------------- orientation


def _marked_landscape() -> Image.Image:
    """40 x 20 grey picture with a red 8 x 8 marker in its top-left corner."""
    img = Image.new("RGB", (40, 20), (128, 128, 128))
    img.paste((255, 0, 0), (0, 0, 8, 8))
    return img


def _is_red(pixel) -> bool:
    return pixel[0] > 200 and pixel[1] < 60 and pixel[2] < 60


def test_exif_orientation_6_is_applied(tmp_path):
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored rotated: turn 90 degrees clockwise to view
    data = encode(_marked_landscape(), "JPEG", quality=95, exif=exif)
    decoded = decode_image(write(tmp_path, "rotated.jpg", data))
    assert decoded.image.size == (20, 40)
    assert (decoded.width, decoded.height) == (20, 40)
    assert _is_red(decoded.image.getpixel((16, 3)))  # top-left marker is now top-right
    assert not _is_red(decoded.image.getpixel((3, 3)))
    assert not _is_red(decoded.image.getpixel((16, 36)))
    # The returned pixels are upright; no orientation tag is left to apply twice.
    assert decoded.image.getexif().get(ExifTags.Base.Orientation) is None


def test_broken_exif_does_not_fail_the_decode(tmp_path):
    jpeg = encode(_marked_landscape(), "JPEG")
    broken = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x09\x01\x12\x00\x03\xff\xff"
    data = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(broken) + 2) + broken + jpeg[2:]
    decoded = decode_image(write(tmp_path, "broken-exif.jpg", data))
    assert decoded.image.size == (40, 20)
    assert image_metadata(data)["width"] == 40


# ------------------------------------------------------------------------ draft decoding


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """A 4000 x 3000 JPEG with smooth structure and fine texture."""
    rng = np.random.default_rng(7)
    coarse = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((4000, 3000), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = np.tile(rng.integers(-12, 13, (100, 100, 1), dtype=np.int16), (30, 40, 3))
    return encode(Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)), "JPEG")


def _resize_shorter_side(img: Image.Image, side: int) -> np.ndarray:
    scale = side / min(img.size)
    size = (round(img.width * scale), round(img.height * scale))
    return np.asarray(img.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)


def test_draft_decodes_smaller_but_equivalent_after_resize(big_jpeg):
    full = decode_image(big_jpeg)
    draft = decode_image(big_jpeg, min_side=224)
    assert full.image.size == (4000, 3000)
    assert min(draft.image.size) >= 448
    assert draft.image.size[0] < 4000
    assert (draft.width, draft.height) == (4000, 3000)
    difference = np.abs(
        _resize_shorter_side(full.image, 224) - _resize_shorter_side(draft.image, 224)
    )
    assert difference.mean() < 2.0


def test_draft_with_exif_rotation_reports_upright_full_size():
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    data = encode(textured(1200, 800), "JPEG", exif=exif)
    decoded = decode_image(data, min_side=100)
    assert (decoded.width, decoded.height) == (800, 1200)
    assert decoded.image.size == (200, 300)  # 1/4 scale, then turned upright


def test_draft_keeps_small_images_and_non_jpegs_whole():
    small = encode(textured(600, 500), "JPEG")
    assert decode_image(small, min_side=224).image.size == (600, 500)
    png = encode(textured(1000, 900), "PNG")
    assert decode_image(png, min_side=100).image.size == (1000, 900)
    with pytest.raises(ValueError):
        decode_image(small, min_side=0)


# ---------------------------------------------------------------------------- metadata


def test_metadata_reads_camera_exif(tmp_path):
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "EOS 5D Mark IV"
    exif[ExifTags.Base.Software] = "GIMP 2.10"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2021:06:01 12:30:00"
    data = encode(textured(40, 30), "JPEG", quality=90, exif=exif)
    meta = image_metadata(write(tmp_path, "camera.jpg", data))
    assert meta["format"] == "JPEG"
    assert (meta["width"], meta["height"], meta["mode"]) == (40, 30, "RGB")
    assert meta["file_size"] == len(data)
    assert meta["exif_present"] is True
    assert meta["camera_make"] == "Canon"
    assert meta["camera_model"] == "EOS 5D Mark IV"
    assert meta["software"] == "GIMP 2.10"
    assert meta["datetime_original"] == "2021:06:01 12:30:00"
    assert meta["c2pa_present"] is False
    assert meta["icc_profile"] is False


def test_metadata_without_exif_is_all_none():
    meta = image_metadata(encode(textured(10, 10), "PNG"))
    assert meta["format"] == "PNG"
    assert meta["exif_present"] is False
    assert meta["jpeg_quality"] is None
    for key in ("camera_make", "camera_model", "software", "datetime_original"):
        assert meta[key] is None
    expected = {
        "format", "width", "height", "mode", "file_size", "exif_present", "camera_make",
        "camera_model", "software", "datetime_original", "c2pa_present", "jpeg_quality",
        "icc_profile",
    }  # fmt: skip
    assert set(meta) == expected


@pytest.mark.parametrize("quality", [30, 75, 90, 95])
def test_jpeg_quality_estimate(quality):
    meta = image_metadata(encode(textured(64, 48), "JPEG", quality=quality))
    assert abs(meta["jpeg_quality"] - quality) <= 2


def test_estimate_jpeg_quality_handles_missing_tables():
    assert estimate_jpeg_quality({}) is None
    assert estimate_jpeg_quality({0: [1, 2, 3]}) is None
    assert estimate_jpeg_quality({0: [1] * 64}) == 100


def test_c2pa_manifest_in_jpeg_app11(tmp_path):
    plain = encode(textured(32, 32), "JPEG")
    signed = insert_app11(plain, fake_c2pa_jumbf())
    assert decode_image(signed).image.size == (32, 32)  # still a valid JPEG
    assert image_metadata(write(tmp_path, "signed.jpg", signed))["c2pa_present"] is True
    assert image_metadata(plain)["c2pa_present"] is False
    # An APP11 segment that is JUMBF but not C2PA does not count.
    other = insert_app11(
        plain, b"JP\x02\x11\x00\x00\x00\x01\x00\x00\x00\x10jumb\x00\x00\x00\x08jumd"
    )
    assert image_metadata(other)["c2pa_present"] is False


def test_c2pa_manifest_in_png_and_webp():
    png = encode(textured(8, 8), "PNG")
    body = fake_c2pa_jumbf()
    chunk = struct.pack(">I", len(body)) + b"caBX" + body
    chunk += struct.pack(">I", zlib.crc32(b"caBX" + body))
    iend = png.rindex(b"IEND") - 4
    signed_png = png[:iend] + chunk + png[iend:]
    assert image_metadata(signed_png)["c2pa_present"] is True
    assert image_metadata(png)["c2pa_present"] is False

    webp = encode(textured(8, 8), "WEBP")
    box = fake_c2pa_jumbf()[8:]  # JUMBF superbox without the JPEG APP11 header
    riff_chunk = b"C2PA" + struct.pack("<I", len(box)) + box + b"\x00" * (len(box) & 1)
    body = webp[12:] + riff_chunk
    signed_webp = b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body
    assert decode_image(signed_webp).image.size == (8, 8)
    assert image_metadata(signed_webp)["c2pa_present"] is True
    assert image_metadata(webp)["c2pa_present"] is False


def test_metadata_icc_and_orientation():
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 8
    data = encode(_marked_landscape(), "JPEG", icc_profile=profile, exif=exif)
    meta = image_metadata(data)
    assert meta["icc_profile"] is True
    assert (meta["width"], meta["height"]) == (20, 40)
    decoded = decode_image(data)
    assert decoded.image.info.get("icc_profile") == profile


def test_metadata_refuses_non_images(tmp_path):
    path = write(tmp_path, "notes.png", b"not an image at all")
    with pytest.raises(ImageDecodeError, match="not an image"):
        image_metadata(path)
    with pytest.raises(ImageDecodeError, match="empty file"):
        image_metadata(b"")


def test_metadata_of_truncated_jpeg_still_answers():
    meta = image_metadata(_truncated_jpeg())
    assert meta["format"] == "JPEG"
    assert meta["jpeg_quality"] is not None


# ------------------------------------------------------------------------- real samples

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared sample images not present")
def test_real_samples_decode_and_report_metadata():
    files = sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    smallest = sorted(files, key=lambda p: p.stat().st_size)[:4]
    for path in smallest:
        decoded = decode_image(path, min_side=224)
        assert decoded.image.mode == "RGB"
        assert min(decoded.image.size) >= min(448, decoded.width, decoded.height)
        meta = image_metadata(path)
        assert (meta["width"], meta["height"]) == (decoded.width, decoded.height)
