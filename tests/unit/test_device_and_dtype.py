"""Choosing the device and dtype: CPU defaults, and a bad device or dtype or a missing GPU is a user error."""

from __future__ import annotations

import pytest
import torch

from vcritic.errors import VcriticError
from vcritic.model.runtime import resolve_device, resolve_dtype


def test_cpu_defaults_to_float32():
    device = resolve_device("cpu")
    assert device.type == "cpu"
    assert resolve_dtype(None, device) == torch.float32
    assert resolve_dtype("bf16", device) == torch.bfloat16


@pytest.mark.parametrize(
    ("device", "dtype", "message"),
    [("tpu", None, "unknown device|unsupported device"), ("cpu", "int8", "unknown dtype")],
)
def test_bad_device_or_dtype_is_a_user_error(device, dtype, message):
    with pytest.raises(VcriticError, match=message):
        resolve_dtype(dtype, resolve_device(device))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_gpu_is_a_user_error():
    with pytest.raises(VcriticError, match="no CUDA GPU"):
        resolve_device("cuda")
