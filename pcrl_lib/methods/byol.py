"""BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020; public code:
deepmind/deepmind-research ``byol``) on this project's encoders: an online network (encoder,
projector, predictor) predicts the projection a slowly moving target network (an exponential
moving average of the online encoder and projector) gives the other view. The global
counterpart PGL (Xie et al. 2020) measures its local consistency against.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from pcrl_lib.methods.base import require_keys
from pcrl_lib.methods.contrastive import ema_update
from pcrl_lib.models.encoders import build_encoder
from pcrl_lib.models.layers import global_avg_pool


def byol_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """BYOL's projector / predictor: Linear - BN - ReLU - Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim),
    )  # fmt: skip


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``2 - 2 cos(p, z)`` averaged over the batch (``z`` is the target: no gradient);
    ``(B, D)`` each; 0 when aligned, 4 when opposite."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


def target_momentum(base: float, progress: float, schedule: str = "cosine") -> float:
    """The target's EMA rate: ``1 - (1 - base) (cos(pi t) + 1) / 2`` (BYOL's schedule, from
    ``base`` at the start to 1 at the end of pre-training; ``t`` = ``progress`` in [0, 1]),
    or ``base`` throughout (``schedule="constant"``)."""
    if schedule == "constant":
        return base
    if schedule != "cosine":
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    t = min(max(progress, 0.0), 1.0)
    return 1 - (1 - base) * (math.cos(math.pi * t) + 1) / 2


class BYOL(nn.Module):
    """BYOL: ``z = proj(GAP(enc(x)))``, ``p = pred(z)`` online; ``z' = proj'(GAP(enc'(x)))``
    for the target (EMA of the online encoder and projector, no gradient);
    ``L = (l(p1, z'2) + l(p2, z'1)) / 2`` with :func:`byol_loss`.

    Args:
        spatial_dims, in_channels, depth, width: the encoder.
        hidden, dim: projector and predictor sizes (BYOL: 4096 and 256).
        momentum: the target's base EMA rate (0.996); ``momentum_schedule``: ``"cosine"``
            (to 1 over pre-training, BYOL's) or ``"constant"``.

    Batch: ``{"global1", "global2"}`` of shape ``(B, C, *S)``. The target is updated at the
    start of each training step, from the weights the previous step left (BYOL updates it
    right after the optimiser step: the same sequence of targets, one call later).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        depth: int = 5,
        width: float = 1.0,
        hidden: int = 4096,
        dim: int = 256,
        momentum: float = 0.996,
        momentum_schedule: str = "cosine",
    ) -> None:
        super().__init__()
        target_momentum(momentum, 0.0, momentum_schedule)  # checks the schedule's name
        self.encoder = build_encoder(spatial_dims, in_channels, depth=depth, width=width)
        c = int(self.encoder.out_channels[-1])
        self.projector = byol_mlp(c, hidden, dim)
        self.predictor = byol_mlp(dim, hidden, dim)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)  # EMA, no gradient
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.momentum, self.momentum_schedule = momentum, momentum_schedule

    def _online(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.projector(global_avg_pool(self.encoder(x)[-1]).float())
        return z, self.predictor(z)

    @torch.no_grad()
    def _target(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_projector(global_avg_pool(self.target_encoder(x)[-1]).float())

    def forward(
        self, batch: dict[str, torch.Tensor], progress: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "momentum", "collapse_std"}`` (std of the normalised online ``z``)."""
        require_keys(batch, ("global1", "global2"), "BYOL")
        tau = target_momentum(self.momentum, progress, self.momentum_schedule)
        if self.training:
            ema_update(self.target_encoder, self.encoder, tau)
            ema_update(self.target_projector, self.projector, tau)
        z1, p1 = self._online(batch["global1"])
        z2, p2 = self._online(batch["global2"])
        t1, t2 = self._target(batch["global1"]), self._target(batch["global2"])
        loss = (byol_loss(p1, t2) + byol_loss(p2, t1)) / 2
        std = F.normalize(z1.detach(), dim=1).std(dim=0).mean()
        return {"loss": loss, "momentum": torch.tensor(tau), "collapse_std": std}
