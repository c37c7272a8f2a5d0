"""Shared test setup: no network model hub in tests."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Predict's runtime pinned to PyTorch, so a test means the same on a host whose CPU runs float32
# (where --runtime auto would pick onnxruntime) as on one with bf16; tests/export/test_onnx_cache.py
# forces the auto rule and the onnxruntime path on every host. Exported graphs go to a scratch cache.
os.environ.setdefault("ATTRRET_RUNTIME", "torch")
os.environ.setdefault("ATTRRET_CACHE", tempfile.mkdtemp(prefix="attrret-test-cache-"))
