"""Layer factories shared by the 2D and 3D networks.

One code path for both dimensionalities: every network in :mod:`pcrl_lib.models` asks these
factories for its convolution, normalisation and pooling layers by ``spatial_dims``, in the
manner of MONAI's ``monai.networks.layers.factories`` (Project-MONAI/MONAI).
"""

from __future__ import annotations

import itertools
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


class MaxPool(nn.Module):
    """Max pooling that keeps its input's dtype under autocast.

    CPU autocast runs max pooling in fp32: a bf16 input is cast up, and the fp32 copy (plus
    the int64 indices) is what the backward pass keeps - at the paper's 3D shapes an extra
    128 MiB per global view at full resolution. The maximum of bf16 values is exact in bf16,
    so here pooling simply runs in the input's dtype. No parameters.

    Args:
        spatial_dims: 2 or 3.
        kernel_size, stride, padding, ceil_mode: as ``nn.MaxPool2d`` / ``nn.MaxPool3d``.
    """

    def __init__(
        self,
        spatial_dims: int,
        kernel_size: int = 2,
        stride: int = 2,
        padding: int = 0,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.pool = _MAXPOOL[check_spatial_dims(spatial_dims)](
            kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, C, *S')`` in ``x.dtype``."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.pool(x)


def max_pool(spatial_dims: int) -> nn.Module:
    """Max-pooling by 2 with ``ceil_mode=True`` (a :class:`MaxPool`).

    ``ceil_mode`` lets a size-1 axis survive another pooling (a 16^3 local view reaches
    1^3 at rate 16 and stays 1^3 at rate 32), so five levels fit small inputs.
    """
    return MaxPool(spatial_dims, kernel_size=2, stride=2, ceil_mode=True)


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


def upsample_conv_kernel(
    conv_weight: torch.Tensor, up_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """The 4x4(x4) stride-2 transposed-convolution kernel equal to a 2x up-sampling followed
    by a 3x3(x3) convolution with padding 1.

    Per axis, up-sampling tap ``p`` (0, 1) and convolution tap ``t`` (0, 1, 2) meet in tap
    ``k = p - t + 2`` of the composed kernel, so the kernel is the full convolution of the
    two kernels over their shared channels:
    ``K[i, o, k] = sum_c sum_{p - t + 2 = k} U[i, c, p] W[o, c, t]``.

    Args:
        conv_weight: ``W``, ``(O, C, 3, 3[, 3])``, the convolution after the up-sampling.
        up_weight: ``U``, ``(I, C, 2, 2[, 2])``, a kernel-2 stride-2 transposed
            convolution; ``None`` for nearest-neighbour up-sampling (every ``U[:, :, p]`` the
            identity, ``I = C``).

    Returns:
        ``(I, O, 4, 4[, 4])``, for ``conv_transpose{2,3}d`` with stride 2 and padding 1.
    """
    dims = conv_weight.dim() - 2
    flipped = conv_weight.flip(list(range(2, dims + 2))).transpose(0, 1)  # (C, O, 3, ...)
    if up_weight is not None:
        transposed = F.conv_transpose3d if dims == 3 else F.conv_transpose2d
        return transposed(up_weight, flipped)
    padded = F.pad(flipped, [1, 1] * dims)
    shifted = (
        padded[(..., *(slice(1 - p, 5 - p) for p in ps))]
        for ps in itertools.product(range(2), repeat=dims)
    )
    return sum(shifted)


def upsample_conv(
    x: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None,
    up_weight: torch.Tensor | None = None,
    up_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``conv(up(x))`` for a 2x up-sampling ``up`` and a 3x3(x3) convolution with padding 1,
    computed as one stride-2 transposed convolution with a 4x4(x4) kernel.

    The same function (and gradients) as the two layers, with a different order of the
    sums: the composed kernel (:func:`upsample_conv_kernel`) acts on the coarse input, so
    the up-sampled tensor is never built and each coarse voxel costs ``4^d I O``
    multiply-adds instead of ``2^d (I C + 3^d C O)`` (3D: 2.4-3x faster in the nsUNet's
    full-resolution decoder level on a CPU). ``up_bias`` is added where the up-sampled map
    exists and the convolution's zero padding is kept, as in the two-layer computation
    (through an extra constant input channel).

    Args:
        x: ``(B, I, *S)``.
        conv_weight, conv_bias: ``(O, C, 3, 3[, 3])``, ``(O,)`` or ``None``.
        up_weight, up_bias: the kernel-2 stride-2 transposed convolution ``(I, C, 2, ...)``,
            ``(C,)``, or ``None`` for nearest-neighbour up-sampling.

    Returns:
        ``(B, O, *2S)``, channels-last when ``x`` is.
    """
    dims = x.dim() - 2
    if up_bias is not None:
        # The up-sampling's bias as the weight of a constant input channel: it then reaches
        # an output voxel only through taps inside the image, as in the two-layer version.
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # keeps channels-last
        bias_taps = up_bias.view(1, -1, *[1] * dims).expand(1, -1, *[2] * dims)
        up_weight = torch.cat([up_weight, bias_taps.to(up_weight.dtype)], dim=0)
    wdt = torch.promote_types(conv_weight.dtype, torch.float32)  # compose in fp32 at least
    with torch.autocast(device_type=x.device.type, enabled=False):
        up_w = None if up_weight is None else up_weight.to(wdt)
        kernel = upsample_conv_kernel(conv_weight.to(wdt), up_w)
    transposed = F.conv_transpose3d if dims == 3 else F.conv_transpose2d
    out = transposed(x, kernel, conv_bias, stride=2, padding=1)
    # oneDNN keeps a channels-last input's layout where it has native kernels for the type;
    # its emulated bf16 (a CPU without AVX-512) returns a contiguous map: lay it out again
    layout = torch.channels_last_3d if dims == 3 else torch.channels_last
    if x.is_contiguous(memory_format=layout) and not x.is_contiguous():
        out = out.contiguous(memory_format=layout)
    return out


def upsample_conv_is_cheaper(
    coarse_voxels: int,
    in_channels: int,
    mid_channels: int,
    out_channels: int,
    spatial_dims: int,
    transposed: bool,
) -> bool:
    """Whether :func:`upsample_conv` needs fewer multiply-adds than the two layers, for
    ``coarse_voxels`` input voxels (batch included). Composing the kernels costs
    ``6^d O C I`` per call, in fp32 (slower per multiply-add than the bf16 convolutions)
    and again in the backward pass, so it counts four times: coarse levels with many
    channels and few voxels do not repay it (in the 3D nsUNet at the paper's shapes only
    rates 1 and 2 are fused)."""
    d = spatial_dims
    fused = coarse_voxels * 4**d * in_channels * out_channels
    separate = coarse_voxels * 2**d * 3**d * mid_channels * out_channels
    if transposed:
        fused += 4 * 6**d * out_channels * mid_channels * in_channels
        separate += coarse_voxels * 2**d * in_channels * mid_channels
    return fused < separate


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


def batch_norms(module: nn.Module) -> list[nn.Module]:
    """Every batch-norm layer (1D, 2D or 3D) inside ``module``."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Inside this context the batch norms of ``module`` still normalise with batch
    statistics (train mode) but leave ``running_mean``, ``running_var`` and
    ``num_batches_tracked`` as they were."""
    bns = batch_norms(module)
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
