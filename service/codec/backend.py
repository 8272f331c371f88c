"""Where the float transforms and the integer hyper-synthesis run: onnxruntime sessions.

A backend is anything with ``prepare(graph)`` and ``run(graph, feeds) -> dict of outputs``; the PyTorch
one (cross-checks on the CPU, and GPU serving where onnxruntime has no CUDA provider) is
``models.torch_backend``.
"""
from __future__ import annotations

import threading
from typing import Protocol

import numpy as np
import onnx
import onnxruntime as ort

from service.codec.vjp import synthesis_vjp
from service.codec.zoo import ModelPackage


class Backend(Protocol):
    def prepare(self, graph: str) -> None:
        """Build what running ``graph`` needs; ``ValueError`` if this backend cannot run it."""

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def default_providers() -> list:
    """CUDA first when present. TF32 is turned off so GPU pixels stay within +-1 of the CPU's
    (entropy parameters are exact either way: the integer graphs do not depend on it)."""
    available = ort.get_available_providers()
    providers: list = []
    if "CUDAExecutionProvider" in available:
        providers.append(("CUDAExecutionProvider", {"use_tf32": "0"}))
    return providers + ["CPUExecutionProvider"]


ARENA_MODES = ("on", "shrink", "off")

# Graphs built at run time from a package's own graphs, so that their weights are stored once.
DERIVED = {"g_s_vjp": "g_s"}


def derived_graph(package: ModelPackage, graph: str) -> bytes:
    """The serialized graph ``graph`` (only the synthesis gradient, for refinement, so far)."""
    return synthesis_vjp(onnx.load(str(package.path(f"{DERIVED[graph]}.onnx")))).SerializeToString()


class OnnxBackend:
    """Lazily created onnxruntime sessions for one model package (thread-safe to share)."""

    def __init__(self, package: ModelPackage, providers: list | None = None, threads: int | None = None, arena: str = "on",
                 transforms: str = "fp32"):
        """``transforms``: "int8" runs the package's int8 twins of g_a and g_s where it ships them
        (``ModelPackage.transforms``). ``arena``: onnxruntime's CPU memory arena. "on" (the default,
        fastest) keeps the high-water mark of every run: a worker that once ran a large batch holds its
        memory for good; "shrink" keeps the arena but returns its free memory at the end of each run
        (10-20% slower transforms); "off" allocates per run. benchmarks/memory.py measures the three."""
        if arena not in ARENA_MODES:
            raise ValueError(f"arena must be one of {ARENA_MODES}, got {arena!r}")
        self.package = package
        self.providers = providers or default_providers()
        self.threads = threads  # None: onnxruntime's default (every core)
        self.arena = arena
        self.transforms = package.transforms(transforms)
        self._run_options = ort.RunOptions()
        if arena == "shrink":
            self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._lock = threading.Lock()

    def session(self, graph: str) -> ort.InferenceSession:
        with self._lock:
            if graph not in self._sessions:
                options = ort.SessionOptions()
                if self.threads:
                    options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                options.enable_cpu_mem_arena = self.arena != "off"
                self._sessions[graph] = ort.InferenceSession(self.graph_source(graph), options, providers=self.providers)
            return self._sessions[graph]

    def prepare(self, graph: str) -> None:
        self.session(graph)  # building it checks the graph's operators (service.codec.vjp raises ValueError)

    def graph_source(self, graph: str) -> str | bytes:
        """The ONNX file of ``graph`` (its path), or the serialized graph where it is derived."""
        return derived_graph(self.package, graph) if graph in DERIVED else str(self.package.graph_file(graph, self.transforms))

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.session(graph)
        names = [o.name for o in session.get_outputs()]
        try:
            return dict(zip(names, session.run(names, feeds, self._run_options)))
        except ort.capi.onnxruntime_pybind11_state.RuntimeException as exc:
            if "allocat" in str(exc):  # onnxruntime's own out-of-memory: the caller's MemoryError
                raise MemoryError(f"{graph}: {exc}") from exc
            raise
