"""The PCRLv2 task heads, one of each per pyramid scale, shared by the two siamese views.

- :class:`RestorationHead`: ``Conv(Conv-BN-ReLU)`` back to the input's channels (Sec. 3.2).
- :class:`ComparisonHead`: ``v = BN(GAP(phi))`` (Eq. 5).
- :class:`Predictor`: ``p = FC-BN-ReLU-FC(v)`` (Eq. 6), as SimSiam's predictor
  (Chen & He, CVPR 2021; facebookresearch/simsiam).
"""

from __future__ import annotations

import torch
from torch import nn

from pcrl_lib.models.layers import ConvBNReLU, batch_norm, conv, conv_forward, global_avg_pool


class RestorationHead(nn.Module):
    """Pixel-restoration head of one pyramid level (Sec. 3.2).

    ``style="paper"``: ``Conv1x1(Conv-BN-ReLU(phi))`` back to the image's channels.
    ``style="light"``: ``BN(Conv3x3(phi))`` straight to the image's channels - the official
    3D code's ``deep_supervision_head`` (with ``activation="sigmoid"``).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels ``C`` of the pyramid level.
        out_channels: channels of the restored image (the input's channel count).
        activation: ``"none"`` (the paper) or ``"sigmoid"`` (the official 3D code, whose
            targets lie in [0, 1]).
        style: ``"paper"`` or ``"light"``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        activation: str = "none",
        style: str = "paper",
    ) -> None:
        super().__init__()
        if activation not in ("none", "sigmoid"):
            raise ValueError(f"activation must be 'none' or 'sigmoid', got {activation!r}")
        if style not in ("paper", "light"):
            raise ValueError(f"style must be 'paper' or 'light', got {style!r}")
        if style == "paper":
            self.block = ConvBNReLU(spatial_dims, in_channels, in_channels)
            self.out = conv(spatial_dims, in_channels, out_channels, kernel_size=1)
        else:
            self.conv = conv(spatial_dims, in_channels, out_channels, kernel_size=3, padding=1)
            self.bn = batch_norm(spatial_dims, out_channels)
        self.style = style
        self.activation = activation

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S_k) -> (B, out_channels, *S_k)`` at the level's own resolution."""
        y = (
            self.out(self.block(phi))
            if self.style == "paper"
            else self.bn(conv_forward(self.conv, phi))
        )
        return torch.sigmoid(y) if self.activation == "sigmoid" else y


class ComparisonHead(nn.Module):
    """``v = BN(GAP(phi))`` (Eq. 5): global average pooling then 1D batch norm.

    Args:
        channels: channels ``C`` of the pyramid level; ``v`` has shape ``(B, C)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, C)``."""
        return self.bn(global_avg_pool(phi))


class Predictor(nn.Module):
    """``p = FC(ReLU(BN(FC(v))))`` (Eq. 6) with a hidden layer twice as wide as the input.

    Args:
        in_dim: dimension of ``v``.
        out_dim: dimension of ``p`` (``in_dim`` for pairwise comparison; the other scale's
            dimension for crossed comparison, Table II).
        hidden_dim: hidden width (default ``2 * in_dim``, as the official code).
    """

    def __init__(self, in_dim: int, out_dim: int | None = None, hidden_dim: int | None = None):
        super().__init__()
        out_dim = in_dim if out_dim is None else out_dim
        hidden_dim = 2 * in_dim if hidden_dim is None else hidden_dim
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.bn = nn.BatchNorm1d(hidden_dim)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim) -> (B, out_dim)``."""
        return self.fc2(self.act(self.bn(self.fc1(v))))
