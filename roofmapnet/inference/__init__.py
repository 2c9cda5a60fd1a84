"""Inference: image reading, the ``Predictor``, L-CNN post-processing (``postprocess``) and output writers.

Submodules are imported on demand (``from roofmapnet.inference.postprocess import postprocess_lines``) so that
importing this package stays cheap.
"""
