"""Make ``import torchvision`` work on a CPU-only torch whose torchvision extension cannot load.

torchvision 0.28.0 is the only release that accepts torch 2.13.0, and its compiled extension
links CUDA libraries. On the CPU wheel the extension fails to load and the import dies in
``torchvision/_meta_registrations.py`` with ``operator torchvision::nms does not exist``,
because that module registers fake kernels for ``nms``/``qnms`` without checking the
extension. timm and open_clip import torchvision at load time, so everything that uses them
calls :func:`ensure_torchvision` first.

Only when the native import fails do we define the two operator schemas with
``torch.library`` and import again; on a machine with a matching torch/torchvision pair the
native import succeeds and nothing is patched. The compiled ops (nms, roi_align, image
decoding) stay unavailable; attrret does not use them.
"""

from __future__ import annotations

import sys

__all__ = ["ensure_torchvision"]

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARY = []  # keeps the torch.library object alive; registration is process-wide anyway


def ensure_torchvision() -> None:
    """Import torchvision, defining the missing operator schemas only if the native import fails."""
    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "transforms"):
        return
    try:
        import torchvision  # noqa: F401

        return
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    import torch

    for name in list(sys.modules):
        if name == "torchvision" or name.startswith("torchvision."):
            del sys.modules[name]
    if not _LIBRARY:
        lib = torch.library.Library("torchvision", "DEF")  # noqa: TOR901
        for schema in _SCHEMAS.values():
            try:
                lib.define(schema)
            except RuntimeError:
                pass  # already defined
        _LIBRARY.append(lib)
    import torchvision  # noqa: F401,F811
