"""Trained models in forms other programs run without attrret.

- :mod:`attrret.export.onnx` -- ``export_onnx(members, out)``: one ONNX graph from preprocessed
  images to the index's probability columns (router, every task, the ensemble, the flip TTA).
- :mod:`attrret.export.onnx_runtime` -- ``open_graph(path)``, ``graph_probs(graph, images)``: that
  graph run by onnxruntime, which ``attrret predict --runtime onnx`` builds an index with.

Nothing is imported here, so ``attrret --help`` stays instant; onnx, onnxscript and
onnxruntime are the optional extra ``attrret[onnx]``, imported only when used.
"""
