"""3D contrastive predictive coding (Taleb et al., NeurIPS 2020, "3D Self-Supervised Methods
for Medical Imaging"; public code: HealthML/self-supervised-3d-tasks), after CPC (van den
Oord et al., 2018).

A crop is cut into a grid of overlapping patches; every patch is encoded to ``z`` (encoder +
global average pooling); a causal context network reads the grid along its first axis
(row ``i`` sees rows ``<= i`` only) and, from the context at row ``i``, linear heads predict
the codes ``k = 1..K`` rows further. InfoNCE scores each prediction against every patch
code in the batch; the true one is the positive.

Batch: ``{"global1": (B, C, X, Y, Z)}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pcrl_lib.methods.base import require_keys
from pcrl_lib.models.encoders import build_encoder
from pcrl_lib.models.layers import global_avg_pool


def grid_patches(
    x: torch.Tensor, patch: int, stride: int
) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """``(B, C, X, Y, Z) -> (B * gx * gy * gz, C, patch, patch, patch)`` and the grid size."""
    if any(n < patch for n in x.shape[2:]):
        raise ValueError(f"grid_patches: input {tuple(x.shape[2:])} smaller than patch {patch}")
    u = x.unfold(2, patch, stride).unfold(3, patch, stride).unfold(4, patch, stride)
    b, c, gx, gy, gz = u.shape[:5]
    return u.permute(0, 2, 3, 4, 1, 5, 6, 7).reshape(b * gx * gy * gz, c, patch, patch, patch), (
        gx,
        gy,
        gz,
    )


class CausalContext(nn.Module):
    """Two 3x3x3 convolutions masked in time: along the first grid axis each output sees its
    own row and the rows before it only (padding before, none after)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv3d(dim, dim, 3) for _ in range(2)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, D, gx, gy, gz) -> (B, D, gx, gy, gz)``."""
        for i, c in enumerate(self.convs):
            z = c(F.pad(z, (1, 1, 1, 1, 2, 0)))
            z = F.relu(z) if i == 0 else z
        return z


class CPC3D(nn.Module):
    """3D-CPC.

    Args:
        in_channels, depth, width: the 3D encoder applied to every patch.
        patch, stride: patch size and step of the grid (Taleb et al.: overlapping patches).
        steps: how many rows ahead are predicted (``K``). temperature: of InfoNCE.
    """

    def __init__(
        self,
        in_channels: int = 1,
        depth: int = 5,
        width: float = 1.0,
        patch: int = 16,
        stride: int = 8,
        steps: int = 2,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.encoder = build_encoder(3, in_channels, depth=depth, width=width)
        dim = int(self.encoder.out_channels[-1])
        self.context = CausalContext(dim)
        self.predictors = nn.ModuleList([nn.Conv3d(dim, dim, 1) for _ in range(steps)])
        self.patch, self.stride, self.temperature = patch, stride, temperature

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Patch codes ``(B, D, gx, gy, gz)``."""
        patches, grid = grid_patches(x, self.patch, self.stride)
        z = global_avg_pool(self.encoder(patches)[-1]).float()
        return z.view(x.shape[0], *grid, -1).permute(0, 4, 1, 2, 3)

    def forward(
        self, batch: dict[str, torch.Tensor], progress: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "accuracy"}`` (how often the true code scores highest)."""
        require_keys(batch, ("global1",), "CPC3D")
        z = self.codes(batch["global1"])
        c = self.context(z)
        bank = z.permute(0, 2, 3, 4, 1).reshape(-1, z.shape[1])  # every code is a candidate
        index = torch.arange(bank.shape[0], device=z.device).view(z.shape[0], *z.shape[2:])
        losses, hits = [], []
        for k, head in enumerate(self.predictors, start=1):
            if z.shape[2] <= k:
                break
            pred = head(c)[:, :, :-k].permute(0, 2, 3, 4, 1).reshape(-1, z.shape[1])
            target = index[:, k:].reshape(-1)
            logits = pred @ bank.t() / self.temperature
            losses.append(F.cross_entropy(logits, target))
            hits.append((logits.argmax(dim=1) == target).float().mean())
        if not losses:
            raise ValueError(
                f"CPC3D: a grid of {z.shape[2]} rows cannot predict ahead; use a larger crop"
            )
        return {"loss": torch.stack(losses).mean(), "accuracy": torch.stack(hits).mean().detach()}
