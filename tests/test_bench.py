"""``lic bench``: real codecs on real images, metrics that agree with the training loss, caching that
recomputes only what changed, and the files a reader gets (JSON, CSV, markdown, plot)."""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.bench import report, runner
from service.bench.codecs import classical_codecs
from service.codec.quality import ms_ssim
from service.bench.suite import benchmark
from service.codec.zoo import DEFAULT_MODEL

from .conftest import KODIM01


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    """Two Kodak crops of different shapes (large enough for five MS-SSIM scales)."""
    folder = tmp_path_factory.mktemp("images")
    image = Image.open(KODIM01).convert("RGB")
    image.crop((0, 0, 256, 192)).save(folder / "a.png")
    image.crop((300, 200, 492, 448)).save(folder / "b.png")
    return folder


def test_ms_ssim_agrees_with_the_training_metric(kodim01_rgb):
    torch = pytest.importorskip("torch")
    from models.ms_ssim import ms_ssim as torch_ms_ssim

    rng = np.random.default_rng(0)
    reference = kodim01_rgb[:256, :320]
    noisy = np.clip(reference + rng.normal(0, 12, reference.shape), 0, 255).astype(np.uint8)

    def as_tensor(a):
        return torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255

    expected = float(torch_ms_ssim(as_tensor(reference), as_tensor(noisy)))
    assert ms_ssim(reference, noisy) == pytest.approx(expected, abs=1e-5)
    assert 0.8 < ms_ssim(reference, noisy) < 0.99
    assert ms_ssim(reference, reference) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ms_ssim(reference, noisy[:-1])


def test_cache_recomputes_only_what_changed(tmp_path, crops):
    images = runner.load_images(crops)
    jpeg = classical_codecs()["JPEG 4:2:0"]
    jpeg = dataclasses.replace(jpeg, settings=[30, 70])
    cache = tmp_path / "cache"
    first = runner.run([jpeg], images, cache, progress=False)
    lines = runner.cache_path(cache, jpeg).read_text().splitlines()
    assert len(first) == len(lines) == 4

    again = runner.run([jpeg], images, cache, progress=False)
    assert again == first and runner.cache_path(cache, jpeg).read_text().splitlines() == lines

    more = runner.run([dataclasses.replace(jpeg, settings=[30, 70, 90])], images, cache, progress=False)
    assert len(more) == 6 and len(runner.cache_path(cache, jpeg).read_text().splitlines()) == 6

    upgraded = dataclasses.replace(jpeg, version=jpeg.version + " (new build)")
    runner.run([upgraded], images, cache, progress=False)  # a new library version is measured again
    rows = [json.loads(line) for line in runner.cache_path(cache, jpeg).read_text().splitlines()]
    assert len(rows) == 4 and {r["version"] for r in rows} == {upgraded.version}


def test_committed_rows_count_as_cached(tmp_path, crops):
    """A fresh checkout has no cache, but the committed rows.csv holds every measured row: only rows
    of another codec version are measured again."""
    images = runner.load_images(crops)
    jpeg = dataclasses.replace(classical_codecs()["JPEG 4:2:0"], settings=[30, 70])
    first = runner.run([jpeg], images, tmp_path / "cache", progress=False)
    report.write_csv(first, tmp_path / "rows.csv")

    def never(*args):
        raise AssertionError("a committed row was measured again")

    offline = dataclasses.replace(jpeg, encode=never)
    again = runner.run([offline], images, tmp_path / "fresh-cache", progress=False, committed=tmp_path / "rows.csv")
    assert again == first
    upgraded = dataclasses.replace(jpeg, version=jpeg.version + " (new build)")
    assert len(runner.run([upgraded], images, tmp_path / "fresh-cache", progress=False, committed=tmp_path / "rows.csv")) == 4


def test_rows_of_models_that_left_the_zoo_stay_in_the_report(tmp_path, crops):
    """A committed rows.csv with a retired model (measured in full on these images) and one measured on
    other images only: the report keeps the first as measured and leaves out the second."""
    images = runner.load_images(crops)
    jpeg = dataclasses.replace(classical_codecs()["JPEG 4:2:0"], settings=[30, 50, 70, 90])  # 4 points: a cubic fit
    measured = runner.run([jpeg], images, tmp_path / "cache", progress=False)
    retired = [{**row, "codec": "ms-0-0-r1", "version": "gone"} for row in measured]
    partial = [{**row, "codec": "ms-0-0-r2", "version": "gone"} for row in measured if row["image"] == "a.png"]
    out = tmp_path / "out"
    out.mkdir()
    report.write_csv(measured + retired + partial, out / "rows.csv")

    results = benchmark(crops, out, tmp_path / "cache", codec_names=["JPEG 4:2:0"], speed_images=0, progress=False)
    assert set(results["curves"]) == {"JPEG 4:2:0", "ms-0-0-r1"}
    assert results["curves"]["ms-0-0-r1"] == report.mean_curves(retired)["ms-0-0-r1"]
    assert "**ms-0-0-r1**" in (out / "report.md").read_text()
    with (out / "rows.csv").open() as f:
        assert sum(row["codec"] == "ms-0-0-r1" for row in csv.DictReader(f)) == len(retired)


def test_a_codec_that_decodes_the_wrong_size_is_refused(crops):
    image = runner.load_images(crops)[0]
    jpeg = classical_codecs()["JPEG 4:2:0"]
    broken = dataclasses.replace(jpeg, decode=lambda data: jpeg.decode(data)[:-1])
    with pytest.raises(RuntimeError, match="decoded"):
        runner.measure(broken, image, 50)


def test_benchmark_measures_learned_and_classical_codecs(tmp_path, crops):
    names = ["JPEG 4:2:0", "WebP", "AVIF", DEFAULT_MODEL]
    results = benchmark(crops, tmp_path / "out", tmp_path / "cache", codec_names=names,
                        anchors=Path(__file__).resolve().parents[1] / "benchmarks" / "anchors",
                        speed_images=1, repeats=1, progress=False)
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"results.json", "rows.csv", "report.md", "rd.png"}
    assert json.loads((out / "results.json").read_text())["bd"] == json.loads(json.dumps(results["bd"]))

    with (out / "rows.csv").open() as f:
        rows = list(csv.DictReader(f))
    settings = {name: len(classical_codecs()[name].settings) for name in names[:3]} | {DEFAULT_MODEL: 8}
    assert len(rows) == 2 * sum(settings.values())
    for row in rows:
        pixels = int(row["width"]) * int(row["height"])
        assert float(row["bpp"]) == pytest.approx(int(row["bytes"]) * 8 / pixels)
        assert 15 < float(row["psnr"]) < 60 and 0.5 < float(row["ms_ssim"]) <= 1

    curves = results["curves"]
    for name in names:  # higher settings spend more bits and buy quality
        by_setting = sorted(curves[name], key=lambda p: p["setting"])
        assert all(a["bpp"] < b["bpp"] for a, b in itertools.pairwise(by_setting))
        assert by_setting[-1]["psnr"] > by_setting[0]["psnr"] + 3
    bd = results["bd"]
    assert bd["AVIF"]["JPEG 4:2:0"]["bd_rate_pchip"] < -20  # the modern codec wins, as everywhere
    assert bd["JPEG 4:2:0"]["AVIF"]["bd_rate_pchip"] > 20
    assert set(bd[DEFAULT_MODEL]) == {"JPEG 4:2:0", "WebP", "AVIF"}
    assert "VTM" in results["references"] and "VTM" in bd

    speed = {r["codec"]: r for r in results["speed"]["rows"]}
    assert set(speed) >= set(names)
    if f"{DEFAULT_MODEL} (PyTorch eager)" in speed:  # same bits from both backends
        assert speed[f"{DEFAULT_MODEL} (PyTorch eager)"]["bpp"] == pytest.approx(speed[DEFAULT_MODEL]["bpp"])
    assert all(r["encode_ms"] > 0 and r["decode_mp_s"] > 0 for r in speed.values())
    report = (out / "report.md").read_text()
    assert f"**{DEFAULT_MODEL}**" in report and "VTM (published)" in report and "## Speed" in report
    per_image = results["bd_per_image"]
    assert per_image["codec"] == DEFAULT_MODEL and {e["image"] for e in per_image["worst_first"]} == {"a.png", "b.png"}
    assert "## Per image" in report and "| a.png | 0.05 |" in report


def test_per_image_bd_rates_worst_first():
    """Synthetic curves with known answers: at equal PSNR the model spends 1.2x AVIF's bits on image a
    and 0.9x on b, WebP 1.5x on both; image c's curves do not overlap."""
    psnr = np.array([30.0, 33.0, 36.0, 39.0])
    avif = np.array([0.2, 0.4, 0.8, 1.6])

    def curve(codec, image, bpp, dist=psnr, side=1000):
        return [{"codec": codec, "image": image, "width": side, "height": side // 4 if image == "b" else side, "bpp": float(r),
                 "psnr": float(d)} for r, d in zip(bpp, dist)]

    rows = (curve("AVIF", "a", avif) + curve("WebP", "a", 1.5 * avif) + curve("model", "a", 1.2 * avif)
            + curve("AVIF", "b", avif) + curve("WebP", "b", 1.5 * avif) + curve("model", "b", 0.9 * avif)
            + curve("AVIF", "c", avif) + curve("WebP", "c", avif) + curve("model", "c", avif, psnr + 20))
    table = report.per_image_bd(list(reversed(rows)), "model")
    assert [e["image"] for e in table] == ["a", "b", "c"]
    assert [e["megapixels"] for e in table] == [1.0, 0.25, 1.0]
    assert table[0]["bd_rate_pchip"] == pytest.approx({"AVIF": 20.0, "WebP": -20.0})
    assert table[1]["bd_rate_pchip"] == pytest.approx({"AVIF": -10.0, "WebP": -40.0})
    assert all(np.isnan(v) for v in table[2]["bd_rate_pchip"].values())
    assert list(table[0]["bd_rate_pchip"]) == ["AVIF", "WebP"]
    text = report.per_image_markdown("model", table)
    assert "| a | 1.00 | +20.0% | -20.0% |" in text and "| c | 1.00 | – | – |" in text
    assert text.index("| a |") < text.index("| b |") < text.index("| c |")
    assert "vs AVIF: better on 1 of 2 images" in text
    assert [e["bd_rate_pchip"] for e in report.per_image_bd(rows, "model", ("WebP", "JPEG XL"))][:2] == [
        pytest.approx({"WebP": -20.0}), pytest.approx({"WebP": -40.0})]  # sorted by WebP; absent anchors left out


def test_lic_bench_command(tmp_path, crops):
    lic = [sys.executable, "-m", "service.cli", "bench"]
    done = subprocess.run(lic + [str(crops), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"),
                                 "--codecs", "JPEG 4:2:0,JPEG 4:4:4", "--speed-images", "0", "--quiet"],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| JPEG 4:4:4 |" in done.stdout and "(published)" not in done.stdout  # no Kodak anchors on other images
    unknown = subprocess.run(lic + [str(crops), "--codecs", "GIF"], check=False, capture_output=True, text=True, timeout=120)
    assert unknown.returncode != 0 and "unknown codecs ['GIF']" in unknown.stderr
    missing = subprocess.run(lic + [str(tmp_path / "nowhere")], check=False, capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "not a folder" in missing.stderr
