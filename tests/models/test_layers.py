import pytest
import torch
import torch.nn.functional as F

from pcrl_lib.models.layers import (
    ConvBNReLU,
    MaxPool,
    global_avg_pool,
    max_pool,
    resize_to,
    upsample_conv,
    upsample_conv_is_cheaper,
    upsample_conv_kernel,
)


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


def _two_layers(x, conv_w, conv_b, up_w, up_b):
    dims = x.dim() - 2
    if up_w is None:
        u = F.interpolate(x, scale_factor=2, mode="nearest")
    else:
        u = (F.conv_transpose3d if dims == 3 else F.conv_transpose2d)(x, up_w, up_b, stride=2)
    return (F.conv3d if dims == 3 else F.conv2d)(u, conv_w, conv_b, padding=1)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("transposed", [True, False])
def test_upsample_conv_equals_up_then_conv_values_and_gradients(dims, transposed):
    g = torch.Generator().manual_seed(dims)
    kw = {"dtype": torch.float64, "generator": g}
    x = torch.randn(2, 5, *(3, 4, 2)[:dims], **kw).requires_grad_()
    conv_w = torch.randn(4, 6 if transposed else 5, *[3] * dims, **kw).requires_grad_()
    conv_b = torch.randn(4, **kw).requires_grad_()
    up_w = torch.randn(5, 6, *[2] * dims, **kw).requires_grad_() if transposed else None
    up_b = torch.randn(6, **kw).requires_grad_() if transposed else None
    leaves = [t for t in (x, conv_w, conv_b, up_w, up_b) if t is not None]
    weight = torch.randn(2, 4, *(6, 8, 4)[:dims], **kw)  # a generic upstream gradient

    expected = _two_layers(x, conv_w, conv_b, up_w, up_b)
    got = upsample_conv(x, conv_w, conv_b, up_w, up_b)
    assert got.shape == expected.shape == (2, 4, *(6, 8, 4)[:dims])
    torch.testing.assert_close(got, expected)  # borders too: bias only inside the image
    g_expected = torch.autograd.grad((expected * weight).sum(), leaves)
    g_got = torch.autograd.grad((got * weight).sum(), leaves)
    for a, b in zip(g_got, g_expected, strict=True):
        torch.testing.assert_close(a, b)


def test_upsample_conv_kernel_by_hand_1x1_channels():
    # 2D, one channel: up-sampling taps U[p], conv taps W[t]; K[k] = sum_{p - t + 2 = k}
    up = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    conv = torch.zeros(1, 1, 3, 3)
    conv[0, 0, 1, 1] = 1.0  # identity conv: K is U placed at k = p + 1
    k = upsample_conv_kernel(conv, up)
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 1:3, 1:3] = up[0, 0]
    assert torch.equal(k, expected)
    # nearest up-sampling: every U[p] = 1, so K counts the conv taps reaching each k
    k = upsample_conv_kernel(torch.ones(1, 1, 3, 3))
    row = torch.tensor([1.0, 2.0, 2.0, 1.0])
    assert torch.equal(k[0, 0], row[:, None] * row[None, :])


def test_upsample_conv_keeps_channels_last_and_bf16():
    x = torch.randn(2, 8, 4, 4, 4).contiguous(memory_format=torch.channels_last_3d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = upsample_conv(
            x,
            torch.randn(4, 8, 3, 3, 3),
            torch.randn(4),
            torch.randn(8, 8, 2, 2, 2),
            torch.randn(8),
        )
    assert y.dtype == torch.bfloat16
    assert y.is_contiguous(memory_format=torch.channels_last_3d)


def test_upsample_conv_is_cheaper_where_many_voxels_share_the_kernel():
    # the nsUNet's 3D full-resolution level at the paper's shapes: fused
    assert upsample_conv_is_cheaper(4 * 32 * 32 * 16, 128, 128, 64, 3, transposed=True)
    # a coarse level with 512 channels on few voxels: composing the kernel costs more
    assert not upsample_conv_is_cheaper(4 * 8 * 8 * 4, 512, 512, 256, 3, transposed=True)
    # nearest up-sampling composes for free: always cheaper (16 taps vs 4 x 9)
    assert upsample_conv_is_cheaper(1, 512, 512, 256, 2, transposed=False)


def test_max_pool_keeps_bf16_under_autocast():
    # autocast would pool in fp32 (and keep an fp32 copy for backward); the max is exact
    x = torch.randn(2, 3, 4, 4, 4).to(torch.bfloat16).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = max_pool(3)(x)
        assert y.dtype == torch.bfloat16
        assert torch.equal(y, F.max_pool3d(x.float(), 2).to(torch.bfloat16))
    assert MaxPool(2, 3, 2, 1)(torch.zeros(1, 1, 112, 112)).shape == (1, 1, 56, 56)
