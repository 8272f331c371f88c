"""The manifest of a model package: the seam between training (``models/export.py`` writes it) and
the run time (``zoo.ModelPackage`` reads it). One typed record for both, validated on load; the format
is documented in docs/manifest.md.

The fingerprint is the first 16 hex digits of the sha256 of the files' sha256 table (JSON, keys
sorted): a bitstream carries it (8 bytes) so that it is never decoded with other weights.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.codec.errors import ModelError
from service.codec.limits import QUALITY_MAX, QUALITY_MIN

PACKAGE_FORMAT = 2  # 1: weights in models/checkpoints/<id>.pt beside the graphs; 2: the ONNX package is their only copy
READABLE_FORMATS = (1, 2)
ARCHITECTURES = ("factorized", "hyperprior", "mean-scale", "coarse2fine")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Level:
    """One latent of a model, as the run time sees it (``levels()`` of a PyTorch model, coarsest first)."""
    name: str
    channels: int
    stride: int  # downsampling factor relative to the image
    hyper: str | None  # the integer hyper-synthesis graph predicting its mean/scale; None: factorized tables


class Qualities(_Record):
    min: int
    max: int
    lambdas: list[float]  # the rate-distortion trade-off each integer quality was trained for
    metric: Literal["mse", "ms-ssim"]

    @model_validator(mode="after")
    def _ladder(self) -> Qualities:
        if (self.min, self.max) != (QUALITY_MIN, QUALITY_MAX) or len(self.lambdas) != self.max - self.min + 1:
            raise ValueError(f"qualities must be {QUALITY_MIN:g}..{QUALITY_MAX:g} with one lambda each")
        if any(b <= a for a, b in zip(self.lambdas, self.lambdas[1:])):
            raise ValueError("lambdas must increase with quality")
        return self


class Training(BaseModel):
    """How the weights were trained (for people; the run time reads none of it). Older releases
    recorded a few more facts (``schedule``), which are kept as they are."""
    model_config = ConfigDict(extra="allow", frozen=True)
    steps: int | None
    hours: float
    seconds: float | None = None
    patch: int | None
    batch: int | None
    lr: float | None
    data: str
    warm_start: dict | None = None


class Onnx(_Record):
    opset: int
    max_abs_diff_vs_pytorch: dict[str, float]  # per graph, checked at export; the integer hyper-synthesis must be 0


class Int8Twins(_Record):
    """int8 (QDQ) twins of the float transforms g_a and g_s, for ``LIC_TRANSFORMS=int8`` (``models.quantize``).
    They approximate the same weights, so they stand outside the fingerprint: a bitstream made with either
    encoder decodes with either decoder (the entropy parameters are exact either way; the pixels differ)."""
    files: dict[str, str]  # twin file name ("g_a.int8.onnx") -> sha256
    weight_bits: int  # of per-channel range (7: right on x86 CPUs without VNNI too)
    calibration: str  # what the activation ranges were calibrated on


class KodakPoint(_Record):
    quality: float
    bpp: float
    psnr: float
    encode_ms: int
    decode_ms: int


class Manifest(_Record):
    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    version: str
    package_format: int = 1  # format-1 manifests predate the field
    architecture: Literal[ARCHITECTURES]
    widths: dict[str, int]
    levels: list[Level]
    synthesis_features: list[str]  # hyper features g_s reads beside y_hat (coarse-to-fine)
    qualities: Qualities
    training: Training
    onnx: Onnx
    files: dict[str, str]  # file name -> sha256
    fingerprint: str = Field(pattern=r"^[0-9a-f]{16}$")
    int8: Int8Twins | None = None
    kodak: list[KodakPoint] = []  # mean per quality, measured through the run time at export
    kodak_images: dict[str, list[tuple[float, float, float]]] = {}  # image -> [quality, bpp, psnr] per quality

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.package_format not in READABLE_FORMATS:
            raise ValueError(f"package format {self.package_format} (this build reads {READABLE_FORMATS})")
        if not self.levels or self.levels[-1].name != "y":
            raise ValueError("the finest level must be y")
        hypers = {level.hyper for level in self.levels if level.hyper}
        if not set(self.synthesis_features) <= hypers:
            raise ValueError(f"synthesis features {self.synthesis_features} are not hyper graphs of the levels")
        if self.fingerprint != fingerprint_of(self.files):
            raise ValueError("fingerprint does not match the files' sha256 table")
        return self

    @property
    def padding_multiple(self) -> int:
        """The largest stride: every tile is padded to a multiple of it."""
        return max(level.stride for level in self.levels)

    @property
    def context_multiple(self) -> int:
        """Tile context must be whole latent pixels of everything the synthesis reads (y, hyper features)."""
        strides = {level.hyper: level.stride for level in self.levels if level.hyper}
        return max([self.levels[-1].stride] + [strides[name] for name in self.synthesis_features])

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            return cls.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            raise ModelError(f"model manifest {path} is unreadable or invalid: {exc}") from exc

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=2) + "\n")  # older manifests keep their shape


def fingerprint_of(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
