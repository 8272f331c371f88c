"""A wheel built from the repository carries the shipped zoo and the page: installed into a fresh virtual
environment (its dependencies lent from this one, the repository nowhere on the path), `lic models` run
from another folder lists the three models, their files match their manifests, and LIC_MODEL_DIR still
overrides. The wheel is built from a copy of the files git knows (tracked, or untracked and not ignored),
so a stale build/ folder or local junk cannot leak into it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.service_harness import REPO

MODELS = ("c2f-64-96-r7", "ms-128-192-r7", "ms-64-96-r3")


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], check=False, capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{args}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                 "pyproject.toml", "README.md", "service", "models", cwd=REPO).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():  # not deleted in the work tree
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--quiet", "-w", out, cwd=source)
    (built,) = out.glob("lic-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; the other dependencies come from this one through a .pth line
    (a plain path: the editable install's own .pth hook is not run, so the repository stays off the path)."""
    root = tmp_path_factory.mktemp("venv") / "v"
    run(sys.executable, "-m", "venv", "--without-pip", root)
    here = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": here}
    run(root / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-installed", "--no-index",
        "--no-compile", "--disable-pip-version-check", wheel, env=env)
    site = Path(run(root / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "zz_lent_dependencies.pth").write_text(here + "\n")
    return root


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("LIC_")}
    return {**env, **extra}


def test_the_wheel_holds_the_zoo_and_the_page_but_no_checkpoints(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for model in MODELS:
        assert f"models/zoo/{model}/manifest.json" in names and f"models/zoo/{model}/g_s.onnx" in names
    assert "service/api/static/index.html" in names
    assert not [n for n in names if "checkpoints" in n or n.endswith(".pt")]
    assert wheel.stat().st_size < 40 << 20


def test_installed_wheel_lists_and_verifies_its_models(venv, tmp_path):
    where = run(venv / "bin" / "python", "-c", "import service, models; print(service.__file__); print(models.__file__)",
                cwd=tmp_path, env=clean_env()).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where  # the wheel's, not the repository's
    printed = run(venv / "bin" / "lic", "models", "--verify", cwd=tmp_path, env=clean_env()).stdout
    first = printed.splitlines()[0]
    assert first.startswith(f"models in {venv}") and "site-packages/models/zoo" in first and first.endswith(": 3"), first
    for model in MODELS:
        assert f"\n{model}" in printed
    assert "ms-128-192-r7 (default)" in printed

    empty = tmp_path / "empty"
    empty.mkdir()
    printed = run(venv / "bin" / "lic", "models", cwd=tmp_path, env=clean_env(LIC_MODEL_DIR=str(empty))).stdout
    assert printed.strip() == f"models in {empty} (LIC_MODEL_DIR): none"


def test_installed_wheel_serves_the_page_and_docs(venv, tmp_path):
    program = ("from fastapi.testclient import TestClient\n"
               "from service.app import create_app\n"
               "client = TestClient(create_app())\n"  # no lifespan: no workers, just the routes
               "print(client.get('/').status_code, client.get('/docs').status_code, "
               "client.get('/assets/swagger-ui/swagger-ui-bundle.js').status_code, client.get('/redoc').status_code, "
               "client.get('/assets/redoc/redoc.standalone.js').status_code)\n")
    assert run(venv / "bin" / "python", "-c", program, cwd=tmp_path, env=clean_env()).stdout.split() == ["200"] * 5
