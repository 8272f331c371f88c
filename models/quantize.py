"""int8 twins of a release's float transforms, for ``LIC_TRANSFORMS=int8`` on the CPU.

    .venv/bin/python -m models.quantize ms-128-192-r7 [--calibration DIR ...] [--crops 64] [--seed 0]

onnxruntime's static quantisation, as it recommends for CNNs: QDQ format, per-channel int8 weights with
7 bits of range (``WEIGHT_BITS``: onnxruntime's u8s8 kernels saturate on 8-bit weights on x86 CPUs
without VNNI, so with 7 bits the twins are right on every CPU), uint8 activations whose ranges are
calibrated (99.999th percentile) on random 256 px crops of training photos run through the release's
own float pipeline: g_a sees the pixels, g_s what decoding them at a random quality feeds it.
Of each transform only the convolution that does most of its arithmetic is int8 (``int8_convolutions``:
70% of the multiply-adds, at about a third to a half of the BD-rate that int8 in every inner convolution
costs); the rest stays float, with the release's fp16 weights. onnxruntime quantises Conv but not
ConvTranspose, so g_s's is first rewritten as its exact sub-pixel convolution (3x3 Conv to 4x the
channels, then DepthToSpace).

Writes ``g_a.int8.onnx`` and ``g_s.int8.onnx`` into the package and records them in its manifest's
``int8`` (outside the fingerprint: bitstreams do not change). ``benchmarks/int8.py`` measures what
they cost in BD-rate and buy in speed.
"""
from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from PIL import Image

from models.data import image_files, load_rgb
from models.export import compact_initializers
from models.release import REPO
from service.codec import Codec
from service.codec.manifest import Int8Twins, Manifest
from service.codec.zoo import INT8_GRAPHS, ModelPackage, load_model

CALIBRATION_PATCH = 256
CALIBRATION_PERCENTILE = 99.999
WEIGHT_BITS = 7


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


def subpixel_deconvolutions(model: onnx.ModelProto, only: set[str] | None = None) -> onnx.ModelProto:
    """Every ConvTranspose (or those named in ``only``; stride s, kernel k <= 2s + 1, padding and output
    padding that double the size exactly) -> Conv 3x3 named ``<name>/subpixel`` to s*s times the
    channels, then DepthToSpace, in a copy of ``model``. Needs fp32 initializers."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    weights = {i.name: i for i in model.graph.initializer}
    nodes, added = [], []
    for node in model.graph.node:
        if node.op_type != "ConvTranspose" or (only is not None and node.name not in only):
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
    """``count`` random CALIBRATION_PATCH px crops (uint8, H x W x 3), one per photo drawn at random from
    those that are large enough."""
    rng = random.Random(seed)
    photos = [p for folder in folders for p in image_files(folder) if min(_size(p)) >= CALIBRATION_PATCH]
    if not photos:
        raise ValueError(f"no photo in {[str(f) for f in folders]} has a {CALIBRATION_PATCH} px crop")
    crops: list[np.ndarray] = []
    while len(crops) < count:
        rgb = load_rgb(rng.choice(photos))
        h, w = rgb.shape[:2]
        y, x = rng.randrange(h - CALIBRATION_PATCH + 1), rng.randrange(w - CALIBRATION_PATCH + 1)
        crops.append(rgb[y : y + CALIBRATION_PATCH, x : x + CALIBRATION_PATCH])
    return crops


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:  # the header only
        return image.size


def calibration_feeds(package: ModelPackage, folders: list[Path], count: int, seed: int = 0) -> dict[str, list[dict[str, np.ndarray]]]:
    """Per graph, the feeds the float run time gives it for each of ``count`` calibration crops of the
    photos in ``folders``: g_a the pixels; g_s the decoded latents of that crop at a random quality in [1, 8]."""
    coder = Codec(zoo=package.directory.parent).coder(package.id)
    rng = np.random.default_rng(seed)
    feeds: dict[str, list[dict[str, np.ndarray]]] = {"g_a": [], "g_s": []}
    for crop in calibration_crops(folders, count, seed):
        x = (crop.transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)
        quality = rng.uniform(1.0, 8.0, 1)
        _, latents = coder.encode(coder.analyze(x), quality)
        feeds["g_a"].append({"x": x})
        feeds["g_s"].append(coder.synthesis_feeds(latents, quality))
    return feeds


def spatial_convolutions(model: onnx.ModelProto) -> list[str]:
    """The convolutions (Conv or ConvTranspose) int8 could take: kernels over 1 px that neither read a
    latent (a graph input other than the image ``x``) nor are the last (writing the latent or the pixels),
    where 8 bits of activation are too coarse. GDN's 1x1 normalisers stay float too: they are cheap and
    set every channel's gain."""
    weights = {i.name: i.dims for i in model.graph.initializer}
    latents = {i.name for i in model.graph.input} - {"x"}
    convs = [n for n in model.graph.node
             if n.op_type in ("Conv", "ConvTranspose") and n.input[1] in weights and weights[n.input[1]][-1] > 1]
    return [n.name for n in convs[:-1] if n.input[0] not in latents]


def multiply_adds(model: onnx.ModelProto) -> dict[str, float]:
    """Per convolution with stored weights, its multiply-adds per pixel of the graph's input, for a graph
    that is one chain of strided convolutions, transposed ones and depth-to-space (as g_a and g_s are)."""
    weights = {i.name: i.dims for i in model.graph.initializer}
    scale, macs = 1.0, {}  # pixels of the current feature map per input pixel
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv" and node.input[1] in weights:
            scale /= np.prod(attrs.get("strides", [1, 1]))
            macs[node.name] = float(np.prod(weights[node.input[1]])) * scale  # per output pixel
        elif node.op_type == "ConvTranspose":
            macs[node.name] = float(np.prod(weights[node.input[1]])) * scale  # per input pixel
            scale *= np.prod(attrs["strides"])
        elif node.op_type == "DepthToSpace":
            scale *= attrs["blocksize"] ** 2
    return macs


def int8_convolutions(model: onnx.ModelProto) -> list[str]:
    """What the twins quantise: of ``spatial_convolutions``, the one that does most of the transform's
    arithmetic (g_a's second convolution, g_s's third transposed one: 70% each). int8 in the other inner
    convolutions costs about as much BD-rate per layer and buys little time (``benchmarks/int8.py --per-layer``)."""
    macs = multiply_adds(model)
    return [max(spatial_convolutions(model), key=macs.__getitem__)]


def quantize_graph(source: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], out: Path, nodes: list[str] | None = None) -> None:
    """Static QDQ quantisation of the convolutions ``nodes`` (default ``int8_convolutions``) of the float
    graph ``source``: int8 per-channel weights of WEIGHT_BITS, uint8 activations with ranges over
    ``feeds``. A transposed convolution among them is rewritten as its exact sub-pixel convolution
    first (onnxruntime's quantiser skips ConvTranspose). Written to ``out`` with the float layers'
    weights stored as the release's fp16, as in its float graphs."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    nodes = int8_convolutions(source) if nodes is None else nodes
    deconvolutions = {n.name for n in source.graph.node if n.op_type == "ConvTranspose"} & set(nodes)
    source = subpixel_deconvolutions(source, only=deconvolutions) if deconvolutions else source
    with tempfile.TemporaryDirectory() as tmp:
        plain, prepared = Path(tmp) / "plain.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(source, str(plain))
        quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=WEIGHT_BITS == 7, calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": CALIBRATION_PERCENTILE}, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8, op_types_to_quantize=["Conv"],
                        nodes_to_quantize=[f"{n}/subpixel" if n in deconvolutions else n for n in nodes])
    compact_initializers(out)


def int8_graphs(package: ModelPackage, feeds: dict[str, list[dict[str, np.ndarray]]], out_dir: Path,
                sources: dict[str, Path] | None = None) -> dict[str, Path]:
    """Write int8 twins (``<graph>.int8.onnx``) of ``package``'s g_a and g_s (or only of the float graphs
    in ``sources``, which replace the package's) into ``out_dir``, calibrated on ``feeds``
    (``calibration_feeds``); graph -> path."""
    sources = sources or {graph: package.path(f"{graph}.onnx") for graph in INT8_GRAPHS["int8"]}
    paths = {graph: out_dir / f"{graph}.int8.onnx" for graph in sources}
    for graph, source in sources.items():
        quantize_graph(fold_casts(onnx.load(str(source))), feeds[graph], paths[graph])
    return paths


def add_int8_twins(package: ModelPackage, folders: list[Path], crops: int, seed: int = 0) -> Int8Twins:
    """Quantise ``package``'s g_a and g_s into the package itself and record the twins in its manifest."""
    paths = int8_graphs(package, calibration_feeds(package, folders, crops, seed), package.directory)
    twins = Int8Twins(files={p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths.values()}, weight_bits=WEIGHT_BITS,
                      calibration=f"{crops} random {CALIBRATION_PATCH} px crops (seed {seed}) of "
                                  + ", ".join(_shown(folder) for folder in folders))
    path = package.path("manifest.json")
    Manifest.load(path).model_copy(update={"int8": twins}).save(path)
    return twins


def _shown(folder: Path) -> str:
    """A data folder as the docs name it (shared/data/train), not as this machine mounts it."""
    folder = folder.resolve()
    return str(folder.relative_to(REPO.parent)) if folder.is_relative_to(REPO.parent) else str(folder)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = REPO.parent / "shared" / "data"
    p.add_argument("model", help="a model id of the zoo")
    p.add_argument("--calibration", type=Path, nargs="+", default=[shared / "train", shared / "train-hires"])
    p.add_argument("--crops", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    twins = add_int8_twins(load_model(args.model), args.calibration, args.crops, args.seed)
    print(twins.model_dump_json(indent=1))


if __name__ == "__main__":
    main()
