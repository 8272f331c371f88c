"""A released model back in PyTorch (for warm starts, evaluation and the PyTorch backend).

A release is stored once, as its ONNX package (``models/zoo/<id>/``): from package format 2 on, every
graph is exported unfolded, so its initializers are the trained fp16 parameters under their
state-dict names, and tables.npz keeps the few tensors no graph reads (the factorized density's
parameters, the quality gains). Packages of format 1 have folded graphs and integer hyper weights;
they were released beside an fp16 checkpoint, ``models/checkpoints/<id>.pt``, which stays their
PyTorch source.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from models.architectures import VariableRateCodec, build
from service.codec.manifest import PACKAGE_FORMAT, Manifest

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "models" / "zoo"
LEGACY_CHECKPOINTS = REPO / "models" / "checkpoints"
PACKAGE_TENSORS = ("log_gain", "log_inverse_gain", "entropy_bottleneck.")  # in tables.npz, not in any graph


def release_source(model_id: str, zoo: Path | None = None) -> Path:
    """Where a released model's weights are: its format-1 checkpoint if it has one, else its package."""
    legacy = LEGACY_CHECKPOINTS / f"{model_id}.pt"
    return legacy if legacy.exists() else (zoo or ZOO) / model_id


def load_checkpoint(path: str | Path) -> tuple[VariableRateCodec, dict]:
    """A model and its training facts (config, step, elapsed; args for run checkpoints) from a
    ``.pt`` checkpoint or a package directory."""
    path = Path(path)
    if path.is_dir():
        return load_package(path)
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = build(state["config"])
    model.load_state_dict({k: v.float() for k, v in state["model"].items()})
    return model.eval(), state


def release_checkpoint(model: VariableRateCodec, state: dict, path: Path) -> None:
    """fp16 weights + config + training facts, no optimiser: how a leased GPU hands a run back.
    Written to a temporary file first, so a run killed mid-write leaves the previous checkpoint whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {k: state.get(k) for k in ("step", "elapsed", "args")}
    save_atomic({"model": {k: v.half().cpu() for k, v in model.state_dict().items()}, "config": model.config(), **info}, path)


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save through a temporary file: a reader never sees a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def graph_name_in_model(graph: str, initializer: str) -> str:
    """State-dict name of a graph's weight: g_a wraps ``model.g_a``; h_a and g_s wrap the whole model
    (``model.``); a hyper-synthesis graph is named after the module it converts (``h_s2.`` ...)."""
    name = initializer.removesuffix(".stored")  # compact weights sit behind a Cast (models.export)
    if graph == "g_a":
        return name
    if graph in ("h_a", "g_s"):
        return name.removeprefix("model.")
    return f"{graph}.{name}"


def package_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    import onnx
    from onnx import numpy_helper

    state: dict[str, torch.Tensor] = {}
    for path in sorted(directory.glob("*.onnx")):
        for initializer in onnx.load(str(path)).graph.initializer:
            name = graph_name_in_model(path.stem, initializer.name)
            value = torch.from_numpy(numpy_helper.to_array(initializer).astype(np.float32))
            if name in state and not torch.equal(state[name], value):
                raise ValueError(f"{directory.name}: {name} differs between graphs")
            state[name] = value
    with np.load(directory / "tables.npz") as tables:
        state |= {k: torch.from_numpy(tables[k].astype(np.float32)) for k in tables.files if k.startswith(PACKAGE_TENSORS)}
    return state


def load_package(directory: Path) -> tuple[VariableRateCodec, dict]:
    manifest = Manifest.load(directory / "manifest.json")
    if manifest.package_format < PACKAGE_FORMAT:
        raise ValueError(f"{directory.name} is a format-1 package (folded graphs): its weights are "
                         f"{LEGACY_CHECKPOINTS / (directory.name + '.pt')}")
    config = {"architecture": manifest.architecture, **manifest.widths}
    model = build(config)
    wanted = model.state_dict().keys()
    model.load_state_dict({k: v for k, v in package_state_dict(directory).items() if k in wanted})  # strict: all present
    return model.eval(), {"config": config, "step": manifest.training.steps, "elapsed": manifest.training.seconds, "args": {}}
