"""The non-skip U-Net (nsUNet) and its feature pyramid (PCRLv2, Sec. 3.1, Eq. 1, Fig. 3).

The decoder climbs from the encoder's bottleneck (rate ``2**D``) back to full resolution,
one level per factor of two::

    phi_{k} = Conv-BN-ReLU(Conv-BN-ReLU(Up(phi_{k+1})))            (Eq. 1)

without skip connections, so every level must carry the image's information itself; the
levels ``phi`` at rates 16, 8, 4, 2, 1 form the feature pyramid on which PCRLv2 restores
pixels and compares features. ``skip=True`` concatenates the encoder feature of the same
rate after ``Up`` (an ordinary U-Net), for the Table I ablation and Fig. 6.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pcrl_lib.models.encoders import build_encoder
from pcrl_lib.models.layers import (
    ConvBNReLU,
    check_spatial_dims,
    checkpointed,
    conv_transpose,
    resize_to,
    upsample_conv,
    upsample_conv_is_cheaper,
)

#: What :class:`NSUNet` can recompute in the backward pass (see its ``checkpoint``).
CHECKPOINT_CHOICES = ("none", "encoder", "all")


class Up(nn.Module):
    """Up-sampling by 2: a 2x2(x2) transposed conv keeping the channels (the official 3D
    decoder) or nearest-neighbour interpolation (the official 2D decoder)."""

    def __init__(self, spatial_dims: int, channels: int, mode: str) -> None:
        super().__init__()
        if mode not in ("transpose", "nearest"):
            raise ValueError(f"upsample mode must be 'transpose' or 'nearest', got {mode!r}")
        self.mode = mode
        if mode == "transpose":
            self.conv = conv_transpose(spatial_dims, channels, channels, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, C, *2S)``."""
        if self.mode == "transpose":
            return self.conv(x)
        return F.interpolate(x, scale_factor=2, mode="nearest")


class DecoderBlock(nn.Module):
    """One decoder level (Eq. 1): ``Up``, optional skip concatenation, two ``ConvBNReLU``."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        skip_channels: int = 0,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        self.up = Up(spatial_dims, in_channels, upsample)
        self.conv1 = ConvBNReLU(spatial_dims, in_channels + skip_channels, out_channels)
        self.conv2 = ConvBNReLU(spatial_dims, out_channels, out_channels)
        self.skip_channels = skip_channels

    def forward(
        self, x: torch.Tensor, size: Sequence[int], skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, C_in, *S) -> (B, C_out, *size)``; ``skip`` is ``(B, C_skip, *size)``.

        Where ``size`` is exactly ``2S`` (at least 3 voxels per axis) and it saves work,
        ``Up`` and the first convolution run as one transposed convolution
        (:func:`~pcrl_lib.models.layers.upsample_conv`): the same function, without the
        up-sampled tensor.
        """
        if self.skip_channels and skip is None:
            raise ValueError("this decoder block was built with skip channels; got no skip")
        if not self.skip_channels and skip is not None:
            raise ValueError("this decoder block was built without skip channels; got a skip")
        size = tuple(size)
        if self._fuse(x, size):
            return self.conv2(self.conv1.act(self.conv1.bn(self._upsample_conv(x, skip))))
        x = resize_to(self.up(x), size)
        if self.skip_channels:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))

    def _fuse(self, x: torch.Tensor, size: tuple[int, ...]) -> bool:
        if size != tuple(2 * s for s in x.shape[2:]) or min(size) < 3:
            return False
        conv1 = self.conv1.conv
        return upsample_conv_is_cheaper(
            x.shape[0] * x.shape[2:].numel(),
            x.shape[1],
            conv1.in_channels - self.skip_channels,
            conv1.out_channels,
            x.dim() - 2,
            self.up.mode == "transpose",
        )

    def _upsample_conv(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        conv1 = self.conv1.conv
        up = self.up.conv if self.up.mode == "transpose" else None
        n_up = conv1.in_channels - self.skip_channels
        y = upsample_conv(
            x,
            conv1.weight[:, :n_up],
            conv1.bias,
            None if up is None else up.weight,
            None if up is None else up.bias,
        )
        if self.skip_channels:
            convolve = F.conv3d if skip.dim() == 5 else F.conv2d
            y = y + convolve(skip, conv1.weight[:, n_up:], padding=1)
        return y


def default_decoder_channels(spatial_dims: int, encoder_channels: Sequence[int | None]) -> list:
    """Decoder channels per level, finest first (index ``k`` = rate ``2**k``).

    2D: 16, 32, 64, 128, 256 (the official smp decoder). 3D: the encoder's channels at the
    same rate (the official 3D decoder: 64, 128, 256 at rates 1, 2, 4).
    """
    depth = len(encoder_channels) - 1
    if spatial_dims == 2:
        return [16 * 2**k for k in range(depth)]
    return [int(c) for c in encoder_channels[:depth]]


class NSUNet(nn.Module):
    """Non-skip U-Net with a feature pyramid, 2D or 3D (PCRLv2 Sec. 3.1, Eq. 1).

    Args:
        spatial_dims: 2 (ResNet-18 encoder) or 3 (U-Net-family encoder).
        in_channels: image channels.
        depth: number of down-samplings (3D); the bottleneck has rate ``2**depth`` and the
            decoder has ``depth`` levels at rates ``2**(depth-1) .. 1``. 2D is always 5.
        width: channel multiplier of the 3D encoder (and, by default, of its decoder).
        skip: add U-Net skip connections (Table I ablation; the paper's method has none).
        decoder_channels: channels per decoder level, finest first (default
            :func:`default_decoder_channels`).
        upsample: ``"transpose"`` or ``"nearest"`` (default: 3D transpose, 2D nearest, as
            the official code).
        checkpoint: what to recompute in the backward pass instead of storing its
            activations (same results, less memory, more time): ``"none"``; ``"encoder"``,
            the 3D encoder's full-resolution stage (the cheapest memory to give back: at
            the paper's 3D shapes 0.25 GB less peak for 3.4 % more FLOPs per step);
            ``"all"``, also the decoder's full-resolution level. The 2D ResNet has no
            full-resolution stage.

    Shapes:
        ``forward(x)`` with ``x`` of shape ``(B, in_channels, *S)`` returns a dict
        ``{rate: phi}``: the bottleneck at ``2**depth`` and decoder levels down to
        ``finest_rate``, each ``(B, level_channels[rate], *ceil(S / rate))``.

    Example:
        >>> net = NSUNet(3, in_channels=1, depth=5, width=0.125)
        >>> pyr = net(torch.zeros(2, 1, 64, 64, 32))
        >>> [tuple(pyr[r].shape[2:]) for r in (32, 16, 1)]
        [(2, 2, 1), (4, 4, 2), (64, 64, 32)]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int = 1,
        depth: int = 5,
        width: float = 1.0,
        skip: bool = False,
        decoder_channels: Sequence[int] | None = None,
        upsample: str | None = None,
        checkpoint: str = "none",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if checkpoint not in CHECKPOINT_CHOICES:
            raise ValueError(f"checkpoint must be one of {CHECKPOINT_CHOICES}, got {checkpoint!r}")
        self.checkpoint = checkpoint
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.skip = skip
        self.encoder = build_encoder(spatial_dims, in_channels, depth=depth, width=width)
        self.depth = depth = self.encoder.depth
        if hasattr(self.encoder, "checkpoint_first_stage"):
            self.encoder.checkpoint_first_stage = checkpoint != "none"
        enc_ch = self.encoder.out_channels
        dec_ch = (
            list(decoder_channels)
            if decoder_channels is not None
            else default_decoder_channels(spatial_dims, enc_ch)
        )
        if len(dec_ch) != depth:
            raise ValueError(f"decoder_channels needs {depth} entries (finest first), got {dec_ch}")
        upsample = upsample or ("transpose" if spatial_dims == 3 else "nearest")
        blocks, c_in = [], enc_ch[depth]
        for k in range(depth - 1, -1, -1):  # coarse to fine
            skip_c = (enc_ch[k] or 0) if skip else 0
            blocks.append(DecoderBlock(spatial_dims, c_in, dec_ch[k], skip_c, upsample))
            c_in = dec_ch[k]
        self.blocks = nn.ModuleList(blocks)
        self.level_channels: dict[int, int] = {2**depth: int(enc_ch[depth])}
        self.level_channels.update({2**k: dec_ch[k] for k in range(depth)})

    @property
    def rates(self) -> list[int]:
        """Decoder rates, coarse to fine (e.g. ``[16, 8, 4, 2, 1]``)."""
        return [2**k for k in range(self.depth - 1, -1, -1)]

    @property
    def bottleneck_rate(self) -> int:
        """Down-sampling rate of the encoder output (e.g. 32)."""
        return 2**self.depth

    def forward(self, x: torch.Tensor, finest_rate: int = 1) -> dict[int, torch.Tensor]:
        """Encode ``x`` and decode down to ``finest_rate`` only (coarser levels are needed
        on the way; finer ones are skipped, which is where the cost is)."""
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input (B, {self.in_channels}, {'*' * self.spatial_dims}) with "
                f"{self.spatial_dims} spatial dims, got {tuple(x.shape)}"
            )
        if finest_rate not in self.level_channels:
            raise ValueError(f"finest_rate must be one of {sorted(self.level_channels)}")
        return self.decode(self.encoder(x), x.shape[2:], finest_rate)

    def decode(
        self, feats: Sequence[torch.Tensor | None], spatial: Sequence[int], finest_rate: int = 1
    ) -> dict[int, torch.Tensor]:
        """The decoder alone, on encoder features ``feats`` (as ``self.encoder`` returns
        them) of an input of size ``spatial`` - for methods that mix or swap features
        between encoders (PCRLv1's hybrid branch). Returns the pyramid as :meth:`forward`."""
        pyramid = {self.bottleneck_rate: feats[self.depth]}
        h = feats[self.depth]
        for block, k in zip(self.blocks, range(self.depth - 1, -1, -1), strict=True):
            if 2**k < finest_rate:
                break
            size = feats[k].shape[2:] if feats[k] is not None else [-(-s // 2**k) for s in spatial]
            skip = feats[k] if self.skip else None
            if k == 0 and self.checkpoint == "all" and self.training and torch.is_grad_enabled():
                h = checkpointed(block, block, h, size, skip)
            else:
                h = block(h, size, skip)
            pyramid[2**k] = h
        return pyramid
