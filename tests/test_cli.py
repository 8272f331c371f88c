"""The ``lic`` command as users run it: real files, exit codes and messages."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from service.codec.image_io import psnr
from service.codec.zoo import DEFAULT_MODEL
from tests.conftest import KODIM01

LIC = [sys.executable, "-m", "service.cli"]


def lic(*args, check=True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([*LIC, *map(str, args)], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_compress_decompress_info(tmp_path):
    out = tmp_path / "k.lic"
    printed = lic("compress", KODIM01, out, "--quality", "3").stdout
    size = out.stat().st_size
    assert f"{size} bytes" in printed and f"{size * 8 / (768 * 512):.4f} bpp" in printed
    info = json.loads(lic("info", out).stdout)
    assert info["width"] == 768 and info["height"] == 512 and info["quality"] == 3.0 and info["bytes"] == size
    for ext in ("png", "webp", "jpg"):
        lic("decompress", out, tmp_path / f"k.{ext}")
        assert Image.open(tmp_path / f"k.{ext}").size == (768, 512)


def test_lic_transforms_int8_runs_the_int8_twins(tmp_path):
    """LIC_TRANSFORMS=int8 decodes through the int8 synthesis (other pixels, close quality); int8-encoder
    encodes through the int8 analysis (other bytes) and decodes exactly as fp32 does."""
    fp32 = tmp_path / "fp32.lic"
    lic("compress", KODIM01, fp32, "--quality", "4")
    lic("compress", KODIM01, tmp_path / "int8.lic", "--quality", "4", env={"LIC_TRANSFORMS": "int8-encoder"})
    assert (tmp_path / "int8.lic").read_bytes() != fp32.read_bytes()
    outputs = ("fp32", "int8-encoder", "int8")
    for transforms in outputs:
        lic("decompress", fp32, tmp_path / f"{transforms}.png", env={"LIC_TRANSFORMS": transforms})
    original, plain, encoder_only, int8 = (np.asarray(Image.open(p).convert("RGB"))
                                           for p in (KODIM01, *(tmp_path / f"{t}.png" for t in outputs)))
    assert np.array_equal(plain, encoder_only) and not np.array_equal(plain, int8)
    assert psnr(original, int8) > psnr(original, plain) - 1.0


def test_region(tmp_path):
    out = tmp_path / "k.lic"
    lic("compress", KODIM01, out, "--quality", "2")
    lic("decompress", out, tmp_path / "full.png")
    lic("decompress", out, tmp_path / "part.png", "--region", "500,300,100,50")
    full = np.asarray(Image.open(tmp_path / "full.png"))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "part.png")), full[300:350, 500:600])


def test_target_bpp(tmp_path):
    out = tmp_path / "k.lic"
    lic("compress", KODIM01, out, "--target-bpp", "0.5")
    assert out.stat().st_size * 8 / (768 * 512) == pytest.approx(0.5, rel=0.03)


def test_corrupted_file_is_refused(tmp_path):
    out = tmp_path / "k.lic"
    lic("compress", KODIM01, out, "--quality", "3")
    data = bytearray(out.read_bytes())
    data[200] ^= 0xFF
    out.write_bytes(bytes(data))
    proc = lic("decompress", out, tmp_path / "x.png", check=False)
    assert proc.returncode == 1 and "corrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["compress", KODIM01, "x.lic", "--quality", "9"], 2, "quality must be in"),
        (["compress", KODIM01, "x.lic", "--quality", "2", "--target-bpp", "1"], 2, "not allowed with"),
        (["compress", KODIM01, "x.lic", "--model", "nope"], 1, "unknown model"),
        (["compress", "missing.png", "x.lic"], 1, "No such file"),
        (["compress", __file__, "x.lic"], 1, "cannot read image"),
        (["decompress", __file__, "x.png"], 1, "not a .lic"),
        (["decompress", KODIM01, "x.bmp"], 1, "unsupported output format"),
        (["decompress", KODIM01, "x.png", "--region", "1,2"], 2, "region must be"),
    ],
)
def test_usage_errors(tmp_path, args, code, message):
    proc = subprocess.run([*LIC, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_models_lists_the_shipped_model():
    printed = lic("models", "--verify").stdout
    assert f"{DEFAULT_MODEL} (default)" in printed and "mean-scale" in printed


def test_decode_memory_bound_refuses_in_one_line(tmp_path):
    """A bitstream whose tiles would need more transform memory than LIC_MAX_DECODE_BYTES is refused
    before decoding (here a 1 MiB bound against 576 px windows), with exit 1 and no traceback."""
    out = tmp_path / "k.lic"
    lic("compress", KODIM01, out, "--quality", "2")
    proc = subprocess.run([*LIC, "decompress", str(out), str(tmp_path / "x.png")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "LIC_MAX_DECODE_BYTES": str(1 << 20)})
    assert proc.returncode == 1 and "over the limit" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()


def test_animated_input_needs_a_frame(tmp_path):
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("red", "green", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    proc = lic("compress", tmp_path / "a.gif", tmp_path / "a.lic", check=False)
    assert proc.returncode == 1 and "animated image with 3 frames" in proc.stderr and "Traceback" not in proc.stderr
    lic("compress", tmp_path / "a.gif", tmp_path / "a.lic", "--frame", "1", "--quality", "6")
    lic("decompress", tmp_path / "a.lic", tmp_path / "a.png")
    r, g, b = np.asarray(Image.open(tmp_path / "a.png").convert("RGB")).reshape(-1, 3).mean(axis=0)
    assert g > 100 and r < 40 and b < 40  # frame 1 is the green one
