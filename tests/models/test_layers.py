import pytest
import torch

from pcrl_lib.models.layers import ConvBNReLU, global_avg_pool, max_pool, resize_to


def test_tiny_inputs_skip_bf16_autocast_larger_ones_use_it():
    # oneDNN's bf16 weight gradient is intermittently NaN on 2x2x2 inputs (see conv_forward)
    layer = ConvBNReLU(3, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(3, 4, 2, 2, 2)).dtype == torch.float32
        assert layer(torch.randn(3, 4, 4, 4, 4)).dtype == torch.bfloat16


def test_ceil_mode_pooling_keeps_size_one_axes():
    assert max_pool(3)(torch.zeros(1, 1, 1, 3, 4)).shape == (1, 1, 1, 2, 2)


def test_global_avg_pool_on_channels_last():
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).view(2, 3, 2, 2, 2)
    cl = x.contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(global_avg_pool(cl), x.flatten(2).mean(2))


def test_resize_to_is_identity_for_matching_size():
    x = torch.randn(1, 2, 4, 4)
    assert resize_to(x, (4, 4)) is x
    assert resize_to(x, (8, 6)).shape == (1, 2, 8, 6)


def test_bad_spatial_dims():
    with pytest.raises(ValueError, match="spatial_dims"):
        ConvBNReLU(1, 2, 2)
