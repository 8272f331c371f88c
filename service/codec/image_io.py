"""Reading untrusted images into 8-bit sRGB planes, and writing decoded images by format.

``read_image`` is the one reader of untrusted images for the library, the CLI and the service. It checks
the pixel count from the image header before any pixel is decoded (decompression bombs), picks one frame,
applies the EXIF orientation, maps the image's mode to what the codec codes (table below) and converts
colour to sRGB. The codec codes 8-bit sRGB colour through the learned transforms, plus alpha as a
lossless plane; decoding returns L, LA, RGB or RGBA, untagged (sRGB), with no metadata.

**Colour management** is Pillow's ImageCms (LittleCMS); this module does no colour maths of its own. An
embedded ICC profile (``info["icc_profile"]``: PNG iCCP, JPEG APP2, WebP ICCP, TIFF, AVIF) is converted
to LittleCMS's built-in sRGB profile with the **relative colorimetric intent and black-point
compensation** (``RENDERING_INTENT``, ``TRANSFORM_FLAGS``):

* Relative colorimetric reproduces every colour that sRGB can show exactly as the profile defines it
  (the source white becomes sRGB's white), so an Adobe RGB or ProPhoto photo looks as it does in a
  colour-managed browser or viewer; colours outside sRGB are clipped to its gamut boundary. Perceptual,
  the alternative, is not defined by matrix/TRC profiles (Adobe RGB, ProPhoto, Display P3: LittleCMS
  falls back to colorimetric) and, where a LUT profile defines it, compresses the whole gamut, which
  desaturates the colours that needed no change.
* Black-point compensation maps the source's darkest black to sRGB's black. A CMYK profile's ink black
  is L* 10-20: without it, shadows come out as lifted dark grey. Matrix/TRC profiles have black at zero,
  where it changes nothing. Relative colorimetric with black-point compensation is also what Photoshop
  and Lightroom use by default for photographs.

An image without a profile is taken as sRGB and its pixels are not touched. A profile that LittleCMS
cannot read or apply, or whose colour space is not the pixels' (an RGB profile on a grey image), is
ignored, as browsers do. PNG gAMA/cHRM/sRGB chunks without an iCCP profile are ignored as well.
Conversion happens at 8 bits, after any bit-depth reduction.

**Modes** map explicitly; any other mode is refused with ``ImageError``:

=============================  ==============  =====================================================
input mode                     decodes as      how
=============================  ==============  =====================================================
RGB                            RGB             as is; an RGB profile is converted to sRGB
RGBA                           RGBA            colour as RGB, alpha kept exactly
RGBa (premultiplied alpha)     RGBA            un-premultiplied by Pillow, then as RGBA
RGBX                           RGB             the padding band dropped
L                              L               as is; a GRAY profile is converted to sRGB (grey kept)
LA                             LA              grey as L, alpha kept exactly
La (premultiplied alpha)       LA              un-premultiplied by Pillow, then as LA
1                              L               0 and 255
P                              RGB or RGBA     palette expanded; RGBA when it has transparency (tRNS,
                                               GIF transparency index, RGBA palette), alpha kept
PA                             RGBA            palette expanded (colour kept), alpha kept exactly
I;16, I;16L, I;16B, I;16N, I   L               to 8 bits: round(v / 257), clipped to 0..255
F                              L               on L's 0-255 scale, as Pillow's F->L: NaN as 0,
                                               clipped to 0..255, rounded
CMYK with a CMYK profile       RGB             through the profile (ImageCms, intent above)
CMYK without one               RGB             Pillow's naive conversion, R = (255-C)(255-K)/255 and
                                               likewise G from M, B from Y: no ink model, so colours
                                               differ from a colour-managed rendering
YCbCr                          RGB             Pillow's JPEG (full-range BT.601) conversion, then as RGB
HSV                            RGB             Pillow's conversion, then as RGB
LAB                            RGB             CIELAB (D50, the ICC convention) to sRGB through ImageCms,
                                               intent above; no alpha plane
=============================  ==============  =====================================================

**What is kept and what is dropped** on input:

=====================  ==============================================================================
ICC profile            converted to sRGB (above); the profile itself is not stored
EXIF                   the orientation is applied to the pixels; everything else is dropped
XMP, IPTC, comments    dropped
alpha                  kept exactly, as a lossless plane (LA, La, RGBA, RGBa, PA, P with transparency)
bit depth above 8      reduced to 8 bits: 16-bit grey by round(v / 257); 16-bit colour by Pillow's
                       decoder, which keeps the high byte
extra frames           animated or multi-frame input (GIF, APNG, WebP, AVIF, multi-page TIFF: more
                       than one ``n_frames``) is refused unless ``frame`` picks one (0-based); the
                       others are dropped. A JPEG with extra MP images (MPO: previews, depth maps)
                       and a layered PSD code frame 0 (the primary image, the composite) by default.
=====================  ==============================================================================
"""
from __future__ import annotations

import io
import math
import operator
import warnings
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from service.codec.errors import BitstreamError, ImageError, LimitError
from service.codec.limits import MAX_FRAME, MAX_ICC_BYTES

Image.MAX_IMAGE_PIXELS = None  # we enforce our own, configurable limit below
OUTPUT_FORMATS = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG", "jpg": "JPEG", "avif": "AVIF"}
MEDIA_TYPES = {"PNG": "image/png", "WEBP": "image/webp", "JPEG": "image/jpeg", "AVIF": "image/avif"}
DEFAULT_OUTPUT_QUALITY = {"JPEG": 95, "AVIF": 90}  # WebP: lossless unless a quality is asked for; PNG: lossless
RENDERING_INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC
TRANSFORM_FLAGS = ImageCms.Flags.BLACKPOINTCOMPENSATION
# Multi-frame formats whose frame 0 is the picture itself and the other frames are not alternatives of
# it: coded from frame 0 unless a frame is asked for.
STILL_WITH_EXTRA_FRAMES = frozenset({"MPO", "PSD"})
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_PILLOW_CONVERTS = {"La": "LA", "RGBa": "RGBA", "RGBX": "RGB", "YCbCr": "RGB", "HSV": "RGB", "PA": "RGBA", "1": "L"}


@dataclass
class Planes:
    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None  # (H, W) uint8
    mode: str  # what decoding returns: L, LA, RGB or RGBA
    icc: bytes | None = None  # the colour space of ``rgb`` when an RGB profile is kept (keep_icc); None: sRGB


# What Pillow raises on broken or hostile image data (a broken PNG chunk is a SyntaxError).
PILLOW_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def read_image(source: bytes | str, max_pixels: int, frame: int | None = None, keep_icc: bool = False) -> Planes:
    """The image in ``source`` (bytes or a path) as 8-bit sRGB planes (module docstring).

    ``keep_icc``: an RGB image with an RGB profile (at most ``bitstream.MAX_ICC_BYTES``) keeps its own
    numbers and the profile (``Planes.icc``), which the container stores and decoding reattaches, for
    colour-managed viewers; every other image is converted to sRGB as usual.

    ``frame``: which frame of an animated or multi-frame image to code, 0-based. Without it such an image is
    refused (``ImageError``), except an MPO JPEG or a layered PSD, whose frame 0 is the picture. A frame out
    of range is an ``ImageError``, also on a still image (which has frame 0 only).
    """
    if frame is not None:
        if isinstance(frame, bool) or not hasattr(type(frame), "__index__"):  # ints and numpy integers
            raise ImageError(f"frame must be a whole number, not {frame!r}")
        frame = operator.index(frame)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            check_pixels(im, max_pixels)
            select_frame(im, frame)
            check_pixels(im, max_pixels)  # the pages of a TIFF have sizes of their own
            icc = im.info.get("icc_profile")
            im = ImageOps.exif_transpose(im)
            im.load()
    except PILLOW_ERRORS as exc:
        raise ImageError(f"cannot read image: {exc}") from exc
    if icc:
        im.info["icc_profile"] = icc
    return to_planes(im, keep_icc)


def check_pixels(im: Image.Image, max_pixels: int) -> None:
    if im.width * im.height > max_pixels:
        raise LimitError(f"image has {im.width}x{im.height} = {im.width * im.height} pixels; the limit is {max_pixels}")


def select_frame(im: Image.Image, frame: int | None) -> None:
    """Seek ``im`` to ``frame``, or refuse a multi-frame image when none is asked for."""
    frames = getattr(im, "n_frames", 1)
    if frame is None:
        if frames > 1 and im.format not in STILL_WITH_EXTRA_FRAMES:
            raise ImageError(f"animated image with {frames} frames: lic codes one still image; "
                             f"ask for one frame with frame=K (K from 0 to {frames - 1})")
        return
    if frame > MAX_FRAME:
        raise ImageError(f"frame={frame} is past the last frame this service reads ({MAX_FRAME})")
    if not 0 <= frame < frames:
        raise ImageError(f"frame={frame} is out of range: the image has {frames} frame{'s' if frames > 1 else ''} "
                         f"(0 to {frames - 1})")
    if frame:
        im.seek(frame)


def to_planes(im: Image.Image, keep_icc: bool = False) -> Planes:
    """A decoded Pillow image (its current frame) as 8-bit sRGB planes: the mode table in the module
    docstring, with the embedded profile in ``im.info["icc_profile"]`` converted to sRGB, or, with
    ``keep_icc`` and an RGB profile on RGB pixels, kept (``read_image``)."""
    profile = embedded_profile(im.info.get("icc_profile"))
    if im.mode == "LAB":
        rgb = cms_to_srgb(im, ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")), "LAB")
        if rgb is None:
            raise ImageError("cannot convert the LAB image to sRGB")
        return rgb_planes(rgb, None)
    if im.mode == "CMYK":
        rgb = cms_to_srgb(im, profile, "CMYK") if colour_space(profile) == "CMYK" else None
        return rgb_planes(rgb if rgb is not None else im.convert("RGB"), None)
    if im.mode == "P":
        im = im.convert("RGBA" if im.has_transparency_data else "RGB")
    elif im.mode in _PILLOW_CONVERTS:
        im = im.convert(_PILLOW_CONVERTS[im.mode])
    elif im.mode in SIXTEEN_BIT_MODES:
        im = Image.fromarray((np.asarray(im, dtype=np.float64) / 257.0).clip(0, 255).round().astype(np.uint8))
    elif im.mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        im = Image.fromarray(values.clip(0, 255).round().astype(np.uint8))
    if im.mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageError(f"unsupported image mode {im.mode}")
    alpha = np.asarray(im.getchannel("A")).copy() if im.mode.endswith("A") else None
    colour = im.convert(im.mode[:-1]) if alpha is not None else im
    if colour.mode == "L":
        converted = cms_to_srgb(colour, profile, "L") if colour_space(profile) == "GRAY" else None
        gray = np.asarray(colour) if converted is None else np.asarray(converted).mean(axis=2).round().astype(np.uint8)
        return Planes(np.repeat(gray[..., None], 3, axis=2), alpha, "LA" if alpha is not None else "L")
    if keep_icc and colour_space(profile) == "RGB" and len(im.info["icc_profile"]) <= MAX_ICC_BYTES:
        return replace(rgb_planes(colour, alpha), icc=im.info["icc_profile"])
    converted = cms_to_srgb(colour, profile, "RGB") if colour_space(profile) == "RGB" else None
    return rgb_planes(converted if converted is not None else colour, alpha)


def rgb_planes(rgb: Image.Image, alpha: np.ndarray | None) -> Planes:
    return Planes(np.ascontiguousarray(np.asarray(rgb)), alpha, "RGB" if alpha is None else "RGBA")


def embedded_profile(data: bytes | None) -> ImageCms.ImageCmsProfile | None:
    """The embedded ICC profile, or None when there is none or LittleCMS cannot read it."""
    if not data:
        return None
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(data))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def colour_space(profile: ImageCms.ImageCmsProfile | None) -> str | None:
    """The profile's data colour space: "RGB", "GRAY", "CMYK", ... (None without a profile)."""
    return profile.profile.xcolor_space.strip() if profile is not None else None


def cms_to_srgb(im: Image.Image, profile: ImageCms.ImageCmsProfile | None, mode: str) -> Image.Image | None:
    """``im`` (in ``mode``, described by ``profile``) converted to sRGB as an RGB image through LittleCMS,
    with ``RENDERING_INTENT`` and ``TRANSFORM_FLAGS``; None when LittleCMS cannot build the transform."""
    if profile is None:
        return None
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))  # per call: no profile handle is shared between threads
    try:
        transform = ImageCms.buildTransform(profile, srgb, mode, "RGB", renderingIntent=RENDERING_INTENT, flags=TRANSFORM_FLAGS)
        return ImageCms.applyTransform(im, transform)
    except ImageCms.PyCMSError:
        return None


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


def to_image(rgb: np.ndarray, alpha: np.ndarray | None, mode: str, icc: bytes | None = None) -> Image.Image:
    """Decoded planes as a Pillow image in ``mode``, carrying ``icc`` (a kept profile) for the writers."""
    if mode in ("L", "LA"):
        gray = np.round(rgb.astype(np.float32).mean(axis=2)).astype(np.uint8)
        im = Image.fromarray(gray, "L")
    else:
        im = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        im.putalpha(Image.fromarray(alpha, "L"))
    if icc:
        im.info["icc_profile"] = icc
    return im


def fit_within(im: Image.Image, width: int | None, height: int | None) -> Image.Image:
    """``im`` downscaled (Lanczos, aspect kept, never enlarged) to fit ``width`` x ``height``; either may be None."""
    scale = min(1.0, (width or im.width) / im.width, (height or im.height) / im.height)
    if scale == 1.0:
        return im
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    resized = im.resize(size, Image.Resampling.LANCZOS)
    resized.info.update(im.info)  # a kept ICC profile stays with the pixels
    return resized


def output_format(name: str) -> str:
    key = name.lower().lstrip(".")
    if key not in OUTPUT_FORMATS:
        raise ImageError(f"unsupported output format {name!r} (use png, webp, jpeg or avif)")
    return OUTPUT_FORMATS[key]


def write_image(im: Image.Image, fmt: str, quality: int | None = None) -> bytes:
    """Encode a decoded image for delivery: PNG losslessly; WebP losslessly, or lossy at ``quality``;
    JPEG at ``quality`` (default 95, alpha dropped); AVIF at ``quality`` (default 90, speed 6)."""
    fmt = output_format(fmt)
    quality = DEFAULT_OUTPUT_QUALITY.get(fmt) if quality is None else quality
    icc = {"icc_profile": im.info["icc_profile"]} if im.info.get("icc_profile") else {}  # a kept profile goes along
    buffer = io.BytesIO()
    if fmt == "JPEG":
        im.convert("L" if im.mode in ("L", "LA") else "RGB").save(buffer, format="JPEG", quality=quality, **icc)
    elif fmt == "WEBP":
        im.save(buffer, format="WEBP", **({"lossless": True} if quality is None else {"quality": quality, "method": 4}), **icc)
    elif fmt == "AVIF":
        im.save(buffer, format="AVIF", quality=quality, speed=6, **icc)
    else:
        im.save(buffer, format="PNG", **icc)
    return buffer.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two 8-bit images of one shape (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")
