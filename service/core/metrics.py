"""Prometheus metrics (base units, ``_total`` counters, bounded labels).

All metrics live in the gateway process: workers return their stage timings with each batch, and
the gateway observes them, so no multi-process collector is needed.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BPP_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("lic_requests_total", "HTTP requests by endpoint and status code", ["endpoint", "status"], registry=r)
        self.request_duration = Histogram("lic_request_duration_seconds", "HTTP request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("lic_queue_wait_seconds", "time a tile waited for a worker", ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.batch_size = Histogram("lic_batch_size", "tiles per inference batch", ["stage"], buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram("lic_inference_seconds", "onnxruntime time per batch (analysis = g_a, synthesis = g_s)", ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.entropy = Histogram("lic_entropy_coding_seconds", "latent coding per batch: hyper networks, integer hyper-synthesis and ANS", ["direction"], buckets=STAGE_BUCKETS, registry=r)
        self.bpp = Histogram("lic_bits_per_pixel", "bits per pixel of compressed images", ["model", "quality"], buckets=BPP_BUCKETS, registry=r)
        self.bytes_in = Counter("lic_request_bytes_total", "request body bytes", ["endpoint"], registry=r)
        self.bytes_out = Counter("lic_response_bytes_total", "response body bytes", ["endpoint"], registry=r)
        self.pixels = Counter("lic_pixels_total", "image pixels compressed or decompressed", ["endpoint"], registry=r)
        self.cache = Counter("lic_tile_cache_requests_total", "decoded-tile cache lookups", ["result"], registry=r)
        self.latent_cache = Counter("lic_latent_cache_requests_total", "cache lookups of decoded latents (neighbours' context)", ["result"], registry=r)
        self.queue_depth = Gauge("lic_queue_depth_tiles", "tiles waiting for a worker", registry=r)
        self.in_flight = Gauge("lic_in_flight_requests", "requests being processed", registry=r)
        self.workers = Gauge("lic_workers", "inference worker processes", ["device"], registry=r)
        self.ready = Gauge("lic_ready", "1 while /readyz answers ready (every worker up and warm, not draining), else 0", registry=r)
        self.rejected = Counter("lic_rejected_requests_total", "requests refused before processing", ["reason"], registry=r)
        for result in ("hit", "miss", "error"):  # series exist (at 0) before the first event
            self.cache.labels(result)
        for result in ("hit", "miss"):
            self.latent_cache.labels(result)
        for reason in ("queue_full", "worker_lost", "stopped"):
            self.rejected.labels(reason)
