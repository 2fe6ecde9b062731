"""Losses as pure functions of tensors, with the paper's equation numbers.

PCRLv2 (Zhou et al., TPAMI 2023), Sec. 3.2-3.3:

- :func:`restoration_loss` - Eq. 4, pixel restoration (MSE) against the clean target.
- :func:`negative_cosine` - Eq. 7, negative cosine similarity with stop-gradient on the
  target branch (as SimSiam, Chen & He, CVPR 2021).
- :func:`symmetric_negative_cosine` - Eq. 8-9, the symmetrised comparison of two views
  (global-global, Eq. 8) or of a global and a local view (local-global, Eq. 9).
- :func:`pcrlv2_objective` - Eq. 10, the total objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_same_shape(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: shapes differ, got {tuple(a.shape)} and {tuple(b.shape)}")


def restoration_loss(restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 4: ``mean((restored - target)^2)`` over all elements.

    Args:
        restored: ``(B, C, *S)``, the head's output resized to the input's size.
        target: ``(B, C, *S)``, the globally augmented but not locally corrupted view.

    Returns:
        A scalar tensor.
    """
    _check_same_shape("restoration_loss", restored, target)
    return F.mse_loss(restored.float(), target.float())


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Eq. 7: ``-mean_b cos(p_b, stopgrad(z_b))``.

    The gradient flows into ``p`` only: ``z`` is detached, the stop-gradient that keeps the
    siamese comparison from collapsing.

    Args:
        p: ``(B, D)`` predictions.
        z: ``(B, D)`` targets (detached here).

    Returns:
        A scalar in ``[-1, 1]``.
    """
    _check_same_shape("negative_cosine", p, z)
    if p.dim() != 2:
        raise ValueError(f"negative_cosine expects (B, D) tensors, got {tuple(p.shape)}")
    return -F.cosine_similarity(p.float(), z.detach().float(), dim=1).mean()


def symmetric_negative_cosine(
    p1: torch.Tensor, z1: torch.Tensor, p2: torch.Tensor, z2: torch.Tensor
) -> torch.Tensor:
    """Eq. 8 / Eq. 9: ``0.5 * D(p1, sg(z2)) + 0.5 * D(p2, sg(z1))``.

    Args:
        p1, z1: ``(B, D1)`` prediction and ``(B, D1)`` embedding of view 1.
        p2, z2: ``(B, D2)`` prediction and ``(B, D2)`` embedding of view 2; ``p1`` must have
            ``z2``'s shape and ``p2`` ``z1``'s (equal for pairwise comparison, crossed for
            the cross-scale variant of Table II).

    Returns:
        A scalar in ``[-1, 1]``.
    """
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)


def pcrlv2_objective(
    restoration: torch.Tensor | None,
    global_global: torch.Tensor | None,
    local_global: torch.Tensor | None,
) -> torch.Tensor:
    """Eq. 10: ``L = L_pr + L_gg + L_lg``; a term switched off by an ablation is ``None``.

    Raises:
        ValueError: every term is ``None``.
    """
    terms = [t for t in (restoration, global_global, local_global) if t is not None]
    if not terms:
        raise ValueError("pcrlv2_objective: every term is switched off")
    return torch.stack([t.float() for t in terms]).sum()


def dice_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Soft Dice loss ``1 - mean_c 2|P_c T_c| / (|P_c| + |T_c|)`` over the batch.

    Args:
        probs: ``(B, C, *S)`` probabilities in [0, 1].
        target: ``(B, C, *S)`` binary masks.
        eps: smoothing in numerator and denominator.
    """
    _check_same_shape("dice_loss", probs, target)
    dims = (0, *range(2, probs.dim()))
    inter = (probs * target).sum(dims)
    denom = probs.sum(dims) + target.sum(dims)
    return 1.0 - ((2 * inter + eps) / (denom + eps)).mean()
