"""Service settings: every field is read from an environment variable ``LIC_<NAME>`` (pydantic-settings).

Defaults are the embedded mode: one process, CPU, in-process tile cache, no other service needed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.codec.limits import CONTEXT_MULTIPLE, DEFAULT_CONTEXT, DEFAULT_TILE, MAX_CONTEXT, check_tile
from service.codec.zoo import DEFAULT_MODEL, ZOO_DIR


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIC_", env_file=None)

    host: str = "127.0.0.1"
    port: int = 8000
    metrics_port: int | None = Field(None, description="serve /metrics on this port as well (None: only on the main port)")

    model_dir: Path = Field(ZOO_DIR, description="folder of model packages (models/zoo in the repository and the image)")
    default_model: str = DEFAULT_MODEL
    tile: int = DEFAULT_TILE
    context: int = Field(DEFAULT_CONTEXT, ge=0, le=MAX_CONTEXT, multiple_of=CONTEXT_MULTIPLE,
                         description="px of each neighbouring tile the transforms see (0: independent tiles, with seam deblocking)")
    workers: int = Field(1, ge=1, description="inference worker processes (one per GPU on GPU hosts)")
    image_workers: int = Field(1, ge=1, description="worker processes for whole-image jobs (rate control, refinement), apart from the tile workers")
    max_image_jobs: int = Field(8, ge=1, description="whole-image jobs running or waiting before requests are refused with 503")
    max_work: float = Field(30.0, gt=0, description="largest whole-image job, in megapixel-steps (rate_control.job_cost): refused up front above it")
    threads_per_worker: int = Field(0, ge=0, description="transform (intra-op) threads per worker; 0 = cores / workers")
    device: str = Field("auto", description="auto | cpu | cuda")
    backend: Literal["onnxruntime", "torch"] = Field(
        "onnxruntime", description="what runs the transforms: onnxruntime (with its CUDA provider where onnxruntime-gpu is "
        "installed), or PyTorch from the same packages (needs the train extra; GPUs where onnxruntime has no CUDA provider)")
    torch_hyper_device: Literal["same", "cpu"] = Field(
        "same", description="LIC_BACKEND=torch on a GPU: the integer hyper-synthesis on the GPU too, or on the CPU (exact on both)")
    transforms: Literal["fp32", "int8-encoder", "int8"] = Field(
        "fp32", description="what g_a and g_s run in on the CPU, where a model ships int8 twins: fp32; int8-encoder (g_a int8: "
        "faster encoding, slightly larger files, decoding unchanged); int8 (g_a and g_s: faster decoding too, at a larger "
        "BD-rate cost; README 'Where the CPU time goes'). The entropy coding is exact either way")
    arena: Literal["on", "shrink", "off"] = Field("on", description="onnxruntime CPU arena: keep the peak (fastest), return free memory after each run (the CPU overlay), or none")
    gpu_count: int = Field(1, ge=1, description="GPUs on the host: worker k uses GPU k mod gpu_count")
    max_batch: int = Field(8, ge=1, le=64, description="most tiles in one inference batch")
    max_queue_delay_ms: float = Field(0.0, ge=0, description="wait for a fuller batch at most this long (0: never wait when a worker is free)")
    max_queue_tiles: int = Field(512, ge=1, description="tiles waiting for a worker before requests are refused with 503")
    warmup_batches: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [1, 2, 4, 8], description="batch sizes run at start-up per worker")

    request_timeout_s: float = Field(60.0, gt=0)
    body_timeout_s: float = Field(10.0, gt=0, description="longest wait for the next chunk of a request body before a 408")
    header_timeout_s: float = Field(10.0, gt=0, description="a connection whose request line and headers are not complete this long after it opened (or after its previous response) is closed")
    keep_alive_s: float = Field(5.0, gt=0, description="an idle keep-alive connection is closed after this long")
    max_connections: int = Field(1000, ge=1, description="open connections (and requests) over which new requests get 503 at once")
    drain_seconds: float = Field(0.0, ge=0, description="after SIGTERM, report not-ready this long before closing the listener")
    max_body_bytes: int = Field(64 << 20, ge=1)
    max_pixels: int = Field(64_000_000, ge=1, description="input or output pixels per request, checked from headers")
    max_tiles: int = Field(1024, ge=1)
    max_compare_pixels: int = Field(4_000_000, ge=1, description="largest image POST /compare takes (each codec is encoded about 7 times; MS-SSIM needs about 100 bytes per pixel)")
    max_decode_bytes: int = Field(1536 << 20, ge=1 << 20, description="estimated peak transform memory of one batch "
                                  "(encode or decode; ModelPackage.window_bytes): batches are cut to fit, a request "
                                  "whose single window does not fit is refused with 413")

    redis_url: str | None = None
    cache_ttl_s: int = Field(3600, ge=1)
    cache_memory_bytes: int = Field(256 << 20, ge=0, description="in-process tile cache bound when no Redis is configured")
    redis_timeout_s: float = Field(0.05, gt=0)
    redis_retry_s: float = Field(2.0, ge=0, description="after a Redis error, skip the cache this long before trying again")

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="origins browsers may call the API from (comma-separated; * any; empty, the default: no CORS)")
    cache_control: str = Field("public, max-age=31536000, immutable", description="Cache-Control of /decompress responses: the output depends only on the input")
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Bearer keys for /compress and /decompress; empty = open")

    @field_validator("api_keys", "warmup_batches", "cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("tile")
    @classmethod
    def _tile(cls, value: int) -> int:
        return check_tile(value)

    @model_validator(mode="after")
    def _int8_on_the_cpu(self) -> Settings:
        if self.transforms != "fp32" and (self.backend != "onnxruntime" or self.device == "cuda"):
            raise ValueError(f"LIC_TRANSFORMS={self.transforms} runs onnxruntime on the CPU: not with LIC_BACKEND=torch or LIC_DEVICE=cuda")
        return self

    def threads(self) -> int:
        """Transform threads per worker (onnxruntime or PyTorch): LIC_THREADS_PER_WORKER, else the CPUs
        this process may use (the cgroup's quota in a container, not the node's cores) shared by the tile workers."""
        return self.threads_per_worker or max(1, available_cpus() // self.workers)


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs granted to this process: its affinity, capped by a cgroup v2 CPU quota (``cpu.max``)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return cpus
    return cpus if quota == "max" else max(1, min(cpus, int(quota) // int(period)))
