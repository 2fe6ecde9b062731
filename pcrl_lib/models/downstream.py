"""Downstream models that take a pre-trained encoder (PCRLv2 Sec. 4.2).

- :class:`Classifier`: encoder, global average pooling, one linear layer to
  ``n_classes`` logits (14 sigmoid outputs for NIH ChestX-ray; 1 for LUNA nodule
  candidates). Trained with BCE on the logits.
- :class:`SegmentationUNet`: the same encoder with a new decoder *with* skip connections
  (an ordinary U-Net) and a 1x1 head to ``n_classes`` logits at full resolution (BraTS
  WT/TC/ET from four modalities, LiTS liver). Trained with the Dice loss.

Both expose ``encoder`` so that :func:`load_pretrained_encoder` can fill it from a
checkpoint of this library or from the official PCRLv2 files.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from pcrl_lib.models.checkpoints import LoadReport, load_encoder
from pcrl_lib.models.encoders import build_encoder
from pcrl_lib.models.layers import conv, global_avg_pool
from pcrl_lib.models.nsunet import NSUNet


def _encoder_kwargs(spatial_dims: int, n_classes: int, depth: int, width: float) -> dict:
    """Checks ``n_classes``; ``depth``/``width`` for a 3D encoder, nothing for ResNet-18."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    return {"depth": depth, "width": width} if spatial_dims == 3 else {}


class Classifier(nn.Module):
    """Encoder + GAP + linear: ``(B, C, *S) -> (B, n_classes)`` logits.

    Args:
        spatial_dims: 2 (ResNet-18) or 3 (U-Net-family encoder).
        in_channels: image channels.
        n_classes: number of outputs (multi-label: each a sigmoid).
        depth, width: of the 3D encoder (must match the pre-trained one; 2D ignores them).
        dropout: dropout before the linear layer.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        n_classes: int,
        depth: int = 5,
        width: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        kw = _encoder_kwargs(spatial_dims, n_classes, depth, width)
        self.encoder = build_encoder(spatial_dims, in_channels, **kw)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(int(self.encoder.out_channels[-1]), n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, n_classes)`` logits, in fp32 also under autocast.

        The pooling and the linear layer run in fp32: bf16 logits keep 8 significant bits,
        which ties the scores of a barely trained model (seen: all 127 LUNA test
        candidates at one value, AUROC exactly 0.5), and AUROC ranks the scores.
        """
        features = self.encoder(x)[-1]
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.fc(self.dropout(global_avg_pool(features.float())))


class SegmentationUNet(nn.Module):
    """U-Net with skip connections on the pre-trainable encoder: ``(B, C, *S) ->
    (B, n_classes, *S)`` logits.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels (4 for BraTS).
        n_classes: output channels (3 for BraTS WT/TC/ET, 1 for the LiTS liver).
        depth, width: of the 3D encoder (must match the pre-trained one; 2D ignores them).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        n_classes: int,
        depth: int = 5,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        kw = _encoder_kwargs(spatial_dims, n_classes, depth, width)
        self.net = NSUNet(spatial_dims, in_channels, skip=True, **kw)
        self.head = conv(spatial_dims, self.net.level_channels[1], n_classes, kernel_size=1)

    @property
    def encoder(self) -> nn.Module:
        """The encoder to initialise from pre-training."""
        return self.net.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, n_classes, *S)``."""
        return self.head(self.net(x)[1])


def load_pretrained_encoder(model: nn.Module, checkpoint: str | os.PathLike | dict) -> LoadReport:
    """Fill ``model.encoder`` from a checkpoint (this library's, or an official PCRLv2 file);
    every encoder tensor must be found. The rest of the model keeps its initialisation."""
    return load_encoder(model.encoder, checkpoint)
