"""PGL (Xie et al., "PGL: Prior-Guided Local Self-supervised Learning for 3D Medical Image
Segmentation", arXiv:2011.12640, 2020) on this project's encoders.

BYOL's online/target pair (:mod:`pcrl_lib.methods.byol`), made local: the two views are
crops of one image at different positions and scales, each flipped at random
(:class:`pcrl_lib.methods.inputs.PGLInputs` records the crop boxes and flips). Those known
spatial transformations are the *prior*: they locate the region both views show, whose
feature maps are aligned by RoIAlign (:func:`common_region_grid`, :func:`roi_align`) and
compared voxel by voxel - the online path's pointwise projector and predictor against the
target's projection, ``2 - 2 cos`` per voxel (the local consistency that replaces BYOL's
global loss).

The ablation switches are fields: ``crop_prior`` (the boxes locate the common region; off:
the two whole views are treated as aligned) and ``flip_prior`` (the flips are undone; off:
ignored). The augmentations are applied either way - a prior that is off leaves the views
misaligned, which is what the paper's ablation measures (this project's reading of it; the
paper's code was not among the public sources searched).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from pcrl_lib.methods.base import require_keys
from pcrl_lib.methods.byol import target_momentum
from pcrl_lib.methods.contrastive import ema_update
from pcrl_lib.models.encoders import build_encoder
from pcrl_lib.models.layers import batch_norm, conv


def common_region_grid(
    box1: torch.Tensor,
    box2: torch.Tensor,
    flip1: torch.Tensor,
    flip2: torch.Tensor,
    size: tuple[int, ...],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampling grids of the region two crops share, for :func:`roi_align` on each view.

    Args:
        box1, box2: ``(B, 2, d)`` each view's crop in image voxels: row 0 the start, row 1
            the size (a view is its crop resized to the network's input, the image's voxel
            ``i`` spanning ``[i, i + 1)``).
        flip1, flip2: ``(B, d)`` 1 where the view was flipped along that axis after resizing.
        size: ``(K_1, ..., K_d)`` bins of the aligned region per axis.

    Returns:
        Two grids ``(B, K_1, ..., K_d, d)`` in ``grid_sample``'s normalised coordinates
        (``align_corners=False``; last axis in its x-first order): bin ``k`` of both grids
        is the same image point, ``x_k = lo + (k + 1/2) (hi - lo) / K`` with ``[lo, hi]``
        the two crops' intersection, at ``g = +-(2 (x - start) / size - 1)`` in a view
        (``-`` where flipped). Crops that do not intersect raise ``ValueError``.
    """
    d = box1.shape[-1]
    if box1.shape != box2.shape or box1.dim() != 3 or box1.shape[1] != 2 or len(size) != d:
        raise ValueError(
            f"boxes must be (B, 2, d) with len(size) == d, got {tuple(box1.shape)}, "
            f"{tuple(box2.shape)} and size {size}"
        )
    box1, box2 = box1.float(), box2.float()
    lo = torch.maximum(box1[:, 0], box2[:, 0])
    hi = torch.minimum(box1[:, 0] + box1[:, 1], box2[:, 0] + box2[:, 1])
    if (hi <= lo).any():
        raise ValueError("the two crops do not overlap: no common region to align")
    grids = []
    for box, flip in ((box1, flip1), (box2, flip2)):
        axes = []
        for a in range(d):
            k = (torch.arange(size[a], dtype=torch.float32, device=box.device) + 0.5) / size[a]
            x = lo[:, a, None] + k * (hi - lo)[:, a, None]  # (B, K_a) image coordinates
            g = 2 * (x - box[:, 0, a, None]) / box[:, 1, a, None] - 1
            axes.append(torch.where(flip[:, a, None].bool(), -g, g))
        mesh = [
            axes[a].view(-1, *[size[a] if b == a else 1 for b in range(d)]).expand(-1, *size)
            for a in range(d)
        ]
        grids.append(torch.stack(mesh[::-1], dim=-1))  # grid_sample wants x (last axis) first
    return grids[0], grids[1]


def roi_align(features: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """RoIAlign with one sample per bin: ``features (B, C, *S)`` (a feature map covering its
    view's whole field) read at ``grid (B, *K, d)`` by (tri)linear interpolation ->
    ``(B, C, *K)``. Border bins read the nearest values (``padding_mode="border"``)."""
    return F.grid_sample(
        features.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )


def pointwise_mlp(spatial_dims: int, in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """BYOL's MLP applied at every voxel: 1x1(x1) conv - BN - ReLU - 1x1(x1) conv."""
    return nn.Sequential(
        conv(spatial_dims, in_dim, hidden, 1), batch_norm(spatial_dims, hidden),
        nn.ReLU(inplace=True), conv(spatial_dims, hidden, out_dim, 1),
    )  # fmt: skip


def local_consistency(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``2 - 2 cos(p, z)`` over the feature axis at every voxel, averaged over voxels and
    batch; ``(B, D, *K)`` each, ``z`` the target (no gradient)."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


class PGL(nn.Module):
    """PGL: ``L = (l(p1, z'2) + l(p2, z'1)) / 2`` with :func:`local_consistency`, where
    ``p_i = pred(proj(RoI_i(enc(x_i))))`` online and ``z'_i = proj'(RoI_i(enc'(x_i)))`` from
    the target (EMA of the online encoder and projector), ``RoI_i`` the common region in
    view ``i`` (:func:`common_region_grid`).

    Args:
        spatial_dims, in_channels, depth, width: the encoder.
        hidden, dim: projector and predictor sizes (pointwise; PGL follows BYOL: 4096, 256 -
            smaller defaults here, as the maps have many voxels).
        momentum, momentum_schedule: the target's EMA rate (:func:`target_momentum`).
        level: the encoder stage whose feature map is aligned (``-1``: the deepest).
        roi_size: bins of the aligned region per axis.
        crop_prior, flip_prior: the ablation switches (module docstring).

    Batch: ``{"global1", "global2"}`` ``(B, C, *S)``, ``{"box1", "box2"}`` ``(B, 2, d)``,
    ``{"flip1", "flip2"}`` ``(B, d)`` (:class:`~pcrl_lib.methods.inputs.PGLInputs`).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        depth: int = 5,
        width: float = 1.0,
        hidden: int = 512,
        dim: int = 128,
        momentum: float = 0.996,
        momentum_schedule: str = "cosine",
        level: int = -1,
        roi_size: int = 4,
        crop_prior: bool = True,
        flip_prior: bool = True,
    ) -> None:
        super().__init__()
        target_momentum(momentum, 0.0, momentum_schedule)  # checks the schedule's name
        self.encoder = build_encoder(spatial_dims, in_channels, depth=depth, width=width)
        channels = self.encoder.out_channels[level]
        if channels is None:
            raise ValueError(f"encoder level {level} has no feature map; choose a deeper one")
        if roi_size < 1:
            raise ValueError(f"roi_size must be >= 1, got {roi_size}")
        self.projector = pointwise_mlp(spatial_dims, int(channels), hidden, dim)
        self.predictor = pointwise_mlp(spatial_dims, dim, hidden, dim)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)  # EMA, no gradient
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.spatial_dims, self.level, self.roi_size = spatial_dims, level, roi_size
        self.momentum, self.momentum_schedule = momentum, momentum_schedule
        self.crop_prior, self.flip_prior = crop_prior, flip_prior

    def grids(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The two views' sampling grids under the configured priors."""
        box1, box2 = batch["box1"], batch["box2"]
        if not self.crop_prior:  # each whole view, as if both showed the same region
            unit = torch.stack([torch.zeros_like(box1[:, 0]), torch.ones_like(box1[:, 1])], 1)
            box1 = box2 = unit.float()
        flip1, flip2 = batch["flip1"], batch["flip2"]
        if not self.flip_prior:
            flip1, flip2 = torch.zeros_like(flip1), torch.zeros_like(flip2)
        return common_region_grid(box1, box2, flip1, flip2, (self.roi_size,) * self.spatial_dims)

    def forward(
        self, batch: dict[str, torch.Tensor], progress: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "momentum", "collapse_std"}`` (std over samples and voxels of the
        normalised online projections)."""
        require_keys(batch, ("global1", "global2", "box1", "box2", "flip1", "flip2"), "PGL")
        tau = target_momentum(self.momentum, progress, self.momentum_schedule)
        if self.training:
            ema_update(self.target_encoder, self.encoder, tau)
            ema_update(self.target_projector, self.projector, tau)
        grids = self.grids(batch)
        z, p, t = [], [], []
        for x, grid in zip((batch["global1"], batch["global2"]), grids, strict=True):
            zi = self.projector(roi_align(self.encoder(x)[self.level], grid))
            z.append(zi)
            p.append(self.predictor(zi))
            with torch.no_grad():
                t.append(self.target_projector(roi_align(self.target_encoder(x)[self.level], grid)))
        loss = (local_consistency(p[0], t[1]) + local_consistency(p[1], t[0])) / 2
        flat = z[0].detach().movedim(1, -1).reshape(-1, z[0].shape[1])
        std = F.normalize(flat, dim=1).std(dim=0).mean()
        return {"loss": loss, "momentum": torch.tensor(tau), "collapse_std": std}
