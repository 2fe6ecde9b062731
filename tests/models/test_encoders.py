import pytest
import torch

from pcrl_lib.models import ResNet18Encoder, UNetEncoder3D, build_encoder


@pytest.mark.parametrize(
    ("shape", "depth", "expected"),
    [
        # (input spatial, depth) -> spatial size of every level, rate 1 .. 2**depth
        (
            (64, 64, 32),
            5,
            [(64, 64, 32), (32, 32, 16), (16, 16, 8), (8, 8, 4), (4, 4, 2), (2, 2, 1)],
        ),
        ((16, 16, 16), 5, [(16,) * 3, (8,) * 3, (4,) * 3, (2,) * 3, (1,) * 3, (1,) * 3]),
        ((64, 64, 32), 3, [(64, 64, 32), (32, 32, 16), (16, 16, 8), (8, 8, 4)]),
    ],
)
def test_unet_encoder_3d_level_shapes(shape, depth, expected):
    enc = UNetEncoder3D(3, 1, depth=depth, width=0.125)
    feats = enc(torch.zeros(2, 1, *shape))
    assert [tuple(f.shape[2:]) for f in feats] == expected
    assert [f.shape[1] for f in feats] == enc.out_channels


def test_unet_encoder_3d_channels_paper_and_width():
    assert UNetEncoder3D(3, 1, depth=5).out_channels == [64, 128, 256, 512, 512, 512]
    assert UNetEncoder3D(3, 1, depth=5, width=0.25).out_channels == [16, 32, 64, 128, 128, 128]
    assert UNetEncoder3D(3, 4, depth=3).stages[0][0].conv.in_channels == 4


def test_unet_encoder_3d_official_size_parameter_count():
    # down_tr64..down_tr512 of the official model: conv weights + biases + BN affine
    enc = UNetEncoder3D(3, 1, depth=3)
    pairs = [(1, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512)]
    expected = sum(ci * co * 27 + co + 2 * co for ci, co in pairs)
    assert sum(p.numel() for p in enc.parameters()) == expected


def test_resnet18_encoder_levels_and_torchvision_names():
    enc = ResNet18Encoder()
    feats = enc(torch.zeros(1, 3, 64, 96))
    assert feats[0] is None
    assert [tuple(f.shape[1:]) for f in feats[1:]] == [
        (64, 32, 48),
        (64, 16, 24),
        (128, 8, 12),
        (256, 4, 6),
        (512, 2, 3),
    ]
    keys = set(enc.state_dict())
    assert "conv1.weight" in keys and "layer4.1.bn2.running_var" in keys
    assert not any(k.startswith("fc.") for k in keys)


def test_resnet18_encoder_other_channel_count():
    enc = ResNet18Encoder(in_channels=1)
    assert enc.conv1.weight.shape == (64, 1, 7, 7)
    assert enc(torch.zeros(2, 1, 32, 32))[-1].shape == (2, 512, 1, 1)


def test_build_encoder_rejects_bad_arguments():
    with pytest.raises(ValueError, match="spatial_dims"):
        build_encoder(4, 1)
    with pytest.raises(ValueError, match="2D ResNet-18"):
        build_encoder(2, 3, depth=3)
    with pytest.raises(ValueError, match="depth"):
        UNetEncoder3D(3, 1, depth=0)
    with pytest.raises(ValueError, match="width"):
        UNetEncoder3D(3, 1, width=0)
