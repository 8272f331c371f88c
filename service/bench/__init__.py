"""Rate-distortion benchmarking helpers (run-time side: no torch)."""
