"""The synthesis transform's gradient as an ONNX graph, built at run time from the package's g_s.onnx.

``synthesis_vjp(g_s)`` keeps every node of g_s and appends the reverse-mode pass of the nodes that
depend on ``y_hat``. The new graph takes two more inputs, ``target`` (B,3,H,W) and ``weight``
(B,1,H,W), and gives one more output, ``grad``: the gradient with respect to ``y_hat`` of

    ½ · Σ weight · (clip(x_hat, 0, 1) − target)²

which is what encoder-side refinement (``service.codec.refine``) descends. Building it from the
shipped graph, in memory, keeps one copy of the weights and makes the forward pass exactly the
decoder's. Only the operators the shipped syntheses use on the path from ``y_hat`` are supported
(the hyper features and the parameter arithmetic of GDN are constants here); anything else raises
``ValueError``.
"""
from __future__ import annotations

from collections.abc import Callable

import onnx
from onnx import TensorProto, helper

WRT = "y_hat"
PREFIX = "vjp/"


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.count = 0

    def add(self, op: str, inputs: list[str], **attributes) -> str:
        self.count += 1
        out = f"{PREFIX}{op}_{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attributes))
        return out


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _conv_geometry(node: onnx.NodeProto) -> dict:
    """The attributes a convolution's adjoint shares with it (a transposed convolution's output
    padding only adds rows the adjoint reads anyway)."""
    attrs = _attributes(node)
    if attrs.get("group", 1) != 1 or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError(f"{node.op_type} with groups or auto padding has no gradient here")
    return {k: attrs[k] for k in ("kernel_shape", "strides", "pads", "dilations") if k in attrs}


# Per operator: (builder, node, gradient of its output, active inputs) -> [(input, its gradient), ...]
Grads = list[tuple[str, str]]


def _conv_transpose(b: _Builder, node, grad: str, active: set[str]) -> Grads:
    return [(node.input[0], b.add("Conv", [grad, node.input[1]], **_conv_geometry(node)))]


def _conv(b: _Builder, node, grad: str, active: set[str]) -> Grads:
    geometry = _conv_geometry(node)
    if any(s != 1 for s in geometry.get("strides", [1])):
        raise ValueError("a strided Conv in the synthesis has no gradient here")
    return [(node.input[0], b.add("ConvTranspose", [grad, node.input[1]], **geometry))]


def _abs(b: _Builder, node, grad: str, active: set[str]) -> Grads:
    return [(node.input[0], b.add("Mul", [grad, b.add("Sign", [node.input[0]])]))]


def _relu(b: _Builder, node, grad: str, active: set[str]) -> Grads:
    return [(node.input[0], b.add("Mul", [grad, b.add("Sign", [node.output[0]])]))]  # relu' = sign(relu(x))


def _mul(b: _Builder, node, grad: str, active: set[str]) -> Grads:
    left, right = node.input
    return [(mine, b.add("Mul", [grad, other])) for mine, other in ((left, right), (right, left)) if mine in active]


def _add(b: _Builder, node, grad: str, active: set[str]) -> Grads:
    return [(name, grad) for name in node.input if name in active]


def _concat(b: _Builder, node, grad: str, active: set[str]) -> Grads:
    axis = _attributes(node)["axis"]
    sizes = b.add("Concat", [b.add("Shape", [name], start=axis, end=axis + 1) for name in node.input], axis=0)
    parts = [f"{PREFIX}split_{b.count + 1}_{i}" for i in range(len(node.input))]
    b.count += 1
    b.nodes.append(helper.make_node("Split", [grad, sizes], parts, axis=axis))
    return [(name, part) for name, part in zip(node.input, parts) if name in active]


GRADIENTS: dict[str, Callable[..., Grads]] = {
    "ConvTranspose": _conv_transpose, "Conv": _conv, "Abs": _abs, "Relu": _relu, "Mul": _mul, "Add": _add, "Concat": _concat,
}


def _image_input(name: str, channels: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"{PREFIX}batch", channels, f"{PREFIX}height", f"{PREFIX}width"])


def synthesis_vjp(g_s: onnx.ModelProto) -> onnx.ModelProto:
    graph = g_s.graph
    if WRT not in {i.name for i in graph.input} or len(graph.output) != 1:
        raise ValueError(f"a synthesis graph has input {WRT!r} and one output")
    active = {WRT}
    for node in graph.node:
        if any(name in active for name in node.input):
            if node.op_type not in GRADIENTS:
                raise ValueError(f"no gradient for {node.op_type} on the synthesis path; this model cannot be refined")
            active.update(node.output)

    b = _Builder()
    x_hat = graph.output[0].name
    clipped = b.add("Clip", [x_hat, b.add("Constant", [], value_float=0.0), b.add("Constant", [], value_float=1.0)])
    inside = b.add("Cast", [b.add("Equal", [clipped, x_hat])], to=TensorProto.FLOAT)  # no gradient where clipped
    seed = b.add("Mul", [b.add("Mul", [b.add("Sub", [clipped, "target"]), "weight"]), inside])
    contributions: dict[str, list[str]] = {x_hat: [seed]}
    for node in reversed(graph.node):
        grads = contributions.pop(node.output[0], None) if node.output[0] in active else None
        if grads is None:
            continue  # inactive, or does not reach the output
        grad = grads[0] if len(grads) == 1 else b.add("Sum", grads)
        for name, g in GRADIENTS[node.op_type](b, node, grad, active):
            contributions.setdefault(name, []).append(g)
    grads = contributions.get(WRT, [])
    if not grads:
        raise ValueError(f"the synthesis output does not depend on {WRT!r}")
    b.nodes.append(helper.make_node("Sum" if len(grads) > 1 else "Identity", grads, ["grad"], name=f"{PREFIX}grad"))

    vjp = onnx.ModelProto()
    vjp.CopyFrom(g_s)
    vjp.graph.node.extend(b.nodes)
    vjp.graph.input.extend([_image_input("target", 3), _image_input("weight", 1)])
    vjp.graph.output.append(helper.make_tensor_value_info("grad", TensorProto.FLOAT, [None] * 4))
    return vjp
