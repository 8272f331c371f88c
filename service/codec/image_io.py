"""Reading untrusted images into 8-bit planes, and writing decoded images by format.

* RGB is coded as is; grayscale (L, 1, I;16, ...) is coded as three equal channels and returned as L.
* Alpha (RGBA, LA, palette transparency) is kept losslessly as a separate PNG plane in the bitstream;
  only the colour channels go through the learned codec.
* Higher bit depths are reduced to 8 bits; EXIF orientation is applied; CMYK/YCbCr become RGB.
* The pixel count is checked from the image header before any pixel is decoded (decompression bombs).
"""
from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.codec.errors import BitstreamError, ImageError, LimitError

Image.MAX_IMAGE_PIXELS = None  # we enforce our own, configurable limit below
OUTPUT_FORMATS = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG", "jpg": "JPEG"}


@dataclass
class Planes:
    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None  # (H, W) uint8
    mode: str  # what decoding returns: L, LA, RGB or RGBA


# What Pillow raises on broken or hostile image data (a broken PNG chunk is a SyntaxError).
PILLOW_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def read_image(source: bytes | str, max_pixels: int) -> Planes:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            if im.width * im.height > max_pixels:
                raise LimitError(f"image has {im.width}x{im.height} = {im.width * im.height} pixels; the limit is {max_pixels}")
            im = ImageOps.exif_transpose(im)
            im.load()
    except PILLOW_ERRORS as exc:
        raise ImageError(f"cannot read image: {exc}") from exc
    return to_planes(im)


def to_planes(im: Image.Image) -> Planes:
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = Image.fromarray((np.asarray(im, dtype=np.float64) / 257.0).clip(0, 255).round().astype(np.uint8))
    if im.mode == "F":
        im = Image.fromarray(np.asarray(im, dtype=np.float64).clip(0, 255).round().astype(np.uint8))
    if im.mode in ("1", "L", "LA", "La", "PA"):
        has_alpha = im.mode in ("LA", "La", "PA")
        la = im.convert("LA")
        gray = np.asarray(la)[..., 0]
        alpha = np.asarray(la)[..., 1].copy() if has_alpha else None
        return Planes(np.repeat(gray[..., None], 3, axis=2), alpha, "LA" if has_alpha else "L")
    has_alpha = im.mode in ("RGBA", "RGBa") or "A" in im.getbands()
    rgba = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    if has_alpha:
        return Planes(np.ascontiguousarray(rgba[..., :3]), rgba[..., 3].copy(), "RGBA")
    return Planes(np.ascontiguousarray(rgba), None, "RGB")


def encode_alpha(alpha: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(alpha, "L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def decode_alpha(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size != (shape[1], shape[0]) or im.mode != "L":
                raise BitstreamError("corrupted .lic data: alpha plane has the wrong size")
            return np.asarray(im)
    except PILLOW_ERRORS as exc:
        raise BitstreamError(f"corrupted .lic data: alpha plane unreadable ({exc})") from exc


def to_image(rgb: np.ndarray, alpha: np.ndarray | None, mode: str) -> Image.Image:
    if mode in ("L", "LA"):
        gray = np.round(rgb.astype(np.float32).mean(axis=2)).astype(np.uint8)
        im = Image.fromarray(gray, "L")
    else:
        im = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        im.putalpha(Image.fromarray(alpha, "L"))
    return im


def output_format(name: str) -> str:
    key = name.lower().lstrip(".")
    if key not in OUTPUT_FORMATS:
        raise ImageError(f"unsupported output format {name!r} (use png, webp or jpeg)")
    return OUTPUT_FORMATS[key]


def write_image(im: Image.Image, fmt: str) -> bytes:
    """Encode a decoded image: PNG and WebP losslessly, JPEG at quality 95 (alpha dropped)."""
    fmt = output_format(fmt)
    buffer = io.BytesIO()
    if fmt == "JPEG":
        im.convert("L" if im.mode in ("L", "LA") else "RGB").save(buffer, format="JPEG", quality=95)
    elif fmt == "WEBP":
        im.save(buffer, format="WEBP", lossless=True)
    else:
        im.save(buffer, format="PNG")
    return buffer.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two 8-bit images of one shape (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")
