"""Speed and device helpers (``pcrl_lib.perf``): device settings, loader options, layouts."""

import functools

import pytest
import torch

from pcrl_lib import perf
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


@pytest.mark.parametrize(
    ("dtype", "shape", "channels_last"),
    [
        ("fp32", (2, 3, 4, 5, 6), False),  # fp32: contiguous
        ("fp32", (2, 3, 4, 5), False),
        ("bf16", (2, 3, 4, 5, 6), True),
        ("bf16", (2, 3, 4, 5), True),
    ],
)
def test_mixed_input_moves_and_lays_out_a_batch(dtype, shape, channels_last, monkeypatch):
    monkeypatch.setenv(perf.CPU_AUTOCAST_ENV, "on")  # bf16 as asked on any CPU
    x = torch.rand(*shape)
    y = mixed_input(x, dtype, "cpu")
    assert torch.equal(x, y)
    fmt = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
    assert y.is_contiguous(memory_format=fmt) == channels_last
    assert y.is_contiguous() != channels_last  # (C > 1: the two layouts differ)


def test_channels_last_is_for_mixed_precision_only(monkeypatch):
    monkeypatch.setenv(perf.CPU_AUTOCAST_ENV, "on")
    assert not perf.channels_last_for("fp32", "cpu", 5)
    assert not perf.channels_last_for("fp32", "cuda", 4)
    assert perf.channels_last_for("bf16", "cuda:0", 5) and perf.channels_last_for("bf16", "cuda", 4)
    assert perf.channels_last_for("bf16", "cpu", 4)
    assert not perf.channels_last_for("bf16", "cpu", 3)  # no layout for other ranks
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3), torch.nn.Conv3d(3, 3, 3))
    perf.mixed_model(model, "fp32")
    assert model[0].weight.is_contiguous() and model[1].weight.is_contiguous()
    perf.mixed_model(model, "bf16")
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model[1].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert not model[0].weight.is_contiguous() and not model[1].weight.is_contiguous()
    # a module converts only the ranks it is given
    only_3d = perf.to_channels_last(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3)), (5,))
    assert only_3d[0].weight.is_contiguous()


@pytest.fixture
def cpu_without_native_bf16(monkeypatch):
    """This CPU as one whose bf16 is emulated (AVX2): whatever the machine running the test."""
    monkeypatch.delenv(perf.CPU_AUTOCAST_ENV, raising=False)
    monkeypatch.setattr(perf, "cpu_native_mixed", lambda dtype: dtype == "fp32")


def test_mixed_precision_falls_back_to_fp32_on_a_cpu_without_native_kernels(
    cpu_without_native_bf16, monkeypatch
):
    monkeypatch.setattr(
        perf, "_warn_fp32_fallback", functools.cache(perf._warn_fp32_fallback.__wrapped__)
    )
    with pytest.warns(RuntimeWarning, match="running in fp32.*PCRL_CPU_AUTOCAST=on"):
        assert perf.effective_dtype("bf16", "cpu") == "fp32"
        assert perf.effective_dtype("fp16", torch.device("cpu")) == "fp32"
    assert perf.effective_dtype("bf16", "cuda") == "bf16"  # a GPU runs as asked
    assert perf.effective_dtype("fp32", "cpu") == "fp32"
    # every helper follows: no autocast, no channels-last, and the machine says so
    with perf.autocast_context("bf16", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    assert perf.mixed_input(torch.rand(2, 3, 4, 5, 6), "bf16", "cpu").is_contiguous()
    model = perf.mixed_model(torch.nn.Conv3d(3, 3, 3), "bf16")
    assert model.weight.is_contiguous()
    assert ", bf16 as fp32, torch " in perf.machine_description() or torch.cuda.is_available()


def test_cpu_autocast_can_be_forced_either_way(cpu_without_native_bf16, monkeypatch):
    monkeypatch.setenv(perf.CPU_AUTOCAST_ENV, "on")
    assert perf.effective_dtype("bf16", "cpu") == "bf16"
    description = perf.machine_description()  # records say their bf16 was not native
    assert ", bf16 emulated, torch " in description or torch.cuda.is_available()
    assert "bf16 as fp32" not in description
    with perf.autocast_context("bf16", "cpu"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")
    model = perf.mixed_model(torch.nn.Conv3d(3, 3, 3), "bf16")
    assert model.weight.is_contiguous(memory_format=torch.channels_last_3d)
    monkeypatch.setattr(perf, "cpu_native_mixed", lambda dtype: True)
    assert "bf16" not in perf.machine_description()  # native kernels as asked: nothing said
    monkeypatch.setenv(perf.CPU_AUTOCAST_ENV, "OFF")  # case does not matter
    assert perf.effective_dtype("bf16", "cpu") == "fp32"
    assert perf.effective_dtype("bf16", "cuda:0") == "bf16"
    monkeypatch.setenv(perf.CPU_AUTOCAST_ENV, "sometimes")
    with pytest.raises(ValueError, match="PCRL_CPU_AUTOCAST='sometimes': must be one of auto"):
        perf.effective_dtype("bf16", "cpu")
    with pytest.raises(ValueError, match="dtype must be one of"):
        perf.effective_dtype("int8", "cpu")


def test_native_kernels_are_judged_by_torch_own_probe(monkeypatch):
    perf.cpu_native_mixed.cache_clear()
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported", lambda: True)
    try:
        assert not perf.cpu_native_mixed("bf16")
        assert perf.cpu_native_mixed("fp16")
        assert perf.cpu_native_mixed("fp32")
    finally:
        perf.cpu_native_mixed.cache_clear()
