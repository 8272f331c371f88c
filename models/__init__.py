"""PyTorch side of the codec: architectures, training and ONNX export.

Nothing under ``service/`` imports this package; it needs the ``train`` extra (torch).
"""
