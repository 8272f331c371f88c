"""Learned image codec run time: onnxruntime transforms + integer hyper-synthesis + ANS entropy coding."""
from service.codec.codec import Codec, CompressResult
from service.codec.errors import (
    BitstreamError,
    CodecError,
    ImageError,
    LimitError,
    ModelError,
    Stopped,
)

__all__ = ["BitstreamError", "Codec", "CodecError", "CompressResult", "ImageError", "LimitError", "ModelError", "Stopped"]
