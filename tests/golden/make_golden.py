"""Write the golden bitstreams of newly released model packages:

    .venv/bin/python tests/golden/make_golden.py

Each case is compressed with onnxruntime, decoded, and recorded: the .lic file, the decoded PNG and
the sha256 of every tile's decoded symbols. test_golden.py checks that they keep decoding the same.
Cases already in golden.json are never rewritten: a released bitstream is frozen. The cases name only
models in the zoo: when a release leaves it, its cases leave with it (git history keeps both), and a
case that covered a code path for it (the first four: tiling, grayscale, alpha) is made again with a
current model once its entry is deleted from golden.json. The writer writes format version 2 only; the
last genuine version-1 stream left with ms-64-96-r2, and test_bitstream.py reads version 1 from a
twin of a golden stream (checked byte for byte against that stream while it was here).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1]))

from service.codec import Codec, bitstream
from service.codec.image_io import write_image
from service.codec.zoo import available_models


def symbol_digest(codec: Codec, data: bytes) -> str:
    """sha256 over every tile's decoded symbols (all levels, int64, raster tile order)."""
    header = bitstream.parse(data)
    coder = codec.coder(header.model_id)
    digest = hashlib.sha256()
    for i in range(header.grid.count):
        shape = header.grid.coded_shape(i, coder.package.padding_multiple)
        latents = coder.decode_latents([bitstream.tile_payload(data, header, i)], shape)
        for level in coder.levels:
            digest.update(latents.symbols[level.name].astype(np.int64).tobytes())
    return digest.hexdigest()


# Every model in the zoo has a multi-tile case with independent tiles and one with tiles coded with context.
FIRST_MODEL = "ms-64-96-r3"  # the fast CPU model: four cases covering tiling, grayscale and alpha (made again at each of its releases)
LATER_MODELS = ["ms-64-96-r3", "c2f-64-96-r7", "ms-128-192-r7"]  # independent tiles (context 0, deblocked): one multi-tile case each
CONTEXT_MODELS = ["c2f-64-96-r7", "ms-128-192-r7", "ms-64-96-r3"]  # format version 2: tiles coded with 32 px of context (y; y and hyper features)


def cases() -> dict[str, tuple[Image.Image, dict]]:
    kodim = Image.open(HERE.parent / "data" / "kodim01.png").convert("RGB")
    crop = kodim.crop((200, 100, 520, 300))
    rgba = crop.resize((96, 60)).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(96, dtype=np.uint8) * 2, (60, 1))))
    first = {"model": FIRST_MODEL}
    return {
        "kodim01-crop-q1.5-tile128": (crop, {**first, "quality": 1.5, "tile": 128}),
        "kodim01-crop-q6": (crop, {**first, "quality": 6.0}),
        "gray-q3.25": (crop.convert("L").resize((150, 77)), {**first, "quality": 3.25}),
        "rgba-q8": (rgba, {**first, "quality": 8.0}),
        **{f"{m}-q3-tile64": (crop.crop((0, 0, 160, 100)), {"model": m, "quality": 3.0, "tile": 64}) for m in LATER_MODELS},
        **{f"{m}-q5-tile64-context32": (crop.crop((0, 0, 200, 150)), {"model": m, "quality": 5.0, "tile": 64, "context": 32})
           for m in CONTEXT_MODELS},
    }


def main() -> None:
    path = HERE / "golden.json"
    expected = json.loads(path.read_text()) if path.exists() else {}
    for name, (image, options) in cases().items():
        if name in expected or options["model"] not in available_models():
            continue
        codec = Codec(tile=options.get("tile", 512), context=options.get("context", 0))
        data = codec.compress(image, model=options["model"], quality=options["quality"]).data
        (HERE / f"{name}.lic").write_bytes(data)
        (HERE / f"{name}.png").write_bytes(write_image(codec.decompress(data), "png"))
        expected[name] = {"symbols_sha256": symbol_digest(codec, data), **codec.info(data)}
        print(f"wrote golden case {name}")
    path.write_text(json.dumps(expected, indent=2) + "\n")


if __name__ == "__main__":
    main()
