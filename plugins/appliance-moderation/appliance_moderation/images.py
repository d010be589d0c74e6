"""Uploads turned into images every stage can read, or a clear 4xx: not an image, too many
pixels (a decompression bomb), too large a file."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from appliance import BadRequest, ImageInput, PayloadTooLarge

MAX_PIXELS = 40_000_000
"""About 7,000 x 5,700: any photo a phone takes; a decompression bomb is far above."""
MAX_FILE_BYTES = 32 * 1024 * 1024
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})


def decode(data: bytes, source: str = "") -> ImageInput:
    """The image in ``data`` as RGB PNG bytes, or the 4xx that says what is wrong with it."""
    label = source or "the upload"
    if len(data) > MAX_FILE_BYTES:
        raise PayloadTooLarge(f"{label} is over {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise BadRequest(_too_many(label, width, height), param="file")
            image.load()
            rgb = image.convert("RGB")
    except BadRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadRequest(f"{label}: {exc} (a decompression bomb)", param="file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise BadRequest(
            f"{label} is not an image this box reads ({', '.join(FORMATS)})", param="file"
        ) from None
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    return ImageInput(out.getvalue(), width, height, source)


def _too_many(label: str, width: int, height: int) -> str:
    return (
        f"{label} is {width} x {height} pixels, over the limit of {MAX_PIXELS:,} "
        "(a decompression bomb or a scan far larger than a photo)"
    )


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decoded(data: bytes, source: str) -> tuple[ImageInput, str]:
    """The image and the sha256 of the bytes it came from."""
    return decode(data, source), digest(data)


def read_image(path: Path) -> tuple[ImageInput, str]:
    return decoded(path.read_bytes(), str(path))


def folder_images(folder: Path, limit: int) -> list[Path]:
    """The image files under ``folder`` (by suffix), sorted, at most ``limit``."""
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if len(found) > limit:
        raise BadRequest(f"{folder} holds {len(found)} images; a batch takes at most {limit}")
    return found
