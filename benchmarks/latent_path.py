"""The latent path's speed: ANS coding in symbols per second against constriction's own speed, and the
integer hyper-synthesis against the float transforms it sits between.

    .venv/bin/python benchmarks/latent_path.py [--image tests/data/kodim01.png] [--quality 4] [--repeats 7]

On the real latents of one image (the default model, one whole-image tile, so every symbol is in one
call chain): our ``entropy.encode``/``entropy.decode`` (symbols grouped by table, one constriction call
per table, escapes, and the payload checks) beside constriction alone coding the same symbols in one
call with the most used table (its ceiling on this machine: no grouping, no checks), and the integer
hyper-synthesis (onnxruntime, float64 GEMM) beside g_s. Medians of the repeats. Prints a table and
writes benchmarks/latent_path.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.data import load_rgb
from service.bench.speed import machine
from service.codec import Codec, entropy
from service.codec.zoo import DEFAULT_MODEL


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "kodim01.png")
    p.add_argument("--quality", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    coder = Codec().coder(DEFAULT_MODEL)
    rgb = load_rgb(args.image)
    h, w = (s - s % coder.package.padding_multiple for s in rgb.shape[:2])
    x = (rgb[:h, :w].transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)
    q = np.array([args.quality])
    y = coder.analyze(x)
    prepared = coder.prepare(y, q)
    payloads, latents = coder.finish(prepared)
    level = coder.levels[-1]
    tables = coder.tables(level)
    symbols = latents.symbols["y"][0].ravel()
    ids = prepared.table_ids["y"][0]
    count = symbols.size

    def ours_encode() -> bytes:
        ans = entropy.AnsCoder()
        entropy.encode(ans, symbols, ids, tables)
        return ans.get_compressed()

    words = ours_encode()

    def ours_decode() -> None:
        decoder = entropy.PayloadDecoder(words.tobytes())
        entropy.decode(decoder, ids, tables)

    # constriction alone: as many symbols with the most used table, in one call each way.
    common = int(np.bincount(ids).argmax())
    model = tables.models[common]
    indices = np.clip(symbols - tables.minima[common], 0, tables.sizes[common] - 2).astype(np.int32)

    def raw_encode() -> np.ndarray:
        ans = entropy.AnsCoder()
        ans.encode_reverse(indices, model)
        return ans.get_compressed()

    raw_words = raw_encode()

    def raw_decode() -> None:
        entropy.AnsCoder(raw_words).decode(model, count)

    z_level = coder.levels[0]
    z_hat = latents.values[z_level.name]
    feeds = coder.synthesis_feeds(latents, q)
    times = {
        "ANS encode (ours: grouped by table, escapes)": median_ms(ours_encode, args.repeats),
        "ANS decode (ours: grouped by table, escapes, payload checks)": median_ms(ours_decode, args.repeats),
        "ANS encode (constriction alone, one model, one call)": median_ms(raw_encode, args.repeats),
        "ANS decode (constriction alone, one model, one call)": median_ms(raw_decode, args.repeats),
        "integer hyper-synthesis h_s (float64 GEMM)": median_ms(lambda: coder._hyper(level, z_hat), args.repeats),
        "synthesis g_s (fp32)": median_ms(lambda: coder.synthesize(feeds), args.repeats),
    }
    rows = {name: {"ms": round(ms, 2), **({"msymbols_per_s": round(count / ms / 1e3, 1)} if "ANS" in name else {})}
            for name, ms in times.items()}
    print(f"{args.image.name} {w}x{h}, quality {args.quality:g}: {count:,} symbols of y, {len(tables)} tables, "
          f"{len(np.unique(ids))} used")
    for name, r in rows.items():
        rate = f"{r['msymbols_per_s']:8.1f} Msym/s" if "msymbols_per_s" in r else ""
        print(f"  {name:62} {r['ms']:8.1f} ms {rate}")
    report = {"machine": machine(), "model": DEFAULT_MODEL, "image": args.image.name, "size": [w, h], "quality": args.quality,
              "symbols": int(count), "tables_used": int(len(np.unique(ids))), "repeats": args.repeats,
              "command": "benchmarks/latent_path.py " + " ".join(sys.argv[1:]), "rows": rows}
    (ROOT / "benchmarks" / "latent_path.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
