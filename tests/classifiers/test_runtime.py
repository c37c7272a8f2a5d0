"""Precision is an option: ``auto`` follows the hardware; fp32, bf16 and fp16 are forced on any CPU."""

import pytest
import torch

from attrret.classifiers.calibration import view_probs
from attrret.classifiers.runtime import autocast, cpu_bf16_is_fast, grad_scaler, resolve_precision
from attrret.errors import AttrretError
from attrret.precisions import PRECISION_ENV

CPU = torch.device("cpu")


def test_auto_uses_bf16_exactly_where_the_cpu_has_fast_kernels(monkeypatch):
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    prec = resolve_precision(None, CPU)
    assert prec.name == ("bf16" if cpu_bf16_is_fast() else "fp32") and prec.requested == "auto"
    with autocast(CPU):
        y = torch.randn(8, 8) @ torch.randn(8, 8)
    assert y.dtype == (torch.bfloat16 if cpu_bf16_is_fast() else torch.float32)
    assert prec.describe().startswith("bf16" if cpu_bf16_is_fast() else "fp32")


@pytest.mark.parametrize("name,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_a_forced_precision_runs_on_any_cpu(name, dtype):
    """A host without native bf16 still runs bf16 autocast (emulated): the path every test can force."""
    prec = resolve_precision(name, CPU)
    assert prec.name == name and prec.requested == name
    with prec.autocast():
        y = torch.randn(4, 8) @ torch.randn(8, 3)
    assert y.dtype == dtype


def test_the_environment_variable_is_read_when_no_precision_is_given(monkeypatch):
    monkeypatch.setenv(PRECISION_ENV, "bf16")
    assert resolve_precision(None, CPU).name == "bf16"
    assert resolve_precision("fp32", CPU).name == "fp32"  # the option wins over the variable
    monkeypatch.setenv(PRECISION_ENV, "fp64")
    with pytest.raises(AttrretError, match=PRECISION_ENV):
        resolve_precision(None, CPU)


def test_an_unknown_precision_is_one_clear_error():
    with pytest.raises(AttrretError, match="auto, fp32, bf16, fp16"):
        resolve_precision("half", CPU)


def test_only_fp16_scales_the_loss():
    assert grad_scaler(resolve_precision("fp32", CPU)) is None
    assert grad_scaler(resolve_precision("bf16", CPU)) is None
    assert grad_scaler(resolve_precision("fp16", CPU)) is not None


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_probabilities_leave_torch_as_float32_inside_an_autocast_region(name):
    """The post-processing runs in float32 whatever region it is called in: NumPy has no bf16."""
    logits = torch.randn(2, 5, 3).to(torch.bfloat16 if name == "bf16" else torch.float16)
    with resolve_precision(name, CPU).autocast():
        p = view_probs(logits, temperature=0.7)
    assert p.dtype == torch.float32 and p.shape == (5, 3)
    assert torch.allclose(p.sum(-1), torch.ones(5), atol=1e-6)
    assert p.numpy().dtype.name == "float32"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the CUDA precision rules run where there is one")
def test_cuda_auto_is_fp16_amp_with_a_grad_scaler():
    cuda = torch.device("cuda")
    prec = resolve_precision("auto", cuda)
    assert prec.name == "fp16" and grad_scaler(prec) is not None
    if not torch.cuda.is_bf16_supported():
        with pytest.raises(AttrretError, match="bf16"):
            resolve_precision("bf16", cuda)
