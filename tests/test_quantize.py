"""models/quantize.py, which makes the int8 twins of LIC_TRANSFORMS: the convolution it takes, the exact
sub-pixel rewrite of a transposed one, and twins made from a few crops that onnxruntime runs in int8."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from models.quantize import calibration_feeds, fold_casts, int8_convolutions, int8_graphs, multiply_adds, subpixel_deconvolutions
from service.codec.zoo import DEFAULT_MODEL, load_model
from tests.conftest import DATA


def float_graph(name: str) -> onnx.ModelProto:
    return fold_casts(onnx.load(str(load_model(DEFAULT_MODEL).path(f"{name}.onnx"))))


def test_the_twins_take_the_convolution_doing_most_of_the_work():
    for name, chosen in (("g_a", "/g_a/g_a.2/Conv"), ("g_s", "/g_s/g_s.4/ConvTranspose")):
        model = float_graph(name)
        macs = multiply_adds(model)
        assert int8_convolutions(model) == [chosen]
        assert 0.65 < macs[chosen] / sum(macs.values()) < 0.75  # 25*128*128 / 16 of 37k per pixel


def test_the_sub_pixel_rewrite_of_a_transposed_convolution_is_exact():
    model = float_graph("g_s")
    rewritten = subpixel_deconvolutions(model, only={"/g_s/g_s.4/ConvTranspose"})
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops.count("ConvTranspose") == 3 and ops.count("DepthToSpace") == 1
    y = np.random.default_rng(0).normal(0, 2, (1, 192, 8, 12)).astype(np.float32)

    def run(m: onnx.ModelProto) -> np.ndarray:
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"y_hat": y})[0]

    np.testing.assert_allclose(run(rewritten), run(model), atol=1e-4)


def test_twins_made_from_a_few_crops_run_one_int8_convolution(tmp_path):
    package = load_model(DEFAULT_MODEL)
    paths = int8_graphs(package, calibration_feeds(package, [DATA], 2), tmp_path)
    assert sorted(p.name for p in paths.values()) == ["g_a.int8.onnx", "g_s.int8.onnx"]
    for name, path in paths.items():
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(tmp_path / f"{name}.optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
        assert ops.count("QLinearConv") == 1, ops
