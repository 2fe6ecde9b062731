"""Momentum-contrast baselines: C2L and PCRLv1, sharing one queue, one EMA update and one
InfoNCE.

- C2L (Zhou et al., MICCAI 2020, "Comparing to Learn"; public code: funnyzhou/C2L_MICCAI2020):
  a student and an exponential-moving-average teacher; mixup of the images the student sees
  and, identically, of the teacher's features that are its positives; negatives from a queue.
- PCRLv1 (Zhou et al., ICCV 2021, "Preservational Learning Improves Self-supervised Medical
  Image Models by Reconstructing Diverse Contexts"; public code: Luchixiang/PCRL): C2L plus
  a decoder, conditioned on the corruptions applied, that restores the clean views from the
  ordinary (student), the momentum (teacher) and the hybrid (mixed) features.

Batches: ``{"global1", "global2"}`` (two views, ``(B, C, *S)``); PCRLv1 also ``"target1"``,
``"target2"`` (clean views) and ``"transform1"``, ``"transform2"`` (``(B, 4)`` flags).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from pcrl_lib.losses import restoration_loss
from pcrl_lib.methods.base import require_keys
from pcrl_lib.models.layers import conv, global_avg_pool
from pcrl_lib.models.nsunet import NSUNet


class FeatureQueue(nn.Module):
    """A first-in-first-out queue of ``size`` unit-norm keys ``(size, dim)`` (MoCo's memory).

    ``enqueue(keys)`` overwrites the oldest entries; ``keys`` holds the current content.
    """

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size must be >= 1, got {size}")
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys (B, dim)`` over the oldest entries (wrapping around)."""
        size = self.keys.shape[0]
        idx = (self.pointer + torch.arange(keys.shape[0], device=keys.device)) % size
        self.keys[idx] = keys.detach().to(self.keys.dtype)
        self.pointer.copy_((self.pointer + keys.shape[0]) % size)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student`` (parameters; buffers copied)."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)


def info_nce(
    q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> torch.Tensor:
    """InfoNCE with one positive ``k`` per query ``q`` (both ``(B, D)`` unit vectors) and the
    shared ``negatives (K, D)``: cross-entropy of ``[q.k, q.n_1, ..., q.n_K] / T`` at 0."""
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ negatives.t()
    logits = torch.cat([pos, neg], dim=1).float() / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


class _Embedder(nn.Module):
    """Encoder + GAP + 2-layer MLP -> unit vector (the student or, copied, the teacher)."""

    def __init__(self, encoder: nn.Module, dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        c = int(encoder.out_channels[-1])
        self.head = nn.Sequential(nn.Linear(c, c), nn.ReLU(inplace=True), nn.Linear(c, dim))

    def embed_features(self, feats) -> torch.Tensor:
        return F.normalize(self.head(global_avg_pool(feats[-1]).float()), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.encoder(x))


class C2L(nn.Module):
    """C2L: student on mixed images ``lam x_i + (1 - lam) x_j``, positives the teacher's
    identically mixed keys of the other view, negatives from the queue.

    Args:
        spatial_dims, in_channels, depth, width: the backbone.
        dim: embedding size (128). queue_size: negatives kept (MoCo: 65536; C2L 16384).
        momentum: EMA of the teacher (0.999). temperature: of InfoNCE (0.07).
        mixup_alpha: ``lam ~ Beta(alpha, alpha)`` (1.0).
    """

    def __init__(
        self, spatial_dims: int = 3, in_channels: int = 1, depth: int = 5, width: float = 1.0, dim: int = 128,
        queue_size: int = 4096, momentum: float = 0.999, temperature: float = 0.07, mixup_alpha: float = 1.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.net = NSUNet(spatial_dims, in_channels, depth, width, skip=True)
        self.student = _Embedder(self.net.encoder, dim)
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)
        self.queue = FeatureQueue(dim, queue_size)
        self.momentum, self.temperature, self.mixup_alpha = momentum, temperature, mixup_alpha

    @property
    def encoder(self) -> nn.Module:
        """The student's encoder (fine-tuned downstream)."""
        return self.net.encoder

    def _mix(self, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        lam = (
            torch.distributions.Beta(self.mixup_alpha, self.mixup_alpha)
            .sample((batch_size,))
            .to(device)
        )
        return lam, torch.randperm(batch_size, device=device)

    @staticmethod
    def _expand(lam: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return lam.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)

    def contrast(
        self, x1: torch.Tensor, x2: torch.Tensor, feats1=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """InfoNCE of the plain and the mixed student queries; returns ``(loss, keys)``."""
        with torch.no_grad():
            ema_update(self.teacher, self.student, self.momentum)
            k = self.teacher(x2)
        lam, perm = self._mix(x1.shape[0], x1.device)
        mixed = self._expand(lam, x1) * x1 + (1 - self._expand(lam, x1)) * x1[perm]
        k_mix = F.normalize(self._expand(lam, k) * k + (1 - self._expand(lam, k)) * k[perm], dim=1)
        q = self.student.embed_features(feats1) if feats1 is not None else self.student(x1)
        negatives = self.queue.keys.clone().detach()
        loss = 0.5 * info_nce(q, k, negatives, self.temperature)
        loss = loss + 0.5 * info_nce(self.student(mixed), k_mix, negatives, self.temperature)
        return loss, k

    def forward(
        self, batch: dict[str, torch.Tensor], progress: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "contrast", "collapse_std"}``; the teacher and the queue update here."""
        require_keys(batch, ("global1", "global2"), type(self).__name__)
        loss, keys = self.contrast(batch["global1"], batch["global2"])
        self.queue.enqueue(keys)
        std = keys.std(dim=0).mean()
        return {"loss": loss, "contrast": loss.detach(), "collapse_std": std}


class PCRLv1(C2L):
    """PCRLv1: C2L + transformation-conditioned restoration of three contexts.

    ``L = InfoNCE + MSE(D(f_o), t1) + MSE(D(f_m), t2) + MSE(D(a f_o + (1 - a) f_m), a t1 + (1 - a) t2)``
    with ``f_o`` the student's features of view 1, ``f_m`` the teacher's of view 2 (no
    gradient into the teacher), ``a ~ Beta(1, 1)``; the decoder ``D`` (U-Net with skips)
    gates its bottleneck channels by an embedding of the corruption flags (the paper's
    transformation-conditioned attention; the hybrid branch gets the mixed flags).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        depth: int = 5,
        width: float = 1.0,
        n_transforms: int = 4,
        **kw,
    ) -> None:
        super().__init__(spatial_dims, in_channels, depth, width, **kw)
        c = self.net.level_channels[self.net.bottleneck_rate]
        self.condition = nn.Sequential(nn.Linear(n_transforms, c), nn.Sigmoid())
        self.out = conv(spatial_dims, self.net.level_channels[1], in_channels, kernel_size=1)

    def restore(self, feats, flags: torch.Tensor, spatial) -> torch.Tensor:
        """Decode ``feats`` (encoder levels) with the bottleneck gated by ``flags (B, T)``."""
        gate = self.condition(flags.float()).view(
            flags.shape[0], -1, *([1] * (feats[-1].dim() - 2))
        )
        feats = [*feats[:-1], feats[-1] * gate.to(feats[-1].dtype)]
        return torch.sigmoid(self.out(self.net.decode(feats, spatial)[1]).float())

    def forward(
        self, batch: dict[str, torch.Tensor], progress: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "contrast", "restoration", "collapse_std"}``."""
        keys = ("global1", "global2", "target1", "target2", "transform1", "transform2")
        require_keys(batch, keys, "PCRLv1")
        x1, x2 = batch["global1"], batch["global2"]
        f_o = self.net.encoder(x1)
        contrast, k = self.contrast(x1, x2, feats1=f_o)
        with torch.no_grad():
            f_m = self.teacher.encoder(x2)
        spatial = x1.shape[2:]
        r_o = restoration_loss(self.restore(f_o, batch["transform1"], spatial), batch["target1"])
        r_m = restoration_loss(self.restore(f_m, batch["transform2"], spatial), batch["target2"])
        a = torch.distributions.Beta(1.0, 1.0).sample().item()
        f_h = [None if o is None else a * o + (1 - a) * m for o, m in zip(f_o, f_m, strict=True)]
        flags = a * batch["transform1"] + (1 - a) * batch["transform2"]
        target_h = a * batch["target1"] + (1 - a) * batch["target2"]
        r_h = restoration_loss(self.restore(f_h, flags, spatial), target_h)
        self.queue.enqueue(k)
        restoration = r_o + r_m + r_h
        return {
            "loss": contrast + restoration,
            "contrast": contrast.detach(),
            "restoration": restoration.detach(),
            "collapse_std": k.std(dim=0).mean(),
        }
