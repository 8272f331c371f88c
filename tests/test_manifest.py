"""The typed manifest: every shipped one validates; a tampered or incomplete one is refused by name."""
import json
import shutil

import pytest

from service.codec import ModelError
from service.codec.manifest import Manifest
from service.codec.zoo import DEFAULT_MODEL, ZOO_DIR, available_models, load_model


@pytest.mark.parametrize("model_id", available_models())
def test_shipped_manifests_validate(model_id):
    manifest = Manifest.load(ZOO_DIR / model_id / "manifest.json")
    assert manifest.id == model_id and manifest.levels[-1].name == "y"
    assert manifest.padding_multiple == 64 and manifest.context_multiple in (16, 32)


@pytest.mark.parametrize("tamper, message", [
    (lambda m: m.update(fingerprint="0" * 16), "fingerprint"),
    (lambda m: m.pop("levels"), "levels"),
    (lambda m: m["qualities"]["lambdas"].reverse(), "lambdas"),
    (lambda m: m.update(package_format=3), "package format"),
    (lambda m: m.update(synthesis_features=["h_s9"]), "synthesis features"),
])
def test_tampered_manifests_are_refused(tmp_path, tamper, message):
    package = tmp_path / DEFAULT_MODEL
    shutil.copytree(ZOO_DIR / DEFAULT_MODEL, package)
    manifest = json.loads((package / "manifest.json").read_text())
    tamper(manifest)
    (package / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=message):
        load_model(DEFAULT_MODEL, tmp_path)


def test_saving_keeps_an_older_manifest_as_it_was(tmp_path):
    source = ZOO_DIR / "c2f-64-96-r7" / "manifest.json"  # format 1: no package_format, no training.seconds
    target = tmp_path / "manifest.json"
    Manifest.load(source).save(target)
    assert json.loads(target.read_text()) == json.loads(source.read_text())
