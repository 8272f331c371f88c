"""``models.shard`` draws a lease's training regions: native scale where the source is clean, within its budget, fresh per seed."""
from pathlib import Path

import pytest
from PIL import Image

from models.shard import jpeg_quality, needs_downscale, pack

PHOTO = Path(__file__).parent / "data" / "kodim01.png"


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    clean, coded = tmp_path / "clean", tmp_path / "coded"
    clean.mkdir(), coded.mkdir()
    with Image.open(PHOTO) as im:
        im.save(clean / "png.png")
        im.save(clean / "q95-444.jpg", quality=95, subsampling=0)
        im.save(coded / "q80-420.jpg", quality=80, subsampling=2)
    return [clean, coded]


def test_jpeg_quality_and_which_sources_are_downscaled(sources):
    clean, coded = sources
    with Image.open(clean / "q95-444.jpg") as im:
        assert jpeg_quality(im) == pytest.approx(95, abs=1) and not needs_downscale(im)
    with Image.open(coded / "q80-420.jpg") as im:
        assert jpeg_quality(im) == pytest.approx(80, abs=1) and needs_downscale(im)
    with Image.open(clean / "png.png") as im:
        assert not needs_downscale(im)


def test_pack_fills_the_budget_with_native_regions(sources, tmp_path):
    budget = 1_500_000
    summary = pack(sources, tmp_path / "shard", seed=1, budget=budget, region=256, patch=128)
    files = sorted((tmp_path / "shard").iterdir())
    assert sum(f.stat().st_size for f in files) == summary["bytes"] <= budget
    assert summary["regions"] == len(files) > budget // 100_000  # at least a few dozen regions
    assert summary["photos"] == 3  # area weighting: three photos of equal size, each drawn
    for f in files:
        with Image.open(f) as im:
            assert im.format == "JPEG" and jpeg_quality(im) == pytest.approx(95, abs=1) and im.size == (256, 256)
    pack(sources, tmp_path / "again", seed=1, budget=budget, region=256, patch=128)
    pack(sources, tmp_path / "other", seed=2, budget=budget, region=256, patch=128)
    read = lambda name: [f.read_bytes() for f in sorted((tmp_path / name).iterdir())]
    assert read("again") == read("shard") != read("other")


def test_a_release_manifest_names_its_shard(sources, tmp_path):
    from models.export import training_data

    summary = pack(sources, tmp_path / "shard", seed=3, budget=600_000, region=256, patch=128)
    words = training_data(str(tmp_path / "shard"))
    assert f"seed 3: {summary['regions']} regions of 256 px from 3 photos" in words
