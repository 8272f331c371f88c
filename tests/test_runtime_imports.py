"""The run time is onnxruntime and the entropy coder: the library, the CLI and ``lic serve``'s start-up
never import torch (only ``lic train``/``lic export`` and ``lic bench``'s PyTorch-eager row do)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = """
import sys
from fastapi.testclient import TestClient

from service.app import create_app
from service.cli import main as lic
from service.codec import Codec
from service.core.config import Settings
from service.engine import worker  # what every worker process runs
import service.server  # lic serve

png = "tests/data/kodim01.png"
codec = Codec()
result = codec.compress(open(png, "rb").read(), quality=2, tile=256)
codec.decompress(result.data, region=(0, 0, 64, 64))
assert lic(["info", "/dev/null"]) == 1  # a refused input, through the CLI's error path
lic(["models"])
with TestClient(create_app(Settings(warmup_batches=[1], tile=256))) as client:
    assert client.get("/readyz").status_code == 200
    assert client.post("/compress?quality=1", content=open(png, "rb").read(), headers={"content-type": "image/png"}).status_code == 200
leaked = sorted(name for name in sys.modules if name == "torch" or name.startswith(("torch.", "models")))
print("LEAKED", leaked)
"""


def test_the_run_time_never_imports_torch():
    proc = subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LEAKED []" in proc.stdout, proc.stdout[-2000:]
