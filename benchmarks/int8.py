"""What int8 transforms would buy on this CPU, and cost: onnxruntime static quantisation of g_a and g_s.

    .venv/bin/python benchmarks/int8.py [--kodak DIR] [--hires DIR] [--hires-count 6] [--calibration DIR ...]
        [--finetuned runs/int8-qat/g_a.pt] [--out benchmarks/int8.json]

Builds int8 twins of the default release's float transforms the way onnxruntime recommends (QDQ,
per-channel int8 weights, with 7 bits of range where the CPU lacks VNNI, because onnxruntime's u8s8
kernels saturate on AVX2 without it, and all 8 where it has VNNI (``WEIGHT_BITS``); uint8 activations, ranges calibrated on random 256 px crops of training photos run through the
release's own float pipeline: g_a sees the pixels, g_s what decoding them at a random quality feeds it).
onnxruntime quantises Conv but not ConvTranspose, so g_s's transposed convolutions are first rewritten
as exact sub-pixel convolutions (3x3 Conv to 4x the channels, then DepthToSpace). The spatial
convolutions that read a latent or write the latent or the pixels, and GDN's 1x1 normalisers, stay
float (g_a's first, reading 8-bit pixels, is quantised).

Then, on the same images in one run: the BD-rate of int8 encode (decoder float) and of int8 encode and
decode against fp32, and g_a / g_s milliseconds on a Kodak-sized input for fp32, the sub-pixel fp32
rewrite, int8, and int8 weights with uint16 activations (which onnxruntime cannot fuse into its
QLinearConv, 8-bit only, so their convolutions run in fp32 between Q/DQ pairs). Only the float
transforms change: symbols and entropy parameters stay exact.
With ``--finetuned``, also a fine-tune of ``models.int8_finetune`` (of g_s, or of g_a and h_a), float and
int8. Prints a table and writes benchmarks/int8.json (or ``--out``).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.data import image_files, load_rgb
from service.bench.bd import bd_rate
from service.bench.speed import machine, vector_isa
from service.codec import Codec
from service.codec.backend import OnnxBackend
from service.codec.image_io import psnr
from service.codec.zoo import DEFAULT_MODEL, ModelPackage, load_model

CALIBRATION_PATCH = 256
QUALITIES = [1.0, 2.0, 4.0, 6.0, 8.0]


def fold_casts(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights stored narrow behind Casts (``models.export.compact_initializers``) -> plain initializers
    of the Cast's type, which is what onnxruntime's quantiser recognises as weights."""
    stored = {i.name: i for i in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type == "Cast" and node.input[0] in stored:
            dtype = helper.tensor_dtype_to_np_dtype(helper.get_attribute_value(node.attribute[0]))
            model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(stored[node.input[0]]).astype(dtype), node.output[0]))
        else:
            kept.append(node)
    _replace(model.graph.node, kept)
    _drop_unused(model)
    return model


def _drop_unused(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    _replace(model.graph.initializer, [i for i in model.graph.initializer if i.name in used])


def _replace(field, items) -> None:
    items = list(items)
    del field[:]
    field.extend(items)


def subpixel_kernel(weight: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """A ConvTranspose weight (C_in, C_out, k, k) -> the equivalent stride-1 3x3 Conv weight
    (C_out * stride**2, C_in, 3, 3) whose outputs, depth-to-space (CRD) by ``stride``, are the
    transposed convolution's. Output row s*i + r reads input rows i + t - 1 (t = 0..2) through kernel
    row k = pad + r - s*(t - 1); taps outside the kernel are zero."""
    c_in, c_out, k, _ = weight.shape
    out = np.zeros((c_out, stride, stride, c_in, 3, 3), np.float32)
    taps = [(r, t, pad + r - stride * (t - 1)) for r in range(stride) for t in range(3)]
    for ry, ty, ky in taps:
        for rx, tx, kx in taps:
            if 0 <= ky < k and 0 <= kx < k:
                out[:, ry, rx, :, ty, tx] = weight[:, :, ky, kx].T
    return out.reshape(c_out * stride * stride, c_in, 3, 3)


def subpixel_deconvolutions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every ConvTranspose (stride s, kernel k <= 2s + 1, padding and output padding that double
    the size exactly) -> Conv 3x3 to s*s times the channels, then DepthToSpace. Needs fp32 initializers."""
    weights = {i.name: i for i in model.graph.initializer}
    nodes, added = [], []
    for node in model.graph.node:
        if node.op_type != "ConvTranspose":
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        (s, s2), (k, k2) = attrs["strides"], attrs["kernel_shape"]
        pad, output_padding = attrs.get("pads", [0] * 4), attrs.get("output_padding", [0, 0])
        if s != s2 or k != k2 or k > 2 * s + 1 or len(set(pad)) != 1 or k - 2 * pad[0] + output_padding[0] != s \
                or len(set(output_padding)) != 1 or attrs.get("group", 1) != 1:
            raise ValueError(f"{node.name}: no sub-pixel form for ConvTranspose {attrs}")
        weight = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        bias = numpy_helper.to_array(weights[node.input[2]]).astype(np.float32) if len(node.input) > 2 else np.zeros(weight.shape[1], np.float32)
        out = node.output[0]
        added += [numpy_helper.from_array(subpixel_kernel(weight, s, pad[0]), f"{out}/subpixel.weight"),
                  numpy_helper.from_array(np.repeat(bias, s * s), f"{out}/subpixel.bias")]
        nodes += [helper.make_node("Conv", [node.input[0], f"{out}/subpixel.weight", f"{out}/subpixel.bias"], [f"{out}/subpixel"],
                                   kernel_shape=[3, 3], pads=[1, 1, 1, 1], name=f"{node.name}/subpixel"),
                  helper.make_node("DepthToSpace", [f"{out}/subpixel"], [out], blocksize=s, mode="CRD", name=f"{node.name}/shuffle")]
    _replace(model.graph.node, nodes)
    model.graph.initializer.extend(added)
    _drop_unused(model)
    onnx.checker.check_model(model)
    return model


def calibration_crops(folders: list[Path], count: int, seed: int) -> list[np.ndarray]:
    """``count`` random CALIBRATION_PATCH px crops (uint8, H x W x 3), one per photo drawn at random."""
    rng = random.Random(seed)
    photos = [p for folder in folders for p in image_files(folder)]
    crops: list[np.ndarray] = []
    while len(crops) < count:
        rgb = load_rgb(rng.choice(photos))
        h, w = rgb.shape[:2]
        if min(h, w) < CALIBRATION_PATCH:
            continue
        y, x = rng.randrange(h - CALIBRATION_PATCH + 1), rng.randrange(w - CALIBRATION_PATCH + 1)
        crops.append(rgb[y : y + CALIBRATION_PATCH, x : x + CALIBRATION_PATCH])
    return crops


def calibration_feeds(model_id: str, folders: list[Path], count: int, seed: int = 0) -> dict[str, list[dict[str, np.ndarray]]]:
    """Per graph, the feeds the float run time gives it for each of ``count`` calibration crops of the
    photos in ``folders``: g_a the pixels; g_s the decoded latents of that crop at a random quality in [1, 8]."""
    coder = Codec().coder(model_id)
    rng = np.random.default_rng(seed)
    feeds: dict[str, list[dict[str, np.ndarray]]] = {"g_a": [], "g_s": []}
    for crop in calibration_crops(folders, count, seed):
        x = (crop.transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)
        quality = rng.uniform(1.0, 8.0, 1)
        _, latents = coder.encode(coder.analyze(x), quality)
        feeds["g_a"].append({"x": x})
        feeds["g_s"].append(coder.synthesis_feeds(latents, quality))
    return feeds


WEIGHT_BITS = 8 if "VNNI" in vector_isa() else 7  # without VNNI, onnxruntime's u8s8 kernels saturate on 8-bit weights


def spatial_convolutions(model: onnx.ModelProto) -> list[str]:
    """The Conv nodes worth int8: kernels over 1 px that neither read a latent (a graph input other than
    the image ``x``) nor are the last (writing the latent or the pixels), where 8 bits of activation are
    too coarse. GDN's 1x1 normalisers stay float too: they are cheap and set every channel's gain."""
    weights = {i.name: i.dims for i in model.graph.initializer}
    latents = {i.name for i in model.graph.input} - {"x"}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in weights and weights[n.input[1]][-1] > 1]
    return [n.name for n in convs[:-1] if n.input[0] not in latents]


def quantize_graph(source: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], out: Path, activations: str = "uint8") -> None:
    """Static QDQ quantisation of ``spatial_convolutions``: int8 per-channel weights of ``WEIGHT_BITS``,
    ``activations`` (uint8, or uint16, which onnxruntime's QDQ format allows too), ranges over ``feeds``."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as tmp:
        plain, prepared = Path(tmp) / "plain.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(source, str(plain))
        quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=WEIGHT_BITS == 7, calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": 99.999}, weight_type=QuantType.QInt8,
                        activation_type={"uint8": QuantType.QUInt8, "uint16": QuantType.QUInt16}[activations],
                        op_types_to_quantize=["Conv"], nodes_to_quantize=spatial_convolutions(source))


def int8_graphs(package: ModelPackage, feeds: dict[str, list[dict[str, np.ndarray]]], out_dir: Path,
                sources: dict[str, Path] | None = None, activations: str = "uint8") -> dict[str, Path]:
    """Write int8 twins of ``package``'s g_a and g_s (or only of the float graphs in ``sources``, which
    replace the package's) into ``out_dir``, calibrated on ``feeds`` (``calibration_feeds``), with
    ``activations`` (``quantize_graph``); graph -> path."""
    sources = sources or {"g_a": package.path("g_a.onnx"), "g_s": package.path("g_s.onnx")}
    paths = {}
    for graph in sources:
        source = fold_casts(onnx.load(str(sources[graph])))
        if graph == "g_s":
            source = subpixel_deconvolutions(source)
        paths[graph] = out_dir / f"{Path(sources[graph]).stem}.int8{'' if activations == 'uint8' else '-' + activations}.onnx"
        quantize_graph(source, feeds[graph], paths[graph], activations)
    return paths


class SwappedBackend(OnnxBackend):
    """The run time's backend with some graphs read from other files (here: the int8 twins)."""

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
    p.add_argument("--calibration", type=Path, nargs="+", default=[shared / "train", shared / "train-hires"])
    p.add_argument("--crops", type=int, default=64)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "int8.json")
    p.add_argument("--finetuned", type=Path, help="also rate this fine-tune of models.int8_finetune (g_s, or g_a and h_a), float and int8")
    args = p.parse_args()
    package = load_model(DEFAULT_MODEL)
    report: dict = {"machine": machine(), "weight_bits": WEIGHT_BITS, "model": package.id, "qualities": QUALITIES, "calibration": f"{args.crops} random 256 px crops of "
                    + ", ".join(f.name for f in args.calibration), "command": "benchmarks/int8.py " + " ".join(sys.argv[1:])}
    with tempfile.TemporaryDirectory() as tmp:
        feeds = calibration_feeds(package.id, args.calibration, args.crops)
        int8 = int8_graphs(package, feeds, Path(tmp))
        wide = int8_graphs(package, feeds, Path(tmp), activations="uint16")
        subpixel = Path(tmp) / "g_s.subpixel.onnx"
        onnx.save(subpixel_deconvolutions(fold_casts(onnx.load(str(package.path("g_s.onnx"))))), str(subpixel))
        rng = np.random.default_rng(0)
        report["ms_per_kodak_image"] = {
            "g_a": transform_ms({"fp32": package.path("g_a.onnx"), "int8": int8["g_a"], "int8, uint16 activations": wide["g_a"]},
                                {"x": rng.random((1, 3, 512, 768), dtype=np.float32)}),
            "g_s": transform_ms({"fp32": package.path("g_s.onnx"), "fp32 sub-pixel": subpixel, "int8": int8["g_s"],
                                 "int8, uint16 activations": wide["g_s"]},
                                {"y_hat": rng.normal(0, 2, (1, 192, 32, 48)).astype(np.float32)}),
        }
        fp32 = Codec()
        int8_codec = Codec(backend_factory=partial(SwappedBackend, graphs=int8))
        tuned = {}
        if args.finetuned:
            import torch

            state = torch.load(args.finetuned, map_location="cpu")
            (Path(tmp) / "tuned").mkdir()
            floats = finetuned_graphs(package, state, Path(tmp) / "tuned")
            transform = state["facts"]["transform"]
            tuned_int8 = int8_graphs(package, feeds, Path(tmp) / "tuned", sources={transform: floats[transform]})
            report["finetuned"] = {"state": str(args.finetuned), **{k: v for k, v in state["facts"].items() if k != "log"}}
            side = "encode" if transform == "g_a" else "decode"
            codecs = {f"fine-tuned {transform}, float ({side})": Codec(backend_factory=partial(SwappedBackend, graphs=floats)),
                      f"fine-tuned {transform}, int8 ({side})": Codec(backend_factory=partial(SwappedBackend, graphs={**floats, **tuned_int8}))}
            if transform == "g_s":
                codecs["int8 g_s (decode)"] = Codec(backend_factory=partial(SwappedBackend, graphs={"g_s": int8["g_s"]}))
            tuned = {label: (codec, fp32) if side == "encode" else (fp32, codec) for label, codec in codecs.items()}
        sets = {"kodak": image_files(args.kodak), "hires": image_files(args.hires)[: args.hires_count]}
        report["bd_rate_percent_vs_fp32"] = {}
        for name, files in sets.items():
            base = np.array(rd_points(fp32, fp32, package.id, files))
            rows = {"int8 g_a (encode)": np.array(rd_points(int8_codec, fp32, package.id, files)),
                    "int8 g_a and g_s": np.array(rd_points(int8_codec, int8_codec, package.id, files))}
            for label, (encoder, decoder) in tuned.items():
                rows[label] = np.array(rd_points(encoder, decoder, package.id, files))
            report["bd_rate_percent_vs_fp32"][f"{name} ({len(files)} images)"] = {
                k: round(bd_rate(base[:, 0], base[:, 1], v[:, 0], v[:, 1]), 2) for k, v in rows.items()}
    print(json.dumps(report, indent=1))
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
