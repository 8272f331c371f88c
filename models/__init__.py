"""PyTorch side of the codec: architectures, training and ONNX export (the ``train`` extra: torch).

The run time never imports this package (``tests/test_runtime_imports.py``). Two optional commands
do, each refusing clearly without torch: ``lic train`` and ``lic export`` (``service/cli.py``), and the
PyTorch-eager speed row of ``lic bench`` (``service/bench/speed.py``).
"""
