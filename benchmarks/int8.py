"""What the shipped int8 transforms (``LIC_TRANSFORMS=int8``) buy on this CPU, and cost.

    .venv/bin/python benchmarks/int8.py [--kodak DIR] [--hires DIR] [--hires-count 6] [--per-layer]
        [--finetuned runs/int8-qat/g_a.pt] [--calibration DIR ...] [--out benchmarks/int8.json]

The default release's int8 twins of g_a and g_s (``models.quantize``: the convolution doing most of each
transform's arithmetic in int8, onnxruntime static QDQ, 7-bit per-channel weights, uint8 activations
calibrated on training crops) against its fp32 graphs, on the
same images in one run: the BD-rate against fp32 of the int8 encoder (fp32 decoder), of the int8
decoder (fp32 encoder) and of both, as ``LIC_TRANSFORMS=int8`` serves; and g_a / g_s milliseconds on a
Kodak-sized input for fp32, the exact sub-pixel rewrite of every transposed convolution of g_s in
fp32 (int8's g_s has it for its quantised one) and int8. Only the float transforms change: symbols and entropy parameters stay exact.
With ``--per-layer``, also each inner convolution alone in int8, and all of them (the choice behind
``models.quantize.int8_convolutions``); with ``--finetuned``, a fine-tune of ``models.int8_finetune``
(of g_s, or of g_a and h_a), float and int8. Those are quantised here, calibrated on ``--calibration``.
Prints the report and writes benchmarks/int8.json (or ``--out``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.data import image_files, load_rgb
from models.quantize import calibration_feeds, fold_casts, int8_graphs, quantize_graph, spatial_convolutions, subpixel_deconvolutions
from service.bench.bd import bd_rate
from service.bench.speed import machine
from service.codec import Codec
from service.codec.backend import OnnxBackend
from service.codec.image_io import psnr
from service.codec.zoo import DEFAULT_MODEL, ModelPackage, load_model

QUALITIES = [1.0, 2.0, 4.0, 6.0, 8.0]


class SwappedBackend(OnnxBackend):
    """The run time's backend with some graphs read from other files (here: a fine-tune's graphs and their int8 twins)."""

    def __init__(self, package: ModelPackage, graphs: dict[str, Path], threads: int | None = None):
        super().__init__(package, threads=threads)
        self.graphs = graphs

    def graph_source(self, graph: str) -> str | bytes:
        return str(self.graphs[graph]) if graph in self.graphs else super().graph_source(graph)


def finetuned_graphs(package: ModelPackage, state: dict, out_dir: Path) -> dict[str, Path]:
    """The release with the fine-tuned transforms in ``state`` (from ``models.int8_finetune``: g_s, or g_a
    and h_a), exported as a release would be (fp16 weights); returns those float graphs' paths."""
    from models.export import export_onnx
    from models.release import load_package

    model, _ = load_package(package.directory)
    trained = state["facts"]["trained"]
    for name in trained:
        getattr(model, name).load_state_dict(state[name])
    export_onnx(model, out_dir)
    return {name: out_dir / f"{name}.onnx" for name in trained}


def rd_points(encoder: Codec, decoder: Codec, model: str, files: list[Path]) -> list[tuple[float, float]]:
    """Mean (bpp, PSNR) per quality over ``files``, real bytes, 8-bit RGB."""
    points = []
    for q in QUALITIES:
        bpp = dist = 0.0
        for path in files:
            rgb = load_rgb(path)
            result = encoder.compress(path.read_bytes(), model=model, quality=q)
            bpp += result.bpp
            dist += psnr(rgb, np.asarray(decoder.decompress(result.data).convert("RGB")))
        points.append((bpp / len(files), dist / len(files)))
    return points


def transform_ms(paths: dict[str, Path], feeds: dict[str, np.ndarray], repeats: int = 5) -> dict[str, float]:
    """Median ms per run of each graph on ``feeds``, interleaved so that load changes hit all alike."""
    sessions = {name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]) for name, path in paths.items()}
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(repeats + 1):
        for name, session in sessions.items():
            t = time.perf_counter()
            session.run(None, feeds)
            times[name].append(1000 * (time.perf_counter() - t))
    return {name: round(float(np.median(t[1:])), 1) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = ROOT.parent / "shared" / "data"
    p.add_argument("--kodak", type=Path, default=shared / "kodak")
    p.add_argument("--hires", type=Path, default=shared / "hires")
    p.add_argument("--hires-count", type=int, default=6, help="the first N photos of --hires")
    p.add_argument("--per-layer", action="store_true", help="also each inner convolution of g_a and g_s alone in int8, and all of them")
    p.add_argument("--finetuned", type=Path, help="also rate this fine-tune of models.int8_finetune (g_s, or g_a and h_a), float and int8")
    p.add_argument("--calibration", type=Path, nargs="+", default=[shared / "train", shared / "train-hires"],
                   help="what --per-layer's and --finetuned's int8 graphs are calibrated on")
    p.add_argument("--crops", type=int, default=64)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "int8.json")
    args = p.parse_args()
    package = load_model(DEFAULT_MODEL)
    if package.manifest.int8 is None:
        raise SystemExit(f"{package.id} ships no int8 twins: run python -m models.quantize {package.id}")
    report: dict = {"machine": machine(), "model": package.id, "int8": package.manifest.int8.model_dump(), "qualities": QUALITIES,
                    "command": " ".join(["benchmarks/int8.py", *sys.argv[1:]])}
    fp32, int8 = Codec(), Codec(backend_factory=partial(OnnxBackend, transforms="int8"))
    pairs = {"int8 g_a (encode)": (int8, fp32), "int8 g_s (decode)": (fp32, int8), "int8 g_a and g_s (LIC_TRANSFORMS=int8)": (int8, int8)}
    graphs = {graph: {"fp32": package.path(f"{graph}.onnx"), "int8": package.graph_file(graph, "int8")} for graph in ("g_a", "g_s")}
    with tempfile.TemporaryDirectory() as tmp:
        sources = {graph: fold_casts(onnx.load(str(package.path(f"{graph}.onnx")))) for graph in ("g_a", "g_s")}
        graphs["g_s"]["fp32 sub-pixel"] = Path(tmp) / "g_s.subpixel.onnx"
        onnx.save(subpixel_deconvolutions(sources["g_s"]), str(graphs["g_s"]["fp32 sub-pixel"]))
        feeds = calibration_feeds(package, args.calibration, args.crops) if args.per_layer or args.finetuned else {}
        if args.per_layer:
            for graph, source in sources.items():
                side = "encode" if graph == "g_a" else "decode"
                convs = spatial_convolutions(source)
                for label, nodes in {**{f"int8 {name} only": [name] for name in convs}, "int8 every inner convolution": convs}.items():
                    path = Path(tmp) / f"{graph}.{len(graphs[graph])}.onnx"
                    quantize_graph(source, feeds[graph], path, nodes)
                    graphs[graph][label] = path
                    codec = Codec(backend_factory=partial(SwappedBackend, graphs={graph: path}))
                    pairs[f"{label} ({side})"] = (codec, fp32) if side == "encode" else (fp32, codec)
        rng = np.random.default_rng(0)
        report["ms_per_kodak_image"] = {
            "g_a": transform_ms(graphs["g_a"], {"x": rng.random((1, 3, 512, 768), dtype=np.float32)}),
            "g_s": transform_ms(graphs["g_s"], {"y_hat": rng.normal(0, 2, (1, 192, 32, 48)).astype(np.float32)}),
        }
        if args.finetuned:
            import torch

            state = torch.load(args.finetuned, map_location="cpu")
            (Path(tmp) / "tuned").mkdir()
            floats = finetuned_graphs(package, state, Path(tmp) / "tuned")
            transform = state["facts"]["transform"]
            tuned_int8 = int8_graphs(package, feeds, Path(tmp) / "tuned", sources={transform: floats[transform]})
            report["finetuned"] = {"state": str(args.finetuned), **{k: v for k, v in state["facts"].items() if k != "log"}}
            side = "encode" if transform == "g_a" else "decode"
            for label, swapped in {f"fine-tuned {transform}, float ({side})": floats, f"fine-tuned {transform}, int8 ({side})": {**floats, **tuned_int8}}.items():
                codec = Codec(backend_factory=partial(SwappedBackend, graphs=swapped))
                pairs[label] = (codec, fp32) if side == "encode" else (fp32, codec)
        sets = {"kodak": image_files(args.kodak), "hires": image_files(args.hires)[: args.hires_count]}
        report["bd_rate_percent_vs_fp32"] = {}
        for name, files in sets.items():
            base = np.array(rd_points(fp32, fp32, package.id, files))
            rows = {label: np.array(rd_points(encoder, decoder, package.id, files)) for label, (encoder, decoder) in pairs.items()}
            report["bd_rate_percent_vs_fp32"][f"{name} ({len(files)} images)"] = {
                k: round(bd_rate(base[:, 0], base[:, 1], v[:, 0], v[:, 1]), 2) for k, v in rows.items()}
    print(json.dumps(report, indent=1))
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
