"""Encoders that return a feature pyramid: the 2D ResNet-18 and the 3D U-Net-family encoder.

Both return a list ``features`` indexed by level ``k``: ``features[k]`` has down-sampling
rate ``2**k`` relative to the input (``None`` where the encoder has no feature at that rate).
``features[-1]`` is the bottleneck. ``out_channels[k]`` gives each level's channel count.
"""

from __future__ import annotations

import torch
from torch import nn

from pcrl_lib.models.layers import ConvBNReLU, MaxPool, checkpointed, conv, max_pool


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class UNetEncoder3D(nn.Module):
    """Encoder of the 3D U-Net / Models Genesis family (Zhou et al., MedIA 2021).

    Stage ``k`` (``k = 0 .. depth``) is a pair of :class:`ConvBNReLU` with channels
    ``32 * 2**k`` then ``64 * 2**k`` (capped at 512, the family's widest layer), preceded by a
    2x max-pool for ``k >= 1``. Stages 0-3 match the official PCRLv2 3D encoder exactly
    (``down_tr64 .. down_tr512``: 1->32->64, 64->64->128, 128->128->256, 256->256->512;
    RL4M/PCRLv2, ``models/pcrlv2_model_3d.py``), so the official checkpoint loads into it.

    How five levels fit a 64x64x32 input (``depth=5``): stages 4 and 5 keep 512 channels and
    pooling uses ``ceil_mode``, so the rates 1, 2, 4, 8, 16, 32 have sizes 64x64x32, 32x32x16,
    16x16x8, 8x8x4, 4x4x2 and the bottleneck 2x2x1; a 16^3 local view goes 16, 8, 4, 2, 1, 1.
    ``depth=3`` is the official model (bottleneck at rate 8).

    Although written for 3D, ``spatial_dims=2`` builds the same family in 2D.

    Args:
        spatial_dims: 3 (or 2).
        in_channels: input channels (1 for CT, 4 for BraTS).
        depth: number of 2x down-samplings; the bottleneck has rate ``2**depth``.
        width: channel multiplier (1.0 is the paper's configuration; 0.25 for CPU profiles).
    """

    def __init__(
        self, spatial_dims: int = 3, in_channels: int = 1, depth: int = 5, width: float = 1.0
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.depth = depth
        stages, out_channels, c_in = [], [], in_channels
        for k in range(depth + 1):
            c_mid = _scaled(min(32 * 2**k, 512), width)
            c_out = _scaled(min(64 * 2**k, 512), width)
            stages.append(
                nn.Sequential(
                    ConvBNReLU(spatial_dims, c_in, c_mid), ConvBNReLU(spatial_dims, c_mid, c_out)
                )
            )
            out_channels.append(c_out)
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.pool = max_pool(spatial_dims)
        self.out_channels: list[int | None] = out_channels
        #: recompute the full-resolution stage in the backward pass (saves memory)
        self.checkpoint_first_stage = False

    def forward(self, x: torch.Tensor) -> list[torch.Tensor | None]:
        """``(B, C_in, *S)`` -> list of ``depth + 1`` features, level ``k`` at rate ``2**k``."""
        features: list[torch.Tensor | None] = []
        for k, stage in enumerate(self.stages):
            if k == 0 and self.checkpoint_first_stage and self.training and torch.is_grad_enabled():
                x = checkpointed(stage, stage, x)
            else:
                x = stage(x if k == 0 else self.pool(x))
            features.append(x)
        return features


class ResNet18Encoder(nn.Module):
    """torchvision's ResNet-18 (``weights=None``) as a 2D pyramid encoder.

    The submodules keep torchvision's names (``conv1``, ``bn1``, ``layer1`` .. ``layer4``; no
    ``fc``), so ``state_dict()`` matches the official PCRLv2 2D checkpoint and torchvision's
    ImageNet weights key for key. Levels: rate 2 (stem, 64 ch), 4 (``layer1``, 64),
    8 (``layer2``, 128), 16 (``layer3``, 256), 32 (``layer4``, 512); rate 1 has no feature.

    Args:
        in_channels: input channels; 3 keeps torchvision's stem, anything else replaces
            ``conv1`` by a freshly initialised one.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        import torchvision  # here, not at the top: 165 MB and 1.4 s that 3D work never needs

        net = torchvision.models.resnet18(weights=None)
        if in_channels != 3:
            net.conv1 = conv(2, in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.spatial_dims = 2
        self.in_channels = in_channels
        self.depth = 5
        self.conv1, self.bn1, self.relu = net.conv1, net.bn1, net.relu
        self.maxpool = MaxPool(2, kernel_size=3, stride=2, padding=1)  # torchvision's, dtype kept
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.out_channels: list[int | None] = [None, 64, 64, 128, 256, 512]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor | None]:
        """``(B, C_in, H, W)`` -> ``[None, f2, f4, f8, f16, f32]`` (H, W divisible by 32)."""
        stem = self.relu(self.bn1(self.conv1(x)))
        f4 = self.layer1(self.maxpool(stem))
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        f32 = self.layer4(f16)
        return [None, stem, f4, f8, f16, f32]


def build_encoder(
    spatial_dims: int, in_channels: int, depth: int = 5, width: float = 1.0
) -> nn.Module:
    """The paper's encoder for ``spatial_dims``: ResNet-18 in 2D, the U-Net family in 3D.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        depth: 3D only; 2D ResNet-18 always has depth 5.
        width: 3D only; channel multiplier.
    """
    if spatial_dims == 2:
        if depth != 5 or width != 1.0:
            raise ValueError("the 2D ResNet-18 encoder has depth 5 and width 1.0 only")
        return ResNet18Encoder(in_channels)
    if spatial_dims == 3:
        return UNetEncoder3D(3, in_channels, depth=depth, width=width)
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
