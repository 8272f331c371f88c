"""Encoder-side refinement: the synthesis gradient graph, the tables' bit costs, and what refining buys."""
from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from service.codec import Codec, bitstream
from service.codec.image_io import psnr
from service.codec.rate_control import AUTO_REFINE_STEPS, AUTO_REFINE_WORK, auto_refine_steps, job_cost
from service.codec.tile_coder import TileCoder
from service.codec.tiles import TileGrid, scatter_add, stitch
from service.codec.vjp import synthesis_vjp
from service.codec.zoo import DEFAULT_MODEL, ZOO_DIR, load_model

torch = pytest.importorskip("torch")


def rd_cost(codec: Codec, data: bytes, reference: np.ndarray, quality: float) -> float:
    """What refinement minimises, from real bytes and the decoded image: bits + λ·255²·SSE/3."""
    decoded = np.asarray(codec.decompress(data).convert("RGB"), dtype=np.float64)
    sse = float(((decoded - reference) ** 2).sum())
    return len(data) * 8 + load_model(DEFAULT_MODEL).lmbda(quality) * sse / 3


@pytest.mark.parametrize("model_id", [DEFAULT_MODEL, "tiny-coarse2fine"])
def test_synthesis_gradient_graph_matches_autograd(model_id, tiny_zoo):
    """The graph built from g_s.onnx gives PyTorch's gradient, for the default and for coarse-to-fine
    (whose synthesis also reads the hyper features)."""
    from models.release import load_checkpoint

    directory = ZOO_DIR / model_id if model_id == DEFAULT_MODEL else tiny_zoo / model_id
    model, _ = load_checkpoint(directory)  # the package's own (fp16) weights
    session = ort.InferenceSession(synthesis_vjp(onnx.load(str(directory / "g_s.onnx"))).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    m = model.widths["m"]
    feeds = {"y_hat": rng.normal(0, 2, (2, m, 4, 6)).astype(np.float32),
             "target": rng.random((2, 3, 64, 96), dtype=np.float32),
             "weight": (rng.random((2, 1, 64, 96)) > 0.3).astype(np.float32)}
    for name, stride in (("h_s1", 32), ("h_s2", 16)) if model.synthesis_features else ():
        channels = getattr(model, name).trunk[-1][0].out_channels // 4
        feeds[name] = np.abs(rng.normal(0, 1, (2, channels, 64 // stride, 96 // stride))).astype(np.float32)
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))

    y = torch.from_numpy(feeds["y_hat"]).requires_grad_(True)
    x_hat = model.synthesize(y, {k: torch.from_numpy(feeds[k]) for k in model.synthesis_features})
    loss = 0.5 * (torch.from_numpy(feeds["weight"]) * (x_hat.clamp(0, 1) - torch.from_numpy(feeds["target"])) ** 2).sum()
    loss.backward()
    np.testing.assert_allclose(out["x_hat"], x_hat.detach().numpy(), atol=1e-4)
    np.testing.assert_allclose(out["grad"], y.grad.numpy(), atol=1e-4 * float(y.grad.abs().max()))


@pytest.mark.parametrize("model_id", [DEFAULT_MODEL, "tiny-coarse2fine"])
def test_torch_backend_refines_like_onnxruntime(model_id, tiny_zoo, kodim01_rgb):
    """The PyTorch backend's gradient (autograd, as on a GPU) is the ONNX gradient graph's, and
    refining through it makes a stream that onnxruntime decodes, at a lower real RD cost than one pass."""
    from models.torch_backend import TorchBackend
    from service.codec.backend import OnnxBackend

    zoo = ZOO_DIR if model_id == DEFAULT_MODEL else tiny_zoo
    package = load_model(model_id, zoo)
    torch_backend, onnx_backend = TorchBackend.from_package(package), OnnxBackend(package)
    coder = TileCoder(package, onnx_backend)  # real synthesis inputs: two decoded 64x128 tiles of kodim01
    tiles = np.stack([kodim01_rgb[:64, :128], kodim01_rgb[64:128, 128:256]]).transpose(0, 3, 1, 2).astype(np.float32) / 255
    qualities = np.array([3.0, 6.0])
    payloads, _ = coder.encode(coder.analyze(tiles), qualities)
    rng = np.random.default_rng(1)
    feeds = {**coder.synthesis_feeds(coder.decode_latents(payloads, (64, 128)), qualities),
             "target": rng.random((2, 3, 64, 128), dtype=np.float32), "weight": (rng.random((2, 1, 64, 128)) > 0.3).astype(np.float32)}
    ours, reference = torch_backend.run("g_s_vjp", feeds), onnx_backend.run("g_s_vjp", feeds)
    np.testing.assert_allclose(ours["x_hat"], reference["x_hat"], atol=1e-4)
    np.testing.assert_allclose(ours["grad"], reference["grad"], atol=1e-4 * float(np.abs(reference["grad"]).max()))
    if model_id == DEFAULT_MODEL:
        crop = Image.fromarray(kodim01_rgb[:192, :256])
        refined = Codec(backend_factory=lambda p: TorchBackend.from_package(p)).compress(crop, quality=4, refine=3).data
        onnx_codec = Codec()
        reference_rgb = np.asarray(crop, dtype=np.float64)
        assert rd_cost(onnx_codec, refined, reference_rgb, 4) < rd_cost(onnx_codec, onnx_codec.compress(crop, quality=4).data, reference_rgb, 4)


def test_scatter_add_is_the_adjoint_of_stitch():
    """<stitch(a), w> = <a, scatter_add(w)> for every tile, edge tiles and padded ones included."""
    grid, stride, context = TileGrid(200, 140, 64), 16, 32
    rng = np.random.default_rng(1)
    planes = {i: rng.normal(size=(3, *(s // stride for s in grid.coded_shape(i, 64)))) for i in range(grid.count)}
    for i in range(grid.count):
        view = grid.view(i, 64, context)
        window = rng.normal(size=(3, view.window[0] // stride, view.window[1] // stride))
        back = {j: np.zeros_like(p) for j, p in planes.items()}
        scatter_add(grid, i, view, window, back)
        assert math.isclose(float((stitch(grid, i, view, planes) * window).sum()),
                            sum(float((planes[j] * back[j]).sum()) for j in planes), rel_tol=1e-9)


def test_table_bits_are_what_the_coder_spends(codec, kodim01_rgb):
    """The bit costs refinement descends add up to the payload the entropy coder writes."""
    coder = codec.coder(DEFAULT_MODEL)
    x = kodim01_rgb[:128, :128].transpose(2, 0, 1)[None].astype(np.float32) / 255
    prepared = coder.prepare(coder.analyze(x), np.array([3.0]))
    payloads, latents = coder.finish(prepared)
    estimate = sum(float(coder.tables(level).bits(latents.symbols[level.name].ravel(), prepared.table_ids[level.name].ravel()).sum())
                   for level in coder.levels)
    assert estimate == pytest.approx(len(payloads[0]) * 8, rel=0.01, abs=64)


@pytest.mark.parametrize("tile", [512, 64])  # one tile; 12 tiles refined together across their seams
def test_refinement_lowers_the_real_rate_distortion_cost(tile, kodim01_rgb):
    codec = Codec(tile=tile)
    rgb = np.ascontiguousarray(kodim01_rgb[128:320, 256:512])
    for quality in (2.0, 6.0):
        plain = codec.compress(Image.fromarray(rgb), quality=quality)
        refined = codec.compress(Image.fromarray(rgb), quality=quality, refine=24)
        assert bitstream_header(refined.data) == bitstream_header(plain.data)  # same format: any decoder reads it
        cost_plain, cost_refined = (rd_cost(codec, r.data, rgb, quality) for r in (plain, refined))
        assert cost_refined < 0.98 * cost_plain, (quality, cost_plain, cost_refined)
        assert psnr(rgb, np.asarray(codec.decompress(refined.data))) > psnr(rgb, np.asarray(codec.decompress(plain.data))) - 1.0
        assert codec.compress(Image.fromarray(rgb), quality=quality, refine=24).data == refined.data  # deterministic


def test_auto_refinement_spends_a_bounded_budget(kodim01_rgb):
    assert auto_refine_steps(0.05, None) == AUTO_REFINE_STEPS  # small images: the most auto takes
    assert auto_refine_steps(0.3932, None) == 19  # a Kodak image: 8 megapixel-steps
    assert auto_refine_steps(1.0, None) == 7
    assert auto_refine_steps(2.0, None) == 0  # under MIN_AUTO_STEPS: none
    assert auto_refine_steps(0.3932, "bpp") == 0  # rate control codes the image up to 16 times
    for megapixels in (0.01, 0.2, 0.5, 1.0, 1.5):
        for target in (None, "bpp", "psnr"):
            steps = auto_refine_steps(megapixels, target)
            assert steps == 0 or job_cost(megapixels, steps, target) <= AUTO_REFINE_WORK + 0.2
    codec = Codec()
    crop = Image.fromarray(np.ascontiguousarray(kodim01_rgb[128:320, 256:512]))
    assert codec.compress(crop, quality=3, refine="auto").data == codec.compress(crop, quality=3, refine=AUTO_REFINE_STEPS).data


def test_refinement_is_refused_clearly(tiny_zoo):
    codec = Codec(zoo=tiny_zoo)
    image = Image.fromarray(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="no hyperprior"):
        codec.compress(image, model="tiny-factorized", refine=4)
    with pytest.raises(ValueError, match="refine must be"):
        codec.compress(image, model="tiny-mean-scale", refine=-1)
    with pytest.raises(ValueError, match="refine must be"):
        codec.compress(image, model="tiny-mean-scale", refine="most")
    assert codec.compress(image, model="tiny-hyperprior", refine=2).data


def bitstream_header(data: bytes) -> tuple:
    header = bitstream.parse(data)
    return header.model_id, header.fingerprint, header.quality, header.width, header.height, header.tile, header.context
