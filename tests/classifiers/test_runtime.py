"""Mixed precision follows the hardware: bf16 on CPUs with oneDNN bf16 kernels, fp32 elsewhere."""

import torch

from attrret.classifiers.runtime import autocast, cpu_bf16_is_fast, precision


def test_cpu_autocast_uses_bf16_exactly_where_it_is_fast():
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    cpu = torch.device("cpu")
    with autocast(cpu):
        y = a @ b
    assert y.dtype == (torch.bfloat16 if cpu_bf16_is_fast() else torch.float32)
    assert precision(cpu).startswith("bf16" if cpu_bf16_is_fast() else "fp32")


def test_disabled_autocast_is_fp32():
    cpu = torch.device("cpu")
    with autocast(cpu, enabled=False):
        y = torch.randn(4, 4) @ torch.randn(4, 4)
    assert y.dtype == torch.float32
    assert precision(cpu, enabled=False) == "fp32"
