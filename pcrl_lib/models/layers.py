"""Layer factories shared by the 2D and 3D networks.

One code path for both dimensionalities: every network in :mod:`pcrl_lib.models` asks these
factories for its convolution, normalisation and pooling layers by ``spatial_dims``, in the
manner of MONAI's ``monai.networks.layers.factories`` (Project-MONAI/MONAI).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BN = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAXPOOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


def check_spatial_dims(spatial_dims: int) -> int:
    """Return ``spatial_dims`` if it is 2 or 3, else raise ``ValueError``."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def conv(spatial_dims: int, *args, **kwargs) -> nn.Module:
    """``nn.Conv2d`` or ``nn.Conv3d`` with the given arguments."""
    return _CONV[check_spatial_dims(spatial_dims)](*args, **kwargs)


def conv_transpose(spatial_dims: int, *args, **kwargs) -> nn.Module:
    """``nn.ConvTranspose2d`` or ``nn.ConvTranspose3d`` with the given arguments."""
    return _CONV_T[check_spatial_dims(spatial_dims)](*args, **kwargs)


def batch_norm(spatial_dims: int, num_features: int) -> nn.Module:
    """``nn.BatchNorm2d`` or ``nn.BatchNorm3d`` over ``num_features`` channels."""
    return _BN[check_spatial_dims(spatial_dims)](num_features)


def max_pool(spatial_dims: int) -> nn.Module:
    """Max-pooling by 2 with ``ceil_mode=True``.

    ``ceil_mode`` lets a size-1 axis survive another pooling (a 16^3 local view reaches
    1^3 at rate 16 and stays 1^3 at rate 32), so five levels fit small inputs.
    """
    return _MAXPOOL[check_spatial_dims(spatial_dims)](kernel_size=2, stride=2, ceil_mode=True)


class ConvBNReLU(nn.Module):
    """3x3(x3) convolution (padding 1, with bias), batch norm and ReLU.

    The unit of the 3D U-Net / Models Genesis family and of the paper's decoder (Eq. 1).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input ``(B, in_channels, *S)``.
        out_channels: channels of the output ``(B, out_channels, *S)``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv(spatial_dims, in_channels, out_channels, kernel_size=3, padding=1)
        self.bn = batch_norm(spatial_dims, out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *S) -> (B, C_out, *S)``."""
        return self.act(self.bn(conv_forward(self.conv, x)))


def conv_forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3(x3) convolution, in fp32 when a spatial axis is shorter than 3 under
    autocast.

    On the CPU, oneDNN's bf16 weight gradient of a padded 3x3x3 convolution on inputs of
    2x2x2 (or 2x2x1) voxels - the pyramid's coarse levels of small views - is intermittently
    NaN (seen about once in 60 calls with torch 2.14.1); fp32 is not affected, and these
    tensors are tiny, so they skip autocast at no measurable cost.
    """
    if torch.is_autocast_enabled(x.device.type) and min(x.shape[2:]) < 3:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return layer(x.float())
    return layer(x)


def resize_to(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Resize ``(B, C, *S)`` to ``(B, C, *size)`` with (bi/tri)linear interpolation.

    Returns ``x`` itself when it already has that size.
    """
    if tuple(x.shape[2:]) == tuple(size):
        return x
    mode = "bilinear" if x.dim() == 4 else "trilinear"
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling ``(B, C, *S) -> (B, C)`` (the GAP of Eq. 5).

    A mean over the spatial axes (no ``flatten``, which would copy a channels-last tensor).
    """
    return x.mean(dim=tuple(range(2, x.dim())))


@contextmanager
def frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Inside this context the batch norms of ``module`` still normalise with batch
    statistics (train mode) but leave ``running_mean``, ``running_var`` and
    ``num_batches_tracked`` as they were."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [
        (m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
        for m in bns
    ]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(bns, saved, strict=True):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def checkpointed(module: nn.Module, fn: Callable, *args):
    """``fn(*args)`` with activation checkpointing: its inner activations are dropped after
    the forward pass and recomputed in the backward pass (memory for time). The
    recomputation does not update the batch-norm running statistics of ``module`` a second
    time, so results and state equal those of a plain call."""
    calls = [0]

    def run(*a):
        calls[0] += 1
        if calls[0] == 1:
            return fn(*a)
        with frozen_bn_stats(module):
            return fn(*a)

    return torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False)
