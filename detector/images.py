"""Safe image decoding: the only module in Cue Lens that opens image files.

Every image the project looks at passes through :func:`decode_image`, which

- identifies the format from the bytes (the file extension is never trusted),
- refuses images above a pixel budget from the header alone, before any pixel
  buffer is allocated,
- decodes only the first frame of animated or multi-page files,
- applies the EXIF orientation, so the pixels are upright as a viewer shows them,
- converts every colour mode to 8-bit RGB (alpha composited over
  :data:`ALPHA_BACKGROUND`, 16-bit and float data rescaled, not clipped),
- and turns every failure into an :class:`ImageDecodeError` naming the file and
  a short reason a user can act on.

:func:`image_metadata` reads provenance facts (camera EXIF, software, an
embedded C2PA manifest, an estimate of the JPEG quality) without decoding pixels.

Colour profiles are not applied: pixel values are used as stored, as open_clip's
own preprocessing uses them. The ICC profile, if any, is kept in
``image.info["icc_profile"]`` and reported by :func:`image_metadata`.

Nothing here imports torch; the module is safe to use from worker processes.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

try:  # HEIC/HEIF (phone photos) through libheif; without pillow-heif they stay unsupported
    import pillow_heif

    pillow_heif.register_heif_opener(thumbnails=False)
except ImportError:  # pragma: no cover - pillow-heif is in requirements.txt
    pillow_heif = None

__all__ = [
    "ALPHA_BACKGROUND",
    "DEFAULT_MAX_PIXELS",
    "PREFERRED_FORMATS",
    "DecodedImage",
    "ImageDecodeError",
    "decode_image",
    "estimate_jpeg_quality",
    "image_metadata",
    "load_rgb",
    "read_bytes",
    "supported_formats",
]

DEFAULT_MAX_PIXELS = 64_000_000
"""Largest width * height decoded by default (64 MP: a large camera photo)."""

ALPHA_BACKGROUND = (255, 255, 255)
"""Transparent pixels are composited over this RGB colour (white), as a browser shows them."""

PREFERRED_FORMATS = (
    "JPEG",  # also yields "MPO" (multi-picture JPEG from phones and 3D cameras)
    "PNG",
    "WEBP",
    "GIF",
    "BMP",
    "TIFF",
    "AVIF",  # Pillow's own plugin (libavif), Pillow >= 11.3
    "HEIF",  # HEIC/HEIF through pillow-heif, registered above
    "JPEG2000",
    "PPM",
    "QOI",
)
"""Raster formats tried, in this order, when identifying content.

Formats Pillow could also open but that are not photographs or carry risks
(EPS runs Ghostscript; TGA has no signature, so random bytes could pass as
one) are deliberately left out. Only those the installed Pillow provides are
used, see :func:`supported_formats`.
"""

_JPEG_FAMILY = ("JPEG", "MPO")

# EXIF orientations whose transpose swaps width and height.
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)

# Signatures used only to word error messages for content Pillow refused.
_KNOWN_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (8, b"WEBP", "WEBP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"BM", "BMP"),
    (4, b"ftypheic", "HEIF"),
    (4, b"ftypheix", "HEIF"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
)
_UNSUPPORTED_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftypheic", "HEIF"),
    (4, b"ftypheix", "HEIF"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
    (0, b"8BPS", "PSD"),
    (0, b"%PDF", "PDF"),
    (0, b"%!PS", "PostScript/EPS"),
    (0, b"<svg", "SVG"),
)

_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


class ImageDecodeError(Exception):
    """One file could not be turned into an RGB image.

    ``path`` is the file (``None`` for bytes with no known origin) and
    ``reason`` a short readable explanation such as ``"truncated JPEG data"``.
    ``str(err)`` is ``"<path>: <reason>"``. The error pickles cleanly, so it
    can cross process boundaries (data-loader workers).
    """

    def __init__(self, path: str | os.PathLike[str] | None, reason: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(self.path, reason)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path is not None else self.reason


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded to RGB, with facts about the file it came from.

    ``image`` is mode ``"RGB"`` with the EXIF orientation applied. It may be
    smaller than ``width`` x ``height`` when :func:`decode_image` used JPEG
    draft decoding (``min_side``); ``width``/``height`` are always the full
    size of the upright picture. ``mode`` is the colour mode stored in the
    file (``"CMYK"``, ``"I;16"``, ``"P"`` ...), ``n_frames`` the number of
    frames or pages (only the first is decoded).
    """

    image: Image.Image
    format: str
    width: int
    height: int
    mode: str
    n_frames: int


@cache
def supported_formats() -> tuple[str, ...]:
    """The Pillow format names :func:`decode_image` identifies, in the order tried."""
    Image.init()
    return tuple(name for name in PREFERRED_FORMATS if name in Image.OPEN)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a whole file, turning every failure into :class:`ImageDecodeError`.

    Reasons: ``"file not found"``, ``"is a directory"``, ``"permission denied"``,
    ``"empty file"`` or ``"cannot read file (...)"``.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(path, "is a directory, not a file") from None
    except PermissionError:
        raise ImageDecodeError(path, "permission denied") from None
    except OSError as err:
        raise ImageDecodeError(path, f"cannot read file ({err.strerror or err})") from None
    if not data:
        raise ImageDecodeError(path, "empty file")
    return data


def decode_image(
    data: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    path: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_side: int | None = None,
) -> DecodedImage:
    """Decode image bytes (or the file at a path) into an upright 8-bit RGB image.

    Args:
        data: the encoded bytes, or a path to read them from. The format is
            identified from the content, whatever the file is called.
        path: the name used in error messages; defaults to ``data`` when it is a path.
        max_pixels: refuse images whose width * height exceeds this, judged from
            the header before any pixel is decoded. ``None`` keeps only Pillow's
            own decompression-bomb limit (2 * ``PIL.Image.MAX_IMAGE_PIXELS``),
            which also applies when ``max_pixels`` is above it.
        min_side: the shorter side the caller will resize to. When given, large
            JPEGs are decoded at a reduced DCT scale (1/2, 1/4 or 1/8), never
            below ``2 * min_side`` on the shorter side, so the later resize is
            unaffected beyond resampling noise and decoding is several times faster.

    Returns:
        A :class:`DecodedImage`; only the first frame of animated or multi-page files.

    Raises:
        ImageDecodeError: for anything that cannot be decoded (empty, truncated,
            corrupt, not an image, too large, unsupported colour mode, out of memory).
        ValueError: ``min_side`` is not positive (a programming error, not bad data).

    Pillow's warnings are silenced while decoding through ``warnings.catch_warnings``,
    which in Python < 3.14 changes process-wide filters: decode in worker processes,
    or accept that another thread's warnings may be hidden meanwhile.
    """
    data, path = _resolve_input(data, path)
    if min_side is not None and min_side < 1:
        raise ValueError(f"min_side must be a positive number of pixels, got {min_side}")
    fmt: str | None = None
    with _quiet_pillow():
        try:
            with _open(data) as img:
                fmt = img.format or "image"
                width, height = img.size
                original_mode = img.mode
                _check_size(width, height, max_pixels, path)
                if min_side is not None and fmt in _JPEG_FAMILY:
                    _draft_for(img, min_side)
                img.load()
                upright, swapped = _apply_orientation(img)
                rgb = _to_rgb(upright, path)  # always a new image, independent of `img`
                n_frames = _frame_count(img)
        except ImageDecodeError:
            raise
        except Image.DecompressionBombError as err:
            raise ImageDecodeError(path, _bomb_reason(err, max_pixels)) from None
        except Exception as err:  # untrusted input: every decoder failure is a decode error
            raise ImageDecodeError(path, _failure_reason(err, fmt, data)) from None
    if swapped:
        width, height = height, width
    return DecodedImage(
        image=rgb,
        format=fmt,
        width=width,
        height=height,
        mode=original_mode,
        n_frames=n_frames,
    )


def load_rgb(
    path_or_bytes: bytes | bytearray | memoryview | str | os.PathLike[str], **kwargs: Any
) -> Image.Image:
    """Shortcut for ``decode_image(path_or_bytes, **kwargs).image``."""
    return decode_image(path_or_bytes, **kwargs).image


def image_metadata(
    data: bytes | bytearray | memoryview | str | os.PathLike[str], *, path: str | None = None
) -> dict[str, Any]:
    """Provenance facts about one image, read from its header and metadata only.

    Returns a dict with ``format``, ``width``, ``height`` (upright, i.e. after
    the EXIF orientation), ``mode``, ``file_size`` (bytes), ``exif_present``,
    ``camera_make``, ``camera_model``, ``software``, ``datetime_original``
    (text or ``None``), ``c2pa_present`` (an embedded C2PA/JUMBF manifest),
    ``jpeg_quality`` (estimated 1..100, ``None`` unless JPEG) and ``icc_profile``.
    Pixel data is not decoded, except for a PNG whose EXIF chunk follows its
    image data (Pillow reads such a file to its end).

    Raises:
        ImageDecodeError: only when the content cannot be identified as an image.
    """
    data, path = _resolve_input(data, path)
    with _quiet_pillow():
        try:
            img = _open(data)
        except ImageDecodeError:
            raise
        except Image.DecompressionBombError as err:
            raise ImageDecodeError(path, _bomb_reason(err, None)) from None
        except Exception as err:
            raise ImageDecodeError(path, _failure_reason(err, None, data)) from None
        fmt = img.format or "image"
        width, height = img.size
        exif = _exif_of(img, data)
        orientation = _orientation_from(exif)
        if orientation in _SWAPPING_ORIENTATIONS:
            width, height = height, width
        quality = None
        if fmt in _JPEG_FAMILY:
            try:
                quality = estimate_jpeg_quality(getattr(img, "quantization", None) or {})
            except Exception:
                quality = None
        return {
            "format": fmt,
            "width": width,
            "height": height,
            "mode": img.mode,
            "file_size": len(data),
            "exif_present": bool(exif) or bool(img.info.get("exif")),
            "camera_make": _exif_text(exif, ExifTags.Base.Make),
            "camera_model": _exif_text(exif, ExifTags.Base.Model),
            "software": _exif_text(exif, ExifTags.Base.Software),
            "datetime_original": _exif_text(exif, ExifTags.Base.DateTimeOriginal, ifd=True),
            "c2pa_present": _has_c2pa_manifest(data, fmt),
            "jpeg_quality": quality,
            "icc_profile": bool(img.info.get("icc_profile")),
        }


# Standard luminance quantisation table of the IJG reference encoder (ITU-T T.81,
# Annex K), in natural (row-major) order, as Pillow reports tables.
_IJG_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int64,
).reshape(64)


@cache
def _ijg_luminance_tables(max_value: int) -> np.ndarray:
    """The luminance table IJG libjpeg writes at each quality 1..100, shape (100, 64)."""
    quality = np.arange(1, 101, dtype=np.int64)
    scale = np.where(quality < 50, 5000 // quality, 200 - 2 * quality)
    tables = (_IJG_LUMINANCE[None, :] * scale[:, None] + 50) // 100
    return np.clip(tables, 1, max_value)


def estimate_jpeg_quality(quant_tables: dict[int, Any]) -> int | None:
    """Estimate the IJG quality setting (1..100) a JPEG was saved with.

    ``quant_tables`` is Pillow's ``img.quantization``: table id -> 64 values in
    natural order. The luminance table (id 0) is compared with the standard
    IJG table scaled for every quality and the closest quality (least total
    absolute difference) is returned. Encoders with their own tables (some
    cameras, Photoshop) get the nearest IJG equivalent. ``None`` when there is
    no usable luminance table.
    """
    if not quant_tables:
        return None
    table = quant_tables.get(0)
    if table is None:
        table = quant_tables[min(quant_tables)]
    values = np.asarray(list(table), dtype=np.int64).reshape(-1)
    if values.size != 64:
        return None
    # Baseline JPEGs hold 8-bit tables; extended ones may hold 16-bit values.
    max_value = 255 if values.max() <= 255 else 32767
    errors = np.abs(_ijg_luminance_tables(max_value) - values[None, :]).sum(axis=1)
    return int(np.argmin(errors)) + 1


# --------------------------------------------------------------------------- internals


def _resolve_input(
    data: bytes | bytearray | memoryview | str | os.PathLike[str], path: str | None
) -> tuple[bytes, str | None]:
    """Return the encoded bytes and the name to use in errors."""
    if isinstance(data, (str, os.PathLike)):
        name = path if path is not None else os.fspath(data)
        try:
            return read_bytes(data), name
        except ImageDecodeError as err:
            raise ImageDecodeError(name, err.reason) from None
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"expected bytes or a path, got {type(data).__name__}")
    if not data:
        raise ImageDecodeError(path, "empty file")
    return data, path


@contextmanager
def _quiet_pillow() -> Iterator[None]:
    """Silence Pillow's warnings while decoding untrusted files.

    The decompression-bomb warning is replaced by our own size check, and
    Pillow's remarks about damaged metadata are expected on real-world files:
    failures that matter surface as :class:`ImageDecodeError` instead.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"PIL\.")
        yield


def _open(data: bytes) -> ImageFile.ImageFile:
    """Identify the content and read its header (no pixel data yet)."""
    return Image.open(io.BytesIO(data), formats=supported_formats())


def _check_size(width: int, height: int, max_pixels: int | None, path: str | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(path, f"empty image ({width}x{height} pixels)")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(
            path,
            f"too large: {width}x{height} = {width * height / 1e6:.1f} MP "
            f"exceeds the {max_pixels / 1e6:g} MP limit",
        )


def _bomb_reason(err: Exception, max_pixels: int | None) -> str:
    """Word Pillow's decompression-bomb refusal like our own size check."""
    found = _BOMB_PIXELS.search(str(err))
    if found is None:
        return "too large: exceeds Pillow's decompression-bomb limit"
    pixels = int(found.group(1))
    if max_pixels is not None and pixels > max_pixels:
        return f"too large: {pixels / 1e6:.1f} MP exceeds the {max_pixels / 1e6:g} MP limit"
    pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return (
        f"too large: {pixels / 1e6:.1f} MP exceeds Pillow's decompression-bomb limit "
        f"of {pillow_limit / 1e6:g} MP (raise PIL.Image.MAX_IMAGE_PIXELS to allow it)"
    )


def _draft_for(img: Image.Image, min_side: int) -> None:
    """Ask libjpeg to decode at 1/2, 1/4 or 1/8 scale, keeping the shorter side >= 2*min_side.

    Pillow picks the largest scale s in {8, 4, 2, 1} with s <= shorter // (2*min_side)
    and rounds the reduced size up, so the decoded shorter side is at least 2*min_side.
    """
    target = 2 * min_side
    if min(img.size) >= 2 * target:
        img.draft("RGB", (target, target))


def _read_exif(img: Image.Image) -> Image.Exif | None:
    try:
        return img.getexif()
    except Exception:  # damaged EXIF never fails a decode
        return None


def _orientation_from(exif: Image.Exif | None) -> int:
    if not exif:
        return 1
    try:
        value = int(exif.get(ExifTags.Base.Orientation, 1))
    except (TypeError, ValueError):
        return 1
    return value if 1 <= value <= 8 else 1


def _apply_orientation(img: Image.Image) -> tuple[Image.Image, bool]:
    """Rotate/flip a loaded image upright; return it and whether width and height swapped.

    Damaged EXIF falls back to the stored orientation instead of failing.
    """
    orientation = _orientation_from(_read_exif(img))
    if orientation == 1:
        return img, False
    try:
        upright = ImageOps.exif_transpose(img)
    except Exception:
        return img, False
    if upright is None:
        return img, False
    return upright, orientation in _SWAPPING_ORIENTATIONS


def _frame_count(img: Image.Image) -> int:
    try:
        return max(1, int(getattr(img, "n_frames", 1)))
    except Exception:  # counting frames walks the file; damage past frame 0 is tolerated
        return 1


def _to_rgb(img: Image.Image, path: str | None) -> Image.Image:
    """Convert any Pillow mode to a new 8-bit RGB image (alpha over ALPHA_BACKGROUND)."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        rgb = img.copy()
    elif mode.startswith("I;16"):
        rgb = _grey_to_rgb(np.asarray(img).astype(np.float64) * (255.0 / 65535.0))
    elif mode == "I":
        rgb = _grey_to_rgb(_scale_integers(np.asarray(img)))
    elif mode == "F":
        rgb = _grey_to_rgb(_scale_floats(np.asarray(img)))
    elif mode in ("RGBa", "La"):
        rgb = _composite_premultiplied(img)
    elif _has_alpha(img):
        rgb = _composite(img.convert("RGBA"))
    else:
        try:
            rgb = img.convert("RGB")
        except (ValueError, OSError) as err:
            raise ImageDecodeError(path, f"unsupported colour mode {mode} ({err})") from None
    # Keep the colour profile; drop metadata that no longer describes these pixels
    # (an orientation tag would make a second exif_transpose rotate them again).
    icc = img.info.get("icc_profile")
    rgb.info = {"icc_profile": icc} if icc else {}
    return rgb


def _has_alpha(img: Image.Image) -> bool:
    """An alpha channel, or a transparent palette entry / colour key (PNG tRNS, GIF)."""
    if img.mode in ("RGBA", "LA", "PA"):
        return True
    return "transparency" in img.info and img.mode in ("P", "L", "RGB", "1")


def _grey_to_rgb(values: np.ndarray) -> Image.Image:
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def _scale_integers(values: np.ndarray) -> np.ndarray:
    """Map 32-bit integer samples to 0..255.

    Samples within 0..255 are taken as 8-bit, within 0..65535 as 16-bit
    (divided by 257), anything else is stretched from its minimum to its maximum.
    """
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 255:
        return values
    if low >= 0 and high <= 65535:
        return values * (255.0 / 65535.0)
    if high == low:
        return np.full_like(values, 255.0 if low > 0 else 0.0)
    return (values - low) * (255.0 / (high - low))


def _scale_floats(values: np.ndarray) -> np.ndarray:
    """Map float samples to 0..255: taken as 0..1 when they fit, else stretched min..max.

    NaN and infinities count as the lowest / highest finite value.
    """
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros_like(values)
    low, high = float(values[finite].min()), float(values[finite].max())
    values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
    if low >= 0 and high <= 1:
        return values * 255.0
    if high > low:
        return (values - low) * (255.0 / (high - low))
    return np.full_like(values, min(max(low, 0.0), 255.0))


def _composite(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, ALPHA_BACKGROUND)
    background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    return background


def _composite_premultiplied(img: Image.Image) -> Image.Image:
    """Composite colour already multiplied by alpha: out = colour + background * (1 - alpha)."""
    samples = np.asarray(img).astype(np.float64)
    colour, alpha = samples[..., :-1], samples[..., -1:] / 255.0
    if colour.shape[-1] == 1:
        colour = np.repeat(colour, 3, axis=-1)
    background = np.asarray(ALPHA_BACKGROUND, dtype=np.float64)
    out = colour + background * (1.0 - alpha)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def _sniff(data: bytes, table: tuple[tuple[int, bytes, str], ...]) -> str | None:
    for offset, signature, name in table:
        if data[offset : offset + len(signature)] == signature:
            return name
    return None


def _failure_reason(err: BaseException, fmt: str | None, data: bytes) -> str:
    """A short, readable reason for a decoder exception."""
    if isinstance(err, UnidentifiedImageError):
        unsupported = _sniff(data, _UNSUPPORTED_SIGNATURES)
        if unsupported is not None and unsupported not in supported_formats():
            supported = ", ".join(supported_formats())
            return f"unsupported format {unsupported} (supported: {supported})"
        known = _sniff(data, _KNOWN_SIGNATURES)
        if known is not None:
            return f"corrupt or truncated {known} header"
        return "not an image (content is not a known image format)"
    if isinstance(err, MemoryError):
        return "out of memory while decoding"
    kind = fmt or _sniff(data, _KNOWN_SIGNATURES) or "image"
    message = _OBJECT_REPR.sub("", str(err)).strip()
    if isinstance(err, EOFError) or "truncated" in message.lower():
        return f"truncated {kind} data"
    if len(message) > 120:
        message = message[:117] + "..."
    detail = f"{type(err).__name__}: {message}" if message else type(err).__name__
    return f"corrupt {kind} data ({detail})"


def _exif_of(img: Image.Image, data: bytes) -> Image.Exif | None:
    """EXIF of an opened image without decoding pixels where that can be avoided."""
    if img.format == "PNG" and "exif" not in img.info and b"eXIf" not in _png_chunk_types(data):
        return None  # Pillow would decode the whole PNG looking for a late eXIf chunk
    return _read_exif(img)


def _exif_text(exif: Image.Exif | None, tag: int, *, ifd: bool = False) -> str | None:
    """One EXIF text field, cleaned of padding; ``None`` when absent or empty."""
    if not exif:
        return None
    try:
        source = exif.get_ifd(ExifTags.IFD.Exif) if ifd else exif
        value = source.get(tag)
    except Exception:
        return None
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).replace("\x00", " ").strip()
    if not text:
        return None
    return text if len(text) <= 256 else text[:253] + "..."


def _jpeg_app11_payloads(data: bytes) -> list[bytes]:
    """Payloads of the APP11 (JUMBF) segments before the first scan of a JPEG."""
    payloads: list[bytes] = []
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: metadata is over
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            break
        if marker == 0xEB:
            payloads.append(data[pos + 4 : pos + 2 + length])
        pos += 2 + length
    return payloads


def _png_chunk_types(data: bytes) -> set[bytes]:
    types: set[bytes] = set()
    pos, end = 8, len(data)
    while pos + 8 <= end:
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunk_type = data[pos + 4 : pos + 8]
        types.add(chunk_type)
        if chunk_type == b"IEND":
            break
        pos += 12 + length
    return types


def _riff_chunk_types(data: bytes) -> set[bytes]:
    types: set[bytes] = set()
    pos, end = 12, len(data)
    while pos + 8 <= end:
        types.add(data[pos : pos + 4])
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        pos += 8 + length + (length & 1)
    return types


def _jumbf_labelled_c2pa(data: bytes, window: int = 256) -> bool:
    """Whether some 'jumb' superbox is followed closely by a 'c2pa' description label."""
    start = data.find(b"jumb")
    while start != -1:
        if b"c2pa" in data[start : start + window]:
            return True
        start = data.find(b"jumb", start + 4)
    return False


def _has_c2pa_manifest(data: bytes, fmt: str) -> bool:
    """Byte-level check for an embedded C2PA manifest store (a JUMBF box labelled 'c2pa').

    JPEG: APP11 segments holding 'jumb' and 'c2pa'. PNG: a 'caBX' chunk. WebP:
    a 'C2PA' RIFF chunk. Any container: a 'jumb' box labelled 'c2pa'. Presence
    only; the manifest's signature is not validated.
    """
    try:
        if fmt in _JPEG_FAMILY:
            joined = b"".join(_jpeg_app11_payloads(data))
            return b"jumb" in joined and b"c2pa" in joined
        if fmt == "PNG":
            return b"caBX" in _png_chunk_types(data)
        if fmt == "WEBP" and b"C2PA" in _riff_chunk_types(data):
            return True
        return _jumbf_labelled_c2pa(data)
    except Exception:
        return False
