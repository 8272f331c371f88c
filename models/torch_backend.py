"""The run time's ``Backend`` in PyTorch, from a release package's own weights.

Two jobs: the eager twin for cross-backend checks on the CPU (a bitstream encoded with onnxruntime
must decode identically here, and the reverse), and GPU serving where onnxruntime has no CUDA
provider (``LIC_BACKEND=torch``: a machine with PyTorch-CUDA but the CPU build of onnxruntime).

On CUDA the float transforms run in float32 with TF32 off, so pixels stay within +-1 of the CPU's.
The integer hyper-synthesis (``models.integer_hyper``) sums integers in float64 below 2**53, which is
exact in any order on any device, so its entropy parameters are identical on the GPU and the CPU;
``hyper_device`` puts it on either (which is faster depends on the batch: ``benchmarks/gpu_service.sh``).
"""
from __future__ import annotations

import numpy as np
import torch

from models.architectures import VariableRateCodec
from models.graphs import HyperAnalysis, runtime_graphs
from models.release import load_checkpoint, release_source
from service.codec.zoo import ModelPackage

VJP = "g_s_vjp"  # the synthesis gradient of encoder-side refinement (service.codec.vjp's graph, here by autograd)


class TorchBackend:
    def __init__(self, model: VariableRateCodec, device: str = "cpu", threads: int | None = None, hyper_device: str | None = None):
        self.device = torch.device(device)
        self.hyper_device = torch.device(hyper_device or device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cudnn.benchmark = True  # one algorithm search per input shape (batch, window)
        if threads:
            torch.set_num_threads(threads)
        self.synthesis_features = list(model.synthesis_features)
        self.graphs = runtime_graphs(model)
        for name, module in self.graphs.items():
            module.to(self.hyper_device if name.startswith("h_s") else self.device)

    @classmethod
    def from_package(cls, package: ModelPackage, device: str = "cpu", threads: int | None = None, hyper_device: str | None = None) -> TorchBackend:
        """The backend of an installed package: its fp16 weights read back into the architecture (or, for a
        format-1 package, its release checkpoint's)."""
        model, _ = load_checkpoint(release_source(package.id, package.directory.parent))
        return cls(model, device, threads, hyper_device)

    def prepare(self, graph: str) -> None:
        if graph not in self.graphs and graph != VJP:
            raise ValueError(f"no graph {graph!r} in this model")

    def _tensor(self, array: np.ndarray, device: torch.device) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if device.type == "cuda":
            return tensor.pin_memory().to(device, non_blocking=True)
        return tensor

    @staticmethod
    def _array(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy()

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if graph == VJP:
            return self._synthesis_gradient(feeds)
        self.prepare(graph)
        module = self.graphs[graph]
        device = self.hyper_device if graph.startswith("h_s") else self.device
        inputs = [self._tensor(v, device) for v in feeds.values()]
        with torch.inference_mode():
            if graph == "g_a":
                return {"y": self._array(module(*inputs))}
            if graph == "g_s":
                return {"x_hat": self._array(module(*inputs))}
            if isinstance(module, HyperAnalysis):
                return {name: self._array(t) for name, t in zip(module.names, module(*inputs))}
            features, mean, index = module(*inputs)
        return {"features": self._array(features), "mean": self._array(mean), "scale_index": self._array(index)}

    def _synthesis_gradient(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """x_hat and d/dŷ of ½·Σ weight·(clip(x_hat, 0, 1) − target)², as ``service.codec.vjp``'s graph gives them."""
        y_hat = self._tensor(feeds["y_hat"], self.device).requires_grad_(True)
        features = [self._tensor(feeds[name], self.device) for name in self.synthesis_features]
        target, weight = self._tensor(feeds["target"], self.device), self._tensor(feeds["weight"], self.device)
        with torch.enable_grad():
            x_hat = self.graphs["g_s"](y_hat, *features)
            loss = 0.5 * (weight * (x_hat.clamp(0, 1) - target) ** 2).sum()
            (grad,) = torch.autograd.grad(loss, y_hat)
        return {"x_hat": self._array(x_hat), "grad": self._array(grad)}
