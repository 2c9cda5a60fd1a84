"""Inference, in layers (each module imports only the ones listed before it):

* :mod:`.types`: the records passed between layers (no behaviour); options are ``RootConfig.infer``
  (:class:`~roofmapnet.config.schema.InferConfig`).
* :mod:`.images` (discover, read and prepare images), :mod:`.postprocess` (L-CNN's line post-processing).
* :mod:`.predictor`: a :class:`~roofmapnet.models.outputs.WireframeModel` on a device at a precision, tensors →
  :class:`~roofmapnet.models.outputs.Wireframe`.
* :mod:`.batching`: the one read-ahead and batching loop (images, tiles, DDP shards).
* :mod:`.raster` (source → grid → merge), :mod:`.outputs` (writers, geo writers), then :mod:`.raster.run`.
* :mod:`.runner` (discover → route → batch → write, one process) and :mod:`.distributed` (Lightning DDP).

Submodules are imported on demand (``from roofmapnet.inference.runner import run_inference``) so that importing
this package stays cheap.
"""
