"""Speed and device helpers (``pcrl_lib.perf``): device settings, loader options, layouts."""

import pytest
import torch

from pcrl_lib.perf import loader_options, mixed_input, prepare_device


def test_prepare_device_switches_on_cudnn_benchmark_and_tf32_for_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    before = torch.get_float32_matmul_precision()
    assert prepare_device("cpu") == torch.device("cpu")
    assert not torch.backends.cudnn.benchmark and not torch.backends.cudnn.allow_tf32
    assert prepare_device("cuda:1") == torch.device("cuda", 1)  # no GPU needed to set them
    assert torch.backends.cudnn.benchmark and torch.backends.cudnn.allow_tf32
    assert torch.get_float32_matmul_precision() == "high"
    torch.set_float32_matmul_precision(before)


def test_batches_are_pinned_for_cuda_only():
    assert loader_options("cpu") == {"pin_memory": False}
    assert loader_options(torch.device("cuda")) == {"pin_memory": True}


@pytest.mark.parametrize(("dtype", "channels_last"), [("fp32", False), ("bf16", True)])
def test_mixed_input_moves_and_lays_out_a_batch(dtype, channels_last):
    x = torch.rand(2, 3, 4, 5, 6)
    y = mixed_input(x, dtype, "cpu")
    assert torch.equal(x, y)
    assert y.is_contiguous(memory_format=torch.channels_last_3d) == channels_last
