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


def test_int8_twins_are_verified_but_outside_the_fingerprint(tmp_path):
    """The default ships int8 twins of g_a and g_s (LIC_TRANSFORMS=int8): ``verify`` checks them, but the
    fingerprint (what bitstreams carry) covers only the release's own files, so streams do not change."""
    package = load_model(DEFAULT_MODEL)
    twins = package.manifest.int8
    assert twins is not None and set(twins.files) == {"g_a.int8.onnx", "g_s.int8.onnx"}
    assert not set(twins.files) & set(package.manifest.files)
    assert package.transforms("int8") == "int8" and package.graph_file("g_s", "int8").name == "g_s.int8.onnx"
    assert package.graph_file("h_s", "int8").name == "h_s.onnx" and package.graph_file("g_s").name == "g_s.onnx"
    assert package.graph_file("g_a", "int8-encoder").name == "g_a.int8.onnx" and package.precision("g_s", "int8-encoder") == "fp32"
    assert all(load_model(m).transforms("int8") == "fp32" for m in available_models() if load_model(m).manifest.int8 is None)
    with pytest.raises(ValueError, match="transforms"):
        package.transforms("fp16")
    copy = tmp_path / DEFAULT_MODEL
    shutil.copytree(ZOO_DIR / DEFAULT_MODEL, copy)
    twin = copy / "g_s.int8.onnx"
    twin.write_bytes(twin.read_bytes()[:-1] + b"\0")
    tampered = load_model(DEFAULT_MODEL, tmp_path)
    assert tampered.fingerprint == package.fingerprint
    with pytest.raises(ModelError, match="g_s.int8.onnx"):
        tampered.verify()
