"""``lic``: compress, decompress, inspect; list models; train and export (torch extra).

Exit status: 0 success, 1 the input was refused (bad image, corrupted bitstream, limit), 2 usage error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial
from pathlib import Path

from tqdm import tqdm

from service.codec import Codec, CodecError, image_io
from service.codec.backend import OnnxBackend
from service.codec.limits import (AUTO_REFINE, DEFAULT_CONTEXT, DEFAULT_QUALITY, DEFAULT_TILE, QUALITY_MAX, QUALITY_MIN,
                                  check_quality, check_refine)
from service.codec.zoo import DEFAULT_MODEL, available_models, load_model
from service.core.config import Settings


def _codec(**options) -> Codec:
    """The library's codec with the configured model folder, memory bound and transforms (LIC_MODEL_DIR,
    LIC_MAX_DECODE_BYTES, LIC_TRANSFORMS)."""
    settings = Settings()
    return Codec(backend_factory=partial(OnnxBackend, transforms=settings.transforms), zoo=settings.model_dir,
                 max_decode_bytes=settings.max_decode_bytes, **options)


def _region(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("region must be x,y,w,h (integers)") from None
    return x, y, w, h


def _quality(text: str) -> float:
    try:
        return check_quality(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _refine(text: str) -> int | str:
    try:
        return check_refine(text if text == AUTO_REFINE else int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> float:
    v = float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return v


def _progress(total: int | None, what: str):
    bar = tqdm(total=total, unit="tile", desc=what, disable=None, leave=False)
    return bar, bar.update


def cmd_compress(args: argparse.Namespace) -> None:
    codec = _codec(tile=args.tile, context=args.context)
    planes = image_io.read_image(Path(args.input).read_bytes(), codec.max_pixels, args.frame, args.keep_icc)
    bar, update = _progress(None, "analysing")
    result = codec.compress(planes, model=args.model, quality=args.quality, target_bpp=args.target_bpp,
                            target_psnr=args.target_psnr, refine=args.refine, progress=update)
    bar.close()
    Path(args.output).write_bytes(result.data)
    psnr = f" {result.psnr:.2f} dB" if result.psnr is not None else ""
    print(f"{args.output}: {len(result.data)} bytes, {result.bpp:.4f} bpp, model {result.model} quality {result.quality:g}{psnr}, "
          f"{result.width}x{result.height} in {result.tiles} tiles, {1000 * result.timings['total']:.0f} ms")


def cmd_decompress(args: argparse.Namespace) -> None:
    fmt = image_io.output_format(args.format or Path(args.output).suffix or "png")
    data = Path(args.input).read_bytes()
    codec = _codec()
    header = codec.info(data)
    bar, update = _progress(header["tiles"], "decoding")
    image = codec.decompress(data, region=args.region, progress=update)
    bar.close()
    Path(args.output).write_bytes(image_io.write_image(image, fmt))
    print(f"{args.output}: {image.width}x{image.height} {image.mode} ({fmt})")


def cmd_roundtrip(args: argparse.Namespace) -> None:
    """Compress and decompress in memory; print size, bpp, PSNR and timings per quality."""
    import time

    import numpy as np

    from service.codec.image_io import psnr

    codec = _codec(tile=args.tile, context=args.context)
    data = Path(args.input).read_bytes()
    reference = image_io.read_image(data, codec.max_pixels).rgb
    print(f"{args.input} with {args.model}:")
    for q in args.quality:
        result = codec.compress(data, model=args.model, quality=q)
        t = time.perf_counter()
        image = codec.decompress(result.data)
        decode_ms = 1000 * (time.perf_counter() - t)
        quality = psnr(reference, np.asarray(image.convert("RGB")))
        print(f"  quality {q:g}: {len(result.data):8d} bytes  {result.bpp:.4f} bpp  {quality:.2f} dB  "
              f"encode {1000 * result.timings['total']:.0f} ms  decode {decode_ms:.0f} ms")


def cmd_info(args: argparse.Namespace) -> None:
    print(json.dumps(_codec().info(Path(args.file).read_bytes()), indent=2))


def cmd_models(args: argparse.Namespace) -> None:
    settings = Settings()
    zoo, found = settings.model_dir, available_models(settings.model_dir)
    # Where they are looked up: LIC_MODEL_DIR, else the zoo beside the package (the repository's, or the wheel's).
    print(f"models in {zoo} ({'LIC_MODEL_DIR' if 'LIC_MODEL_DIR' in os.environ else 'the shipped zoo; LIC_MODEL_DIR overrides'}): "
          f"{len(found) or 'none'}")
    for model_id in found:
        package = load_model(model_id, zoo)
        if args.verify:
            package.verify()
        m = package.manifest
        widths = ",".join(f"{k}={v}" for k, v in m.widths.items())
        print(f"{model_id}{' (default)' if model_id == settings.default_model else ''}: {m.architecture} [{widths}] "
              f"qualities {m.qualities.min}..{m.qualities.max}, {m.training.steps} steps"
              + (f" after {steps} warm-start steps" if (steps := (m.training.warm_start or {}).get("steps")) else "")
              + (f"; int8 twins ({m.int8.weight_bits}-bit weights, LIC_TRANSFORMS=int8-encoder or int8)" if m.int8 else ""))
        for row in m.kodak:
            print(f"    q{row.quality:g}: Kodak {row.bpp:.3f} bpp, {row.psnr:.2f} dB")


def _torch_command(module: str, argv: list[str]) -> None:
    try:
        target = __import__(f"models.{module}", fromlist=["main"])
    except ImportError as exc:
        raise SystemExit(f"lic {module}: needs the training extra (pip install -e '.[train]'): {exc}")
    target.main(argv)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lic", description="Learned image compression.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compress", help="image -> .lic")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--model", default=DEFAULT_MODEL)
    rate = c.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=_quality, help=f"{QUALITY_MIN:g}..{QUALITY_MAX:g}, fractional allowed (default {DEFAULT_QUALITY:g})")
    rate.add_argument("--target-bpp", type=_positive, help="find the quality giving this many bits per pixel")
    rate.add_argument("--target-psnr", type=_positive, help="find the lowest quality reaching this PSNR (dB)")
    c.add_argument("--tile", type=int, default=DEFAULT_TILE, help=f"tile size in pixels, a multiple of 64 (default {DEFAULT_TILE})")
    c.add_argument("--context", type=int, default=DEFAULT_CONTEXT,
                   help=f"pixels of each neighbouring tile the transforms see; 0 = independent tiles (default {DEFAULT_CONTEXT})")
    c.add_argument("--keep-icc", action="store_true",
                   help="keep an RGB image's colour profile (coded in its own numbers, reattached on decode) instead of converting to sRGB")
    c.add_argument("--frame", type=int, metavar="K", help="code frame K (from 0) of an animated image, which is refused otherwise")
    c.add_argument("--refine", type=_refine, default=0, metavar="STEPS",
                   help="encoder-side refinement: fewer bits for the same quality, slower encode (e.g. 20; 'auto': what a "
                        "bounded budget allows at the image's size; default 0)")
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help=".lic -> PNG, WebP or JPEG (by extension)")
    d.add_argument("input")
    d.add_argument("output")
    d.add_argument("--region", type=_region, help="x,y,w,h: decode only the tiles this region needs")
    d.add_argument("--format", choices=["png", "webp", "jpeg"], help="override the output extension")
    d.set_defaults(func=cmd_decompress)

    i = sub.add_parser("info", help="print a .lic file's header")
    i.add_argument("file")
    i.set_defaults(func=cmd_info)

    r = sub.add_parser("roundtrip", help="compress + decompress in memory, print bpp and PSNR")
    r.add_argument("input")
    r.add_argument("--model", default=DEFAULT_MODEL)
    r.add_argument("--quality", type=_quality, nargs="+", default=[QUALITY_MIN, DEFAULT_QUALITY, QUALITY_MAX])
    r.add_argument("--tile", type=int, default=DEFAULT_TILE)
    r.add_argument("--context", type=int, default=DEFAULT_CONTEXT)
    r.set_defaults(func=cmd_roundtrip)

    m = sub.add_parser("models", help="list shipped models, qualities and their Kodak results")
    m.add_argument("--verify", action="store_true", help="check every file against its manifest sha256")
    m.set_defaults(func=cmd_models)

    for name, text in PASSTHROUGH.items():  # listed for --help; main() hands their arguments over whole
        sub.add_parser(name, help=text, add_help=False)
    return p


TORCH_COMMANDS = {"train": "train a model (torch extra; lic train --help)", "export": "export a checkpoint to a model package (torch extra)"}
PASSTHROUGH = {
    "serve": "run the HTTP service (lic serve --help)",
    "bench": "rate-distortion and speed benchmark against JPEG, WebP, AVIF, JPEG XL, JPEG 2000 (bench extra)",
    **TORCH_COMMANDS,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve":
        from service.server import main as serve

        serve(argv[1:])
        return 0
    if argv and argv[0] == "bench":
        try:
            from service.bench.suite import main as bench
        except ImportError as exc:
            raise SystemExit(f"lic bench: needs the bench extra (pip install -e '.[bench]'): {exc}")
        bench(argv[1:])
        return 0
    if argv and argv[0] in TORCH_COMMANDS:
        _torch_command(argv[0], argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CodecError as exc:
        print(f"lic: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"lic: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lic: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except MemoryError:
        print("lic: error: out of memory (a smaller tile, or a region, needs less)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
