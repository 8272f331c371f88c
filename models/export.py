"""``lic export``: a trained checkpoint -> a released model package under models/zoo/<id>/.

Writes the ONNX graphs (opset 17, dynamic batch/H/W, weights in the narrowest exact type), tables.npz
(integer frequency tables, the quality gains and the factorized density's parameters), checks every
graph against PyTorch, measures Kodak through the real run time (onnxruntime, real bytes) and writes
manifest.json with sha256 of every file and a fingerprint.
The package is the release's only copy of its weights (package format 2): graphs are exported
unfolded, so ``models.release`` reads the fp16 parameters back for warm starts and PyTorch.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.architectures import LAMBDAS, QUALITIES, VariableRateCodec
from models.entropy_models import TABLE_PRECISION, gaussian_pmf_tables, quantize_tables
from models.graphs import runtime_graphs
from models.release import REPO, ZOO, load_checkpoint
from service.codec.manifest import PACKAGE_FORMAT, Manifest, Onnx, Qualities, Training, fingerprint_of


@torch.no_grad()
def example_inputs(model: VariableRateCodec, name: str, size: int = 128) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    x = torch.rand(2, 3, size, size)
    graphs = runtime_graphs(model)
    y = graphs["g_a"](x)
    if name == "g_a":
        return (x,)
    if name == "h_a":
        return (y,)
    levels = model.levels()
    decoded = {"y": torch.round(y)}
    if "h_a" in graphs:
        decoded.update({n: torch.round(t) for n, t in zip(graphs["h_a"].names, graphs["h_a"](y))})
    features = {}
    for level in levels:
        if level.hyper is None:
            continue
        source = decoded[model.hyper_source(level.name)].double()
        if name == level.hyper:
            return (source,)
        features[level.hyper] = graphs[level.hyper](source)[0]
    return (decoded["y"], *[features[n] for n in model.synthesis_features])


def export_onnx(model: VariableRateCodec, out_dir: Path) -> dict[str, float]:
    """Export every graph; return the max |ONNX - PyTorch| per graph on fresh inputs of another size."""
    import onnxruntime as ort

    graphs = runtime_graphs(model)
    tolerance = {}
    for name, module in graphs.items():
        inputs = example_inputs(model, name)
        if name == "g_a":
            input_names, output_names = ["x"], ["y"]
        elif name == "h_a":
            input_names, output_names = ["y"], list(module.names)
        elif name == "g_s":
            input_names, output_names = ["y_hat", *model.synthesis_features], ["x_hat"]
        else:
            input_names, output_names = ["z_hat"], ["features", "mean", "scale_index"]
        dynamic = {n: {0: "batch", 2: "height", 3: "width"} for n in input_names + output_names}
        path = out_dir / f"{name}.onnx"
        torch.onnx.export(
            module, inputs, str(path), input_names=input_names, output_names=output_names,
            dynamic_axes=dynamic, opset_version=17, dynamo=False,
            # Initializers stay the parameters, one per name, even where two hold equal values (which
            # the exporter would merge); weights_as_constants then takes them out of the graph inputs.
            do_constant_folding=False, keep_initializers_as_inputs=True,
        )
        weights_as_constants(path)
        # Check at a different batch and size than traced, so dynamic axes are exercised too.
        check = example_inputs(model, name, size=192)
        feeds = {n: t[:1].numpy() for n, t in zip(input_names, check)}
        wide = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
        compact_initializers(path)
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
        assert all(np.array_equal(a, b) for a, b in zip(got, wide)), f"{name}: compact weights changed the outputs"
        with torch.no_grad():
            want = module(*[t[:1] for t in check])
        want = want if isinstance(want, tuple) else (want,)
        diffs = [float(np.max(np.abs(g.astype(np.float64) - w.double().numpy()))) for g, w in zip(got, want)]
        if name.startswith("h_s"):
            assert max(diffs) == 0.0, f"integer hyper-synthesis {name} is not bit-exact in onnxruntime: {diffs}"
        tolerance[name] = max(diffs)
    return tolerance


NARROWER = {np.dtype(np.float32): np.float16}


def weights_as_constants(path: Path) -> None:
    """Drop the weights from the graph inputs (where keep_initializers_as_inputs put them), so that
    onnxruntime treats them as constants and folds what depends on them alone."""
    import onnx

    model = onnx.load(str(path))
    weights = {initializer.name for initializer in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.save(model, str(path))


def compact_initializers(path: Path) -> None:
    """Store each weight that float16 holds exactly as float16, behind a Cast back to float32: the
    fp16-rounded weights take half the bytes in git, and run time sees the very same numbers."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    casts = []
    for initializer in model.graph.initializer:
        array = numpy_helper.to_array(initializer)
        narrow = NARROWER.get(array.dtype)
        if narrow is None or not np.array_equal(array.astype(narrow).astype(array.dtype), array):
            continue
        name, stored = initializer.name, f"{initializer.name}.stored"
        initializer.CopyFrom(numpy_helper.from_array(array.astype(narrow), stored))
        casts.append(helper.make_node("Cast", [stored], [name], to=helper.np_dtype_to_tensor_dtype(array.dtype)))
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_tables(model: VariableRateCodec, out_dir: Path) -> None:
    factorized = quantize_tables(model.entropy_bottleneck.pmf_tables())
    gaussian = quantize_tables(gaussian_pmf_tables())
    arrays = {f"factorized_{k}": v for k, v in factorized.items()} | {f"gaussian_{k}": v for k, v in gaussian.items()}
    # Tensors no graph holds; with the graphs' weights they make the package the whole model.
    arrays |= {k: v.detach().half().numpy() for k, v in model.state_dict().items() if k.startswith("entropy_bottleneck.")}
    arrays["log_gain"] = model.log_gain.detach().float().numpy()
    arrays["log_inverse_gain"] = model.log_inverse_gain.detach().float().numpy()
    arrays["precision"] = np.array(TABLE_PRECISION)
    np.savez_compressed(out_dir / "tables.npz", **arrays)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measure_kodak(model_id: str, folder: Path, qualities: list[float], zoo: Path) -> tuple[list[dict], dict[str, list]]:
    """Real bytes and 8-bit PSNR through the run time (onnxruntime): the mean per quality, and
    [quality, bpp, psnr] per image (tests check kodim01 against these)."""
    from models.data import image_files
    from service.codec import Codec, image_io
    from service.codec.image_io import psnr

    codec = Codec(zoo=zoo)
    files = image_files(folder)
    originals = {path.stem: path.read_bytes() for path in files}
    rows, per_image = [], {name: [] for name in originals}
    for q in qualities:
        bpp = dist = enc = dec = 0.0
        for name, data in originals.items():
            t = time.perf_counter()
            result = codec.compress(data, model=model_id, quality=q)
            enc += time.perf_counter() - t
            t = time.perf_counter()
            image = codec.decompress(result.data)
            dec += time.perf_counter() - t
            value = psnr(image_io.read_image(data, 1 << 30).rgb, np.asarray(image.convert("RGB")))
            per_image[name].append((q, round(result.bpp, 5), round(value, 3)))
            bpp, dist = bpp + result.bpp, dist + value
        n = len(files)
        rows.append({"quality": q, "bpp": round(bpp / n, 4), "psnr": round(dist / n, 3),
                     "encode_ms": round(1000 * enc / n), "decode_ms": round(1000 * dec / n)})
        print(f"  q{q:g}: {bpp / n:.4f} bpp  {dist / n:.2f} dB  enc {1000 * enc / n:.0f} ms  dec {1000 * dec / n:.0f} ms")
    return rows, per_image


def warm_start_facts(path: str | None) -> dict | None:
    """Steps and hours of the checkpoint a run warm-started from, so a manifest tells the total."""
    if not path:
        return None
    source_path = Path(path) if Path(path).is_absolute() else REPO / path  # runs start in the repo root
    if not source_path.exists():
        return {"checkpoint": path}
    _, source = load_checkpoint(source_path)
    return {"checkpoint": path, "steps": source.get("step"), "hours": round((source.get("elapsed") or 0) / 3600, 2)}


def export(checkpoint: str, model_id: str, zoo: Path, kodak: Path | None = None, version: str = "1") -> Path:
    model, state = load_checkpoint(checkpoint)
    with torch.no_grad():  # release exactly the fp16-rounded weights the package stores
        for tensor in model.state_dict().values():
            tensor.copy_(tensor.half().float())
    out_dir = zoo / model_id
    out_dir.mkdir(parents=True, exist_ok=True)
    tolerance = export_onnx(model, out_dir)
    write_tables(model, out_dir)
    files = {p.name: sha256(p) for p in sorted(out_dir.iterdir()) if p.suffix in (".onnx", ".npz")}
    args = state.get("args") or {}
    manifest = Manifest(
        id=model_id,
        version=version,
        package_format=PACKAGE_FORMAT,
        architecture=model.architecture,
        widths=model.widths,
        levels=model.levels(),
        synthesis_features=list(model.synthesis_features),
        qualities=Qualities(min=1, max=QUALITIES, lambdas=list(LAMBDAS), metric=args.get("metric", "mse")),
        training=Training(
            steps=state.get("step"),
            hours=round((state.get("elapsed") or 0) / 3600, 2),
            seconds=round(state.get("elapsed") or 0, 1),
            patch=args.get("patch"),
            batch=args.get("batch"),
            lr=args.get("lr"),
            data=training_data(args.get("data")),
            warm_start=warm_start_facts(args.get("init_from")),
        ),
        onnx=Onnx(opset=17, max_abs_diff_vs_pytorch=tolerance),
        files=files,
        fingerprint=fingerprint_of(files),
    )
    manifest.save(out_dir / "manifest.json")
    if kodak is not None:
        kodak_rows, per_image = measure_kodak(model_id, kodak, [float(q) for q in range(1, QUALITIES + 1)], zoo)
        manifest.model_copy(update={"kodak": kodak_rows, "kodak_images": per_image}).save(out_dir / "manifest.json")
    return out_dir


DATA = {  # training folders, in words for the manifest
    "gpu/train": "a lease's native-scale shard of shared/data/train and train-hires (models/shard.py)",
    "../shared/data/train": "shared/data/train (BSDS500, ImageNet sample, McMaster; 1,233 photos)",
}


def training_data(folder: str | None) -> str:
    """The training folder in words: a models/shard.py shard by the summary it wrote beside itself."""
    summary = Path(folder).parent / f"{Path(folder).name}.json" if folder else None
    if summary and summary.is_file():
        shard = json.loads(summary.read_text())
        return (f"a native-scale shard of shared/data/train and train-hires (models/shard.py, seed {shard['seed']}: "
                f"{shard['regions']} regions of {shard['region']} px from {shard['photos']} photos, {shard['bytes'] / 2**20:.0f} MiB)")
    return DATA.get(folder or "", folder or "not recorded")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="lic export", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="run's last.pt or a released checkpoint")
    p.add_argument("--id", required=True, help="model id, e.g. ms-128-192-r7")
    p.add_argument("--zoo", default=str(ZOO))
    p.add_argument("--kodak", help="folder to measure bpp/PSNR per quality on (e.g. ../shared/data/kodak)")
    p.add_argument("--version", default="1")
    a = p.parse_args(argv)
    out = export(a.checkpoint, a.id, Path(a.zoo), Path(a.kodak) if a.kodak else None, a.version)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
