"""Process-level set-up shared by training and inference: device, threads, precision, seeds, torchrun ranks."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from attrret.errors import AttrretError

__all__ = ["Dist", "init_dist", "barrier", "resolve_device", "autocast", "cpu_bf16_is_fast", "precision", "seed_everything", "tune_malloc"]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; an explicit device this machine lacks is one clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise AttrretError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise AttrretError(f"--device {device}: this machine has no CUDA device (torch {torch.__version__}); "
                               "use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise AttrretError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type not in ("cpu", "mps"):
        raise AttrretError(f"unsupported device {device!r}; use auto, cpu, cuda or cuda:N")
    return dev


@functools.cache
def cpu_bf16_is_fast() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 or newer).

    On an AVX-512 EPYC, bf16 autocast runs the EfficientNet trunk 1.5-1.8x faster with the same
    top-5; on an AVX2-only CPU there is no oneDNN bf16 path, convolutions fall back to PyTorch's
    im2col ``slow_conv2d`` and the same forward is about 11x SLOWER than fp32 (measured on a
    2-core AVX2 EPYC). Cached because the answer is a fact about the machine.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private op; fall back to the public capability string
        return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def _mixed_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype for ``device``, or None for fp32: the one place the policy lives."""
    if enabled and device.type == "cuda":
        return torch.float16
    if enabled and device.type == "cpu" and cpu_bf16_is_fast():
        return torch.bfloat16
    return None


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision where it pays: fp16 AMP on GPU, bf16 on CPUs with oneDNN bf16 kernels.

    Elsewhere (AVX2-only CPUs, MPS) this is a no-op and the model runs in fp32.
    """
    dtype = _mixed_dtype(device, enabled)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def precision(device: torch.device, enabled: bool = True) -> str:
    """What :func:`autocast` will run in, for logs: ``fp16 AMP``, ``bf16 autocast`` or ``fp32``."""
    dtype = _mixed_dtype(device, enabled)
    if dtype is not None:
        return "fp16 AMP" if dtype == torch.float16 else "bf16 autocast"
    return "fp32 (no oneDNN bf16 kernels on this CPU)" if enabled and device.type == "cpu" else "fp32"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def tune_malloc() -> None:
    """Stop glibc from mmap/munmap-ing every large activation (about 2x on forward-only runs).

    Raising the mmap and trim thresholds keeps freed activation buffers in the heap for reuse.
    Harmless (a no-op) where glibc is not the allocator.
    """
    torch.set_flush_denormal(True)  # denormal activations/gradients can slow CPU kernels many-fold
    if os.name != "posix":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)  # glibc maximum on 64-bit
        libc.mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024)
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class Dist:
    """This process's place among ``torchrun``'s ranks (rank 0 of 1 when not launched by it)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_dist(device: torch.device) -> Dist:
    """Join torchrun's process group (``WORLD_SIZE`` > 1): nccl on GPU, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def barrier(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()
