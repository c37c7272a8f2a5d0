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
from attrret.precisions import PRECISION_ENV, PRECISIONS

__all__ = ["Dist", "init_dist", "barrier", "resolve_device", "autocast", "cpu_bf16_is_fast", "Precision", "PRECISIONS",
           "PRECISION_ENV", "resolve_precision", "grad_scaler", "seed_everything", "tune_malloc"]


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


_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """The precision a model runs in on one device: what ``--precision`` resolved to.

    ``name`` (``fp32``, ``bf16`` or ``fp16``) is what actually runs, and what logs, checkpoints
    and index headers record; ``requested`` is what was asked for (``auto`` or a name). Build
    one with :func:`resolve_precision`; use it with :meth:`autocast`.

    Why an explicit object rather than a property of the host: the bf16 and fp16 paths are the
    ones most current servers and every GPU take, and a path chosen only by the host is a path
    the tests of another host never run. Anything can force any precision the device can run.
    """

    name: str
    device_type: str
    requested: str = "auto"

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for fp32 (no autocast at all)."""
        return _DTYPES[self.name]

    @property
    def mixed(self) -> bool:
        return self.dtype is not None

    @property
    def needs_grad_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range."""
        return self.name == "fp16"

    def autocast(self):
        """An autocast region in this precision (a no-op for fp32).

        Autocast caches the low-precision copy of each weight for the whole region; code that
        changes a weight in place inside one region reads the stale copy. Nothing in attrret
        does (each task runs its own module); keep it so.
        """
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def describe(self) -> str:
        """For logs: ``bf16 autocast (auto: oneDNN bf16 kernels on this CPU)`` and the like."""
        what = {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 AMP" if self.device_type == "cuda" else "fp16 autocast"}[self.name]
        if self.requested == "auto":
            why = {"cuda": "CUDA", "cpu": "oneDNN bf16 kernels on this CPU" if self.name == "bf16" else "no oneDNN bf16 kernels on this CPU"}
            return f"{what} (auto: {why.get(self.device_type, self.device_type)})"
        if self.device_type == "cpu" and self.mixed and not cpu_bf16_is_fast():
            return f"{what} (forced; this CPU has no native {self.name} kernels, so it runs slower than fp32)"
        return f"{what} (forced)"


def resolve_precision(requested: Precision | str | None, device: torch.device) -> Precision:
    """What ``requested`` (None: ``$ATTRRET_PRECISION``, else ``auto``; a :class:`Precision`
    is returned as it is) runs as on ``device``.

    ``auto``: fp16 AMP on CUDA, bf16 on CPUs with oneDNN bf16 kernels (AVX-512 or newer), fp32
    elsewhere (AVX2-only CPUs, where bf16 convolutions are about 11x slower, and MPS). A forced
    ``bf16`` or ``fp16`` runs on any CPU (PyTorch emulates what the CPU lacks, only slower); a
    precision the device cannot run at all is one :class:`AttrretError`. The answer for a name
    on a device is a fact about the machine, worked out once (training asks every batch).
    """
    if isinstance(requested, Precision):
        return requested
    src = "--precision"
    if requested is None:
        requested, src = os.environ.get(PRECISION_ENV) or "auto", f"{PRECISION_ENV}"
    return _resolve(str(requested).strip().lower(), device, src)


@functools.lru_cache(maxsize=64)
def _resolve(requested: str, device: torch.device, src: str) -> Precision:
    """:func:`resolve_precision` of a name (``src`` names where it came from, for errors)."""
    if requested not in PRECISIONS:
        raise AttrretError(f"{src} {requested!r}: use one of {', '.join(PRECISIONS)}")
    kind = device.type
    if requested == "auto":
        name = "fp16" if kind == "cuda" else "bf16" if kind == "cpu" and cpu_bf16_is_fast() else "fp32"
        return Precision(name, kind, "auto")
    if requested != "fp32":
        dtype = _DTYPES[requested]
        if not torch.amp.is_autocast_available(kind):
            raise AttrretError(f"{src} {requested}: torch {torch.__version__} has no autocast on {kind}; use fp32")
        if kind == "cuda" and requested == "bf16" and not torch.cuda.is_bf16_supported():
            raise AttrretError(f"{src} bf16: this GPU ({torch.cuda.get_device_name(device)}) has no bf16 support; "
                               "use fp16 or fp32")
        try:
            with torch.autocast(kind, dtype=dtype):
                pass
        except (RuntimeError, ValueError) as exc:  # torch refuses the dtype on this device
            raise AttrretError(f"{src} {requested}: torch {torch.__version__} cannot autocast {kind} to {requested} "
                               f"({str(exc).splitlines()[0][:160]}); use fp32") from None
    return Precision(requested, kind, requested)


def autocast(device: torch.device, precision: Precision | str | None = None):
    """An autocast region for ``device`` in ``precision`` (a :class:`Precision`, or what
    :func:`resolve_precision` takes); see :meth:`Precision.autocast`."""
    return resolve_precision(precision, device).autocast()


def grad_scaler(precision: Precision) -> torch.amp.GradScaler | None:
    """Loss scaling for fp16 training (CUDA and CPU alike); None in fp32 and bf16."""
    return torch.amp.GradScaler(precision.device_type) if precision.needs_grad_scaler else None


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
