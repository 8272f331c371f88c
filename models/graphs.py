"""The run-time graphs of a model, as modules with the exact inputs/outputs the run time feeds.

Exported to ONNX by ``models.export`` and run in PyTorch eager by ``models.torch_backend``; both use
these same modules, so the two backends differ only in the engine that executes them.
"""
from __future__ import annotations

import torch
from torch import nn

from models.architectures import VariableRateCodec
from models.integer_hyper import IntegerHyperSynthesis


class Analysis(nn.Module):
    def __init__(self, model: VariableRateCodec):
        super().__init__()
        self.g_a = model.g_a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g_a(x)


class HyperAnalysis(nn.Module):
    """Gained y -> the hyper-latents, coarsest first (as in ``levels()``, without y)."""

    def __init__(self, model: VariableRateCodec):
        super().__init__()
        self.model = model
        self.names = [level.name for level in model.levels() if level.name != "y"]

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        latents = self.model.hyper_analysis(y)
        return tuple(latents[name] for name in self.names)


class Synthesis(nn.Module):
    def __init__(self, model: VariableRateCodec):
        super().__init__()
        self.model = model

    def forward(self, y_hat: torch.Tensor, *features: torch.Tensor) -> torch.Tensor:
        return self.model.synthesize(y_hat, dict(zip(self.model.synthesis_features, features)))


def runtime_graphs(model: VariableRateCodec) -> dict[str, nn.Module]:
    """name -> module, in the order the run time uses them."""
    model.eval()
    graphs: dict[str, nn.Module] = {"g_a": Analysis(model)}
    if len(model.levels()) > 1:
        graphs["h_a"] = HyperAnalysis(model)
    for level in model.levels():
        if level.hyper is not None:
            graphs[level.hyper] = IntegerHyperSynthesis(getattr(model, level.hyper)).eval()
    graphs["g_s"] = Synthesis(model)
    return graphs
