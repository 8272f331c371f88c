"""Re-measure the Kodak results of installed model packages after a change to the codec around them
(tiling, context); weights, graphs and fingerprints stay as released, so old bitstreams still decode.

    .venv/bin/python -m models.remeasure ../shared/data/kodak [MODEL_ID ...]   # default: every package
"""
from __future__ import annotations

import argparse
from pathlib import Path

from models.architectures import QUALITIES
from models.export import measure_kodak
from service.codec.manifest import Manifest
from service.codec.zoo import ZOO_DIR, available_models


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kodak", help="folder of Kodak images")
    p.add_argument("models", nargs="*", help="model ids (default: every installed package)")
    p.add_argument("--zoo", default=str(ZOO_DIR))
    a = p.parse_args(argv)
    zoo = Path(a.zoo)
    for model_id in a.models or available_models(zoo):
        print(model_id)
        path = zoo / model_id / "manifest.json"
        rows, per_image = measure_kodak(model_id, Path(a.kodak), [float(q) for q in range(1, QUALITIES + 1)], zoo)
        Manifest.load(path).model_copy(update={"kodak": rows, "kodak_images": per_image}).save(path)


if __name__ == "__main__":
    main()
