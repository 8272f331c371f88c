"""The codecs a benchmark compares, behind one small interface: encode an RGB image at a setting to
real file bytes (container headers included), decode bytes back to 8-bit RGB.

Classical codecs run through Pillow and its plugins (libjpeg-turbo, libwebp, libavif with aom,
OpenJPEG, libjxl via pillow-jxl-plugin), each swept over its own quality scale. Learned codecs are
the shipped models, run through the service's own ``Codec`` (onnxruntime, 512 px tiles), exactly
what a user of ``lic compress`` or ``POST /compress`` gets.
"""
from __future__ import annotations

import importlib.metadata
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import PIL
from PIL import Image, features

from service.codec import Codec
from service.codec.refine import LEARNING_RATE, TEMPERATURE
from service.codec.zoo import DEFAULT_MODEL, available_models, load_model


@dataclass
class BenchCodec:
    name: str  # the curve's label, e.g. "WebP" or "ms-64-96"
    version: str  # library version or model fingerprint: a change invalidates cached results
    settings: list[float]  # the quality sweep, in the codec's own units
    encode: Callable[[Image.Image, float], bytes]
    decode: Callable[[bytes], np.ndarray]
    learned: bool = False


def _decode_pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _pillow(name: str, fmt: str, version: str, settings: list[float], options: Callable[[float], dict]) -> BenchCodec:
    def encode(image: Image.Image, setting: float) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options(setting))
        return buffer.getvalue()

    return BenchCodec(name, f"pillow {PIL.__version__}, {version}", settings, encode, _decode_pillow)


def classical_codecs() -> dict[str, BenchCodec]:
    """Every classical codec this Pillow build can write, keyed by name."""
    jpeg_q = [5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    codecs = {}
    if features.check("jpg"):
        lib = f"libjpeg-turbo {features.version('libjpeg_turbo')}"
        codecs["JPEG 4:2:0"] = _pillow("JPEG 4:2:0", "JPEG", lib, jpeg_q, lambda q: {"quality": int(q), "subsampling": "4:2:0"})
        codecs["JPEG 4:4:4"] = _pillow("JPEG 4:4:4", "JPEG", lib, jpeg_q, lambda q: {"quality": int(q), "subsampling": "4:4:4"})
    if features.check("webp"):
        codecs["WebP"] = _pillow(
            "WebP", "WEBP", f"libwebp {features.version('webp')} method 6",
            [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95], lambda q: {"quality": int(q), "method": 6},
        )
    if features.check("avif"):
        from PIL import AvifImagePlugin

        codecs["AVIF"] = _pillow(
            "AVIF", "AVIF", f"libavif {features.version('avif')} aom {AvifImagePlugin.get_codec_version('aom')} speed 6",
            [10, 20, 30, 40, 50, 60, 70, 80, 90], lambda q: {"quality": int(q), "speed": 6, "codec": "aom"},
        )
    try:
        import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)

        codecs["JPEG XL"] = _pillow(
            "JPEG XL", "JXL", f"pillow-jxl-plugin {importlib.metadata.version('pillow-jxl-plugin')} effort 7",
            [10, 20, 30, 40, 50, 60, 70, 80, 90, 95], lambda q: {"quality": int(q), "effort": 7},
        )
    except ImportError:
        pass
    if features.check("jpg_2000"):
        # Settings are compression ratios (24 / ratio = bpp before the JP2 container).
        codecs["JPEG 2000"] = _pillow(
            "JPEG 2000", "JPEG2000", f"openjpeg {features.version('jpg_2000')} 9/7",
            [240, 160, 120, 80, 60, 40, 30, 20, 15, 10],
            lambda r: {"quality_mode": "rates", "quality_layers": [r], "irreversible": True},
        )
    return codecs


def learned_codec(codec: Codec, model_id: str, name: str, version: str, settings: list[float], refine: int = 0) -> BenchCodec:
    """One shipped model through ``codec`` (whose backend decides where the transforms run)."""

    def encode(image: Image.Image, q: float) -> bytes:
        return codec.compress(image, model=model_id, quality=q, refine=refine).data

    def decode(data: bytes) -> np.ndarray:
        return np.asarray(codec.decompress(data).convert("RGB"))

    return BenchCodec(name, version, settings, encode, decode, learned=True)


def learned_codecs(codec: Codec | None = None, models: list[str] | None = None, refine: int = 0) -> dict[str, BenchCodec]:
    """Shipped models at qualities 1..8 through the run time (onnxruntime); with ``refine``, the default
    model once more with that many steps of encoder-side refinement."""
    codec = codec or Codec()
    out = {}
    for model_id in models or available_models(codec.zoo):
        package = load_model(model_id, codec.zoo)
        qualities = package.manifest.qualities
        settings = [float(q) for q in range(qualities.min, qualities.max + 1)]
        version = f"{package.manifest.fingerprint}, tile {codec.tile}, context {codec.context}"  # what the bytes depend on
        out[model_id] = learned_codec(codec, model_id, model_id, version, settings)
        if refine and model_id == DEFAULT_MODEL:
            name = refined_name(model_id, refine)
            out[name] = learned_codec(codec, model_id, name, f"{version}, {refinement_version(refine)}", settings, refine)
    return out


def refined_name(model_id: str, steps: int) -> str:
    return f"{model_id} refine {steps}"


def model_of(name: str) -> str:
    """The model behind a learned codec's name (``refined_name`` undone)."""
    return name.split(" refine ")[0]


def refinement_version(steps: int) -> str:
    """What refined bytes depend on besides the model: the steps and the method's constants."""
    return f"refine {steps} (SGA, Adam lr {LEARNING_RATE}, temperature {TEMPERATURE})"
