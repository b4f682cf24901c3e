"""Deployment: a fitted model as a folder that runs without PyTorch.

=================  ==========================================================
``export``         a model -> ONNX features and search + memory bank + settings
                   JSON, written only when its scores match PyTorch's (needs torch)
``runtime``        scores images from such a folder with onnxruntime, numpy,
                   scipy and PIL: never imports torch
=================  ==========================================================

Imports: ``runtime`` only ``patchcore_core.util`` and numerical libraries;
``export`` every layer up to ``io`` and ``data``.
"""
