"""Restoration baselines on one U-Net with skips: Models Genesis, TransVW, Rubik's cube++.

All three restore a clean crop from a transformed one with an encoder-decoder and MSE; they
differ in the transformation (:mod:`pcrl_lib.methods.inputs`) and TransVW adds a visual-word
classifier. Batches: ``{"input", "target"}`` (+ ``"label"`` for TransVW), ``(B, C, *S)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pcrl_lib.losses import restoration_loss
from pcrl_lib.methods.base import require_keys
from pcrl_lib.models.layers import conv, global_avg_pool
from pcrl_lib.models.nsunet import NSUNet


class Restorer(nn.Module):
    """U-Net (with skips) + 1x1 conv + sigmoid: ``(B, C, *S) -> (B, C, *S)`` in [0, 1].

    Args:
        spatial_dims, in_channels, depth, width: the backbone (as the downstream U-Net).
    """

    name = "Restorer"

    def __init__(
        self, spatial_dims: int = 3, in_channels: int = 1, depth: int = 5, width: float = 1.0
    ) -> None:
        super().__init__()
        self.net = NSUNet(spatial_dims, in_channels, depth, width, skip=True)
        self.head = conv(spatial_dims, self.net.level_channels[1], in_channels, kernel_size=1)

    @property
    def encoder(self) -> nn.Module:
        """The encoder that downstream tasks fine-tune."""
        return self.net.encoder

    def restore(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The restored image and the bottleneck features."""
        pyramid = self.net(x)
        return torch.sigmoid(self.head(pyramid[1]).float()), pyramid[self.net.bottleneck_rate]

    def forward(
        self, batch: dict[str, torch.Tensor], progress: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """``{"loss": MSE(restore(input), target)}``."""
        require_keys(batch, ("input", "target"), self.name)
        restored, _ = self.restore(batch["input"])
        loss = restoration_loss(restored, batch["target"])
        return {"loss": loss, "restoration": loss.detach()}


class ModelsGenesis(Restorer):
    """Models Genesis (Zhou et al., MICCAI 2019; MedIA 2021; public code:
    MrGiovanni/ModelsGenesis): restore the original sub-volume from its Models Genesis
    corruption (:class:`pcrl_lib.methods.inputs.GenesisInputs`) with MSE."""

    name = "ModelsGenesis"


class RubikCubePP(Restorer):
    """Rubik's cube++ (Tao et al., MICCAI 2020, "Revisiting Rubik's cube: self-supervised
    learning with volume-wise transformation for 3D medical image segmentation"): an
    encoder-decoder restores the original volume from one whose 2x2x2 sub-cubes were turned
    layer by layer (:class:`pcrl_lib.methods.inputs.RubikInputs`). The paper adds an
    adversarial loss to the voxel-wise one; this implementation keeps the MSE only."""

    name = "RubikCubePP"


class TransVW(Restorer):
    """TransVW (Haghighi et al., IEEE TMI 2021; public code: fhaghighi/TransVW): restore a
    visual word from exactly one Models Genesis corruption and classify which word it is,
    ``L = MSE + 0.01 * CE`` (:class:`pcrl_lib.methods.inputs.VisualWordInputs`).

    Args:
        n_words: number of visual-word classes. ce_weight: the classification weight (0.01).
    """

    name = "TransVW"

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        n_words: int = 50,
        depth: int = 5,
        width: float = 1.0,
        ce_weight: float = 0.01,
    ) -> None:
        super().__init__(spatial_dims, in_channels, depth, width)
        self.ce_weight = ce_weight
        self.classifier = nn.Linear(self.net.level_channels[self.net.bottleneck_rate], n_words)

    def forward(
        self, batch: dict[str, torch.Tensor], progress: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """``{"loss": MSE + ce_weight * CE, "restoration", "classification"}``."""
        require_keys(batch, ("input", "target", "label"), self.name)
        restored, bottleneck = self.restore(batch["input"])
        mse = restoration_loss(restored, batch["target"])
        ce = F.cross_entropy(
            self.classifier(global_avg_pool(bottleneck).float()), batch["label"].long()
        )
        return {
            "loss": mse + self.ce_weight * ce,
            "restoration": mse.detach(),
            "classification": ce.detach(),
        }
