"""Released model packages: ``models/zoo/<id>/`` holds manifest.json, the ONNX graphs and tables.npz.

The manifest names the architecture, its latent levels, qualities and lambdas, how it was trained,
its measured Kodak results, and the sha256 of every file; the *fingerprint* (a hash over those) is
written into every bitstream so a file is never decoded with different weights than it was made with.
"""
from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

import numpy as np

from service.codec.entropy import FrequencyTables
from service.codec.errors import LimitError, ModelError
from service.codec.limits import QUALITY_MAX, QUALITY_MIN
from service.codec.manifest import Level, Manifest

ZOO_DIR = Path(__file__).resolve().parents[2] / "models" / "zoo"  # the service's is Settings.model_dir (LIC_MODEL_DIR)
DEFAULT_MODEL = "ms-128-192-r7"
# Peak onnxruntime memory of one window through g_a or g_s (g_s is the larger), in bytes per window
# pixel per channel of N: a little over the worst of benchmarks/memory.json's rows (batch 1, any arena
# mode; "on" peaks highest). Larger batches cost less per window, so a batch's estimate errs high.
TRANSFORM_BYTES_PER_PIXEL = {"coarse2fine": 42.5, "mean-scale": 15.5, "hyperprior": 15.5, "factorized": 15.5}


# What the float transforms run in (LIC_TRANSFORMS), as the graphs it puts on the package's int8 twins
# (manifest ``int8``, where it ships them): "int8-encoder" only g_a, so decoding stays fp32's pixel for
# pixel; "int8" g_a and g_s. The hyper-synthesis is integer either way.
INT8_GRAPHS = {"fp32": (), "int8-encoder": ("g_a",), "int8": ("g_a", "g_s")}
TRANSFORMS = tuple(INT8_GRAPHS)


class ModelPackage:
    def __init__(self, directory: Path):
        self.directory = directory
        self.manifest = Manifest.load(directory / "manifest.json")
        self.id = self.manifest.id
        self.levels: list[Level] = self.manifest.levels
        self.synthesis_features = self.manifest.synthesis_features
        self.padding_multiple = self.manifest.padding_multiple
        self.context_multiple = self.manifest.context_multiple

    @property
    def fingerprint(self) -> bytes:
        """8 bytes identifying exactly these weights and tables (what a bitstream carries)."""
        return bytes.fromhex(self.manifest.fingerprint)

    def window_bytes(self, height: int, width: int) -> int:
        """Estimated peak transform memory of one (height x width) window, encode or decode."""
        return int(TRANSFORM_BYTES_PER_PIXEL[self.manifest.architecture] * self.manifest.widths["n"] * height * width)

    def windows_per_batch(self, window: tuple[int, int], budget: int) -> int:
        """How many (height, width) windows one batch may hold within ``budget`` bytes of transform
        memory; ``LimitError`` when not even one fits."""
        need = self.window_bytes(*window)
        if need > budget:
            raise LimitError(f"a {window[1]}x{window[0]} window of model {self.id} needs about {need / 2**20:.0f} MiB, "
                             f"over the limit of {budget / 2**20:.0f} MiB; use a smaller tile")
        return budget // need

    def path(self, name: str) -> Path:
        return self.directory / name

    def transforms(self, wanted: str) -> str:
        """What this package's transforms run in when ``wanted`` (one of TRANSFORMS) is asked for: that,
        where the package ships int8 twins, fp32 otherwise."""
        if wanted not in TRANSFORMS:
            raise ValueError(f"transforms must be one of {TRANSFORMS}, got {wanted!r}")
        return wanted if self.manifest.int8 is not None else "fp32"

    def precision(self, graph: str, transforms: str = "fp32") -> str:
        """What ``graph`` runs in under ``transforms``: "int8" (its twin) or "fp32"."""
        return "int8" if graph in INT8_GRAPHS[self.transforms(transforms)] else "fp32"

    def graph_file(self, graph: str, transforms: str = "fp32") -> Path:
        """The ONNX file of ``graph`` under ``transforms``: its int8 twin, or its own."""
        return self.path(f"{graph}.int8.onnx" if self.precision(graph, transforms) == "int8" else f"{graph}.onnx")

    @cached_property
    def _arrays(self) -> dict[str, np.ndarray]:
        with np.load(self.path("tables.npz")) as data:
            return {k: data[k] for k in data.files}

    @cached_property
    def factorized_tables(self) -> FrequencyTables:
        return self._tables("factorized")

    @cached_property
    def gaussian_tables(self) -> FrequencyTables:
        return self._tables("gaussian")

    def _tables(self, prefix: str) -> FrequencyTables:
        a = self._arrays
        return FrequencyTables(a[f"{prefix}_freqs"], a[f"{prefix}_offsets"], a[f"{prefix}_minima"], int(a["precision"]))

    def gains(self, quality: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel gain and inverse gain for a fractional quality (geometric interpolation)."""
        pos = min(max(quality, QUALITY_MIN), QUALITY_MAX) - 1
        lo = min(int(pos), int(QUALITY_MAX) - 2)
        frac = pos - lo
        log_gain, log_inverse = self._arrays["log_gain"].astype(np.float64), self._arrays["log_inverse_gain"].astype(np.float64)
        gain = np.exp(log_gain[lo] * (1 - frac) + log_gain[lo + 1] * frac)
        inverse = np.exp(log_inverse[lo] * (1 - frac) + log_inverse[lo + 1] * frac)
        return gain.astype(np.float32), inverse.astype(np.float32)

    def lmbda(self, quality: float) -> float:
        """The rate-distortion trade-off the model was trained for at a fractional quality (log-linear)."""
        logs = np.log(self.manifest.qualities.lambdas)
        pos = min(max(quality, QUALITY_MIN), QUALITY_MAX) - 1
        return float(np.exp(np.interp(pos, np.arange(len(logs)), logs)))

    def verify(self) -> None:
        """Check every file against the manifest's sha256 (used by ``lic models --verify`` and tests)."""
        twins = self.manifest.int8.files if self.manifest.int8 else {}
        for name, digest in {**self.manifest.files, **twins}.items():
            actual = hashlib.sha256(self.path(name).read_bytes()).hexdigest()
            if actual != digest:
                raise ModelError(f"{self.id}: {name} does not match its manifest (sha256 {actual[:12]} != {digest[:12]})")


def available_models(zoo: Path | None = None) -> list[str]:
    root = zoo or ZOO_DIR
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").exists()) if root.exists() else []


def load_model(model_id: str, zoo: Path | None = None) -> ModelPackage:
    directory = (zoo or ZOO_DIR) / model_id
    if not model_id or "/" in model_id or not (directory / "manifest.json").exists():
        known = ", ".join(available_models(zoo)) or "none"
        raise ModelError(f"unknown model {model_id!r} (available: {known})")
    return ModelPackage(directory)
