"""Where the CPU time of a compress + decompress goes: per stage (a sampling profile of the whole
Python process, py-spy) and per operator (onnxruntime's own per-node profile of each graph).

    .venv/bin/python benchmarks/stage_profile.py [--model ms-128-192-r7] [--image tests/data/kodim01.png] [--quality 4]

1. py-spy samples one `Codec` compress + decompress of the image (default tile and context, the
   service's code path in one process; one warm-up pass, then four) at 250 Hz; samples are attributed to
   the innermost stage function on their stack (STAGES below), the rest to "other".
2. For each graph of the model, onnxruntime's profiler times every node over 3 runs at the shapes a
   512 px tile with 32 px context has (576 px windows); node times are summed per operator type.
3. Whether the NCHWc layout reorders that onnxruntime inserts around g_a's and g_s's convolutions pay
   for themselves: each graph timed with and without the ``NchwcTransformer`` optimizer, interleaved,
   7 runs each, medians.
Prints the tables and writes benchmarks/stage_profile.json. Needs py-spy (pip install py-spy) and ptrace
rights over the child (root, or ptrace_scope 0).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Stage functions, innermost first wins: a sample inside TileCoder.synthesize counts as synthesis (g_s).
STAGES = {
    "read_image": "read image (Pillow decode, colour)",
    "analyze": "analysis (g_a)",
    "prepare": "hyper-analysis (h_a), quantisation",
    "finish": "entropy encoding (ANS)",
    "decode_latents": "entropy decoding (ANS)",
    "_hyper": "integer hyper-synthesis (h_s)",
    "synthesis_feeds": "synthesis inputs (gain, hyper features)",
    "synthesize": "synthesis (g_s)",
    "stitch": "window stitching",
    "window_feeds": "window stitching",
    "assemble": "assembly and deblocking",
    "write": "container writing",
    "parse": "container parsing",
}

WORKLOAD = """
import sys
from service.codec import Codec
data = open(sys.argv[1], "rb").read()
codec = Codec()
codec.compress(data, model=sys.argv[2], quality=float(sys.argv[3]))  # warm: sessions opened
for _ in range(4):
    codec.decompress(codec.compress(data, model=sys.argv[2], quality=float(sys.argv[3])).data)
"""


def stage_profile(image: Path, model: str, quality: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "profile.txt"
        subprocess.run([str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw", "--rate", "250", "--output", str(raw), "--",
                        sys.executable, "-c", WORKLOAD, str(image), model, str(quality)],
                       cwd=ROOT, check=True, capture_output=True)
        counts: collections.Counter[str] = collections.Counter()
        for line in raw.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            frames = [frame.split(" (")[0].rsplit(".", 1)[-1] for frame in stack.split(";")]
            stage = next((STAGES[f] for f in reversed(frames) if f in STAGES), "other (start-up, session creation, glue)")
            counts[stage] += int(n)
    total = sum(counts.values())
    return {stage: round(100 * n / total, 1) for stage, n in counts.most_common()}


def graph_inputs(model, graph: str, package) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    dtypes = {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in model.graph.input}
    y_stride = package.levels[-1].stride
    strides = {level.hyper: level.stride for level in package.levels if level.hyper} | {"y_hat": y_stride, "y": y_stride}
    feeds = {}
    for name, dims in shapes.items():
        if name == "x":
            feeds[name] = rng.random((1, 3, 576, 576), np.float32)
        elif graph.startswith("h_s"):  # integer hyper-synthesis: its input level's stride
            level = next(lv for lv in package.levels if lv.hyper == graph)
            coarser = package.levels[package.levels.index(level) - 1]
            side = 576 // coarser.stride
            feeds[name] = np.round(rng.normal(0, 2, (1, dims[1], side, side))).astype(dtypes[name])
        else:
            side = 576 // strides.get(name, y_stride)
            feeds[name] = rng.normal(0, 1, (1, dims[1], side, side)).astype(np.float32)
    return feeds


def operator_profile(model_id: str) -> dict[str, dict[str, float]]:
    from service.codec.zoo import load_model

    package = load_model(model_id)
    out = {}
    for path in sorted(package.directory.glob("*.onnx")):
        graph = path.stem
        model = onnx.load(str(path))
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.intra_op_num_threads = os.cpu_count() or 1
        with tempfile.TemporaryDirectory() as tmp:
            options.profile_file_prefix = str(Path(tmp) / graph)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feeds = graph_inputs(model, graph, package)
            for _ in range(3):
                session.run(None, feeds)
            trace = json.loads(Path(session.end_profiling()).read_text())
        per_op: collections.Counter[str] = collections.Counter()
        for event in trace:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                per_op[event["args"]["op_name"]] += event["dur"]
        total = sum(per_op.values())
        out[graph] = {"total_ms_per_run": round(total / 3 / 1000, 1),
                      "share_percent": {op: round(100 * us / total, 1) for op, us in per_op.most_common()}}
    return out


def layout_ablation(model_id: str, repeats: int = 7) -> dict[str, dict[str, float]]:
    """Median ms per 576 px window of g_a and g_s with onnxruntime's NCHWc layout transformer and without."""
    from service.codec.zoo import load_model

    package = load_model(model_id)
    out = {}
    for graph in ("g_a", "g_s"):
        path = str(package.directory / f"{graph}.onnx")
        feeds = graph_inputs(onnx.load(path), graph, package)
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        sessions = {"nchwc": ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]),
                    "plain": ort.InferenceSession(path, options, providers=["CPUExecutionProvider"],
                                                  disabled_optimizers=["NchwcTransformer"])}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(repeats + 1):  # the first round warms up
            for name, session in sessions.items():
                start = time.perf_counter()
                session.run(None, feeds)
                times[name].append(1000 * (time.perf_counter() - start))
        out[graph] = {f"{name}_ms": round(float(np.median(t[1:])), 1) for name, t in times.items()}
    return out


def main() -> None:
    from service.codec.zoo import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "kodim01.png")
    p.add_argument("--quality", type=float, default=4.0)
    args = p.parse_args()
    stages = stage_profile(args.image, args.model, args.quality)
    print(f"Stages of compress + decompress, {args.image.name}, {args.model}, quality {args.quality:g} (share of samples):")
    for stage, share in stages.items():
        print(f"  {share:5.1f}%  {stage}")
    operators = operator_profile(args.model)
    for graph, row in operators.items():
        top = ", ".join(f"{op} {share:.0f}%" for op, share in list(row["share_percent"].items())[:6])
        print(f"{graph:6} {row['total_ms_per_run']:8.1f} ms per 576 px window: {top}")
    layouts = layout_ablation(args.model)
    for graph, row in layouts.items():
        print(f"{graph:6} with NCHWc reorders {row['nchwc_ms']:.1f} ms, without {row['plain_ms']:.1f} ms per 576 px window")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, onnxruntime {ort.__version__}, Python {platform.python_version()}"
    out = ROOT / "benchmarks" / "stage_profile.json"
    out.write_text(json.dumps({"machine": machine, "model": args.model, "image": args.image.name, "quality": args.quality,
                               "command": "benchmarks/stage_profile.py " + " ".join(sys.argv[1:]),
                               "stage_share_percent": stages, "operators": operators,
                               "nchwc_layout_ms": layouts}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
