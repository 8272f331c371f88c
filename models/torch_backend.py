"""PyTorch-eager backend with the run time's ``Backend`` interface, for cross-backend checks:
a bitstream encoded with onnxruntime must decode identically here, and the reverse."""
from __future__ import annotations

import numpy as np
import torch

from models.architectures import VariableRateCodec
from models.graphs import HyperAnalysis, runtime_graphs


class TorchBackend:
    def __init__(self, model: VariableRateCodec, threads: int | None = None):
        self.graphs = runtime_graphs(model)
        if threads:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        module = self.graphs[graph]
        inputs = [torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()]
        if graph == "g_a":
            return {"y": module(*inputs).numpy()}
        if graph == "g_s":
            return {"x_hat": module(*inputs).numpy()}
        if isinstance(module, HyperAnalysis):
            return {name: t.numpy() for name, t in zip(module.names, module(*inputs))}
        features, mean, index = module(*inputs)
        return {"features": features.numpy(), "mean": mean.numpy(), "scale_index": index.numpy()}
