from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA = Path(__file__).parent / "data"
KODIM01 = DATA / "kodim01.png"
# Where the PyTorch backend's cross-checks run: the CPU here; LIC_TEST_TORCH_DEVICE=cuda on a GPU machine
# (benchmarks/gpu_service.sh runs the golden and determinism tests there).
TORCH_DEVICE = os.environ.get("LIC_TEST_TORCH_DEVICE", "cpu")


@pytest.fixture(scope="session")
def kodim01_bytes() -> bytes:
    return KODIM01.read_bytes()


@pytest.fixture(scope="session")
def kodim01_rgb() -> np.ndarray:
    return np.asarray(Image.open(KODIM01).convert("RGB"))


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def codec():
    from service.codec import Codec

    return Codec()


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> Path:
    """One small, randomly initialised model per architecture, exported through the real exporter."""
    torch = pytest.importorskip("torch")
    from models.architectures import build
    from models.export import export

    root = tmp_path_factory.mktemp("zoo")
    configs = {
        "tiny-factorized": {"architecture": "factorized", "n": 16, "m": 24},
        "tiny-hyperprior": {"architecture": "hyperprior", "n": 16, "m": 24},
        "tiny-mean-scale": {"architecture": "mean-scale", "n": 16, "m": 24},
        "tiny-coarse2fine": {"architecture": "coarse2fine", "n": 16, "m": 24, "h2": 16, "h1": 8},
    }
    for model_id, config in configs.items():
        torch.manual_seed(1)
        model = build(config)
        checkpoint = root / f"{model_id}-train.pt"
        torch.save({"model": model.state_dict(), "config": config, "step": 0, "elapsed": 0.0}, checkpoint)
        export(str(checkpoint), model_id, root)
    return root
