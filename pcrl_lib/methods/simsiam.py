"""SimSiam (Chen & He, CVPR 2021; public code: facebookresearch/simsiam) on this project's
encoders: two augmented views, a projector, a predictor and the symmetric negative cosine
with stop-gradient (the same loss as PCRLv2's Eq. 8)."""

from __future__ import annotations

import torch
from torch import nn

from pcrl_lib.losses import symmetric_negative_cosine
from pcrl_lib.methods.base import require_keys
from pcrl_lib.models.encoders import build_encoder
from pcrl_lib.models.layers import global_avg_pool


class SimSiam(nn.Module):
    """SimSiam: ``z = proj(GAP(encoder(x)))``, ``p = pred(z)``,
    ``L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2``.

    Args:
        spatial_dims, in_channels, depth, width: the encoder.
        dim: projector output (2048 in the paper). pred_dim: predictor bottleneck (512).

    Batch: ``{"global1", "global2"}`` of shape ``(B, C, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        depth: int = 5,
        width: float = 1.0,
        dim: int = 2048,
        pred_dim: int = 512,
    ) -> None:
        super().__init__()
        self.encoder = build_encoder(spatial_dims, in_channels, depth=depth, width=width)
        c = int(self.encoder.out_channels[-1])
        self.projector = nn.Sequential(
            nn.Linear(c, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
            nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
            nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim, affine=False),
        )  # fmt: skip
        self.predictor = nn.Sequential(
            nn.Linear(dim, pred_dim, bias=False),
            nn.BatchNorm1d(pred_dim),
            nn.ReLU(inplace=True),
            nn.Linear(pred_dim, dim),
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, dim)`` projections ``z``."""
        return self.projector(global_avg_pool(self.encoder(x)[-1]).float())

    def forward(
        self, batch: dict[str, torch.Tensor], progress: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "collapse_std"}`` (std of the normalised ``z``: ~1/sqrt(dim) when healthy)."""
        require_keys(batch, ("global1", "global2"), "SimSiam")
        z1, z2 = self.embed(batch["global1"]), self.embed(batch["global2"])
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = symmetric_negative_cosine(p1, z1, p2, z2)
        std = nn.functional.normalize(z1.detach(), dim=1).std(dim=0).mean()
        return {"loss": loss, "collapse_std": std}
