"""CompressAI's ``mbt2018_mean`` timed on request, for ``benchmarks/cpu_speed.py`` (which starts it with
the interpreter of a separate environment: CompressAI 1.2.8 needs a torchvision that matches its torch,
see ``benchmarks/compressai_env.sh``).

Reads one image path per line on stdin; for each, encodes and decodes it once with CompressAI's own
``compress``/``decompress`` (PyTorch eager, its C++ rANS) and prints one JSON line:
{"encode_ms": ..., "decode_ms": ..., "bytes": ...}. The weights are random (the pretrained ones cannot
be downloaded here); the transforms' cost does not depend on them, the entropy coder's a little.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from compressai.models import MeanScaleHyperprior
from PIL import Image


def main() -> None:
    n, m, threads = (int(a) for a in sys.argv[1:4])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MeanScaleHyperprior(N=n, M=m).eval()
    model.update(force=True)
    for line in sys.stdin:
        with Image.open(line.strip()) as im:
            x = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            t0 = time.perf_counter()
            out = model.compress(x)
            t1 = time.perf_counter()
            model.decompress(out["strings"], out["shape"])
            t2 = time.perf_counter()
        size = sum(len(s[0]) for s in out["strings"])
        print(json.dumps({"encode_ms": 1000 * (t1 - t0), "decode_ms": 1000 * (t2 - t1), "bytes": size}), flush=True)


if __name__ == "__main__":
    main()
