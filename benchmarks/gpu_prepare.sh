#!/usr/bin/env bash
# On the CPU machine, before the lease call that runs benchmarks/gpu_service.sh (carry ["gpu/wheels", "gpu/kodak"]):
#   gpu/wheels  the service's run-time packages that the device image lacks, for its Python 3.12, at
#               deploy/requirements.lock's versions (the image has numpy, onnx, onnxruntime 1.30 (CPU),
#               torch, httpx, anyio, h11, click, prometheus-client, matplotlib, psutil: KINDS.md's list)
#   gpu/kodak   the 24 Kodak photos as JPEG q95 4:4:4 (the sweep re-encodes them as PNG before it starts)
# and checks that every wheel's requirements are met there and that the tree plus gpu/ fits the 64 MiB carry.
#   bash benchmarks/gpu_prepare.sh [KODAK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
kodak=${1:-../shared/data/kodak}
PACKAGES="fastapi starlette pydantic pydantic-core pydantic-settings annotated-types typing-inspection python-dotenv
uvicorn python-multipart redis constriction fastapi-standalone-docs pillow typing-extensions opentelemetry-api"
rm -rf gpu/wheels gpu/kodak
mkdir -p gpu/wheels gpu/kodak
for name in $PACKAGES; do
  pin=$(grep -i "^$name==" deploy/requirements.lock | cut -d' ' -f1)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d gpu/wheels "${pin:?$name is not in deploy/requirements.lock}"
done
.venv/bin/python - "$kodak" <<'EOF'
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from PIL import Image

# What the device image holds (KINDS.md, 2026-11-17), of what these wheels may ask for.
DEVICE = {"numpy", "onnx", "onnxruntime", "torch", "httpx", "anyio", "h11", "click", "idna", "prometheus-client",
          "typing-extensions", "packaging", "protobuf", "matplotlib", "psutil", "uvloop", "pyyaml", "jinja2", "tqdm",
          "annotated-doc", "zipp"}
wheels = sorted(Path("gpu/wheels").glob("*.whl"))
have = {canonicalize_name(w.name.split("-")[0]) for w in wheels} | DEVICE
env = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3", "extra": ""}
missing = set()
for wheel in wheels:
    with zipfile.ZipFile(wheel) as z:
        meta = Parser().parsestr(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode())
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if (req.marker is None or req.marker.evaluate(env)) and canonicalize_name(req.name) not in have:
            missing.add(f"{req.name} (for {wheel.name})")
if missing:
    sys.exit("not on the device and not carried: " + ", ".join(sorted(missing)))
for path in sorted(Path(sys.argv[1]).glob("kodim*.png")):
    Image.open(path).convert("RGB").save(Path("gpu/kodak") / (path.stem + ".jpg"), quality=95, subsampling=0)
print(f"{len(wheels)} wheels, {len(list(Path('gpu/kodak').glob('*.jpg')))} Kodak JPEGs")
EOF
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
extra=$(du -scb gpu/wheels gpu/kodak | tail -1 | cut -f1)
total=$(( (tree + extra) / 1048576 ))
echo "working tree $((tree / 1048576)) MiB + gpu/wheels and gpu/kodak $((extra / 1048576)) MiB = $total MiB of the 64 MiB carry"
[ "$total" -lt 63 ] || { echo "too large to carry: are models stashed in the tree, or untracked files in it?" >&2; exit 1; }
