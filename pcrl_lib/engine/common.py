"""What the pre-training and fine-tuning loops share: the optimiser settings and the
learning-rate schedule (PCRLv2 Sec. 4.3: SGD, momentum 0.9, lr 1e-2, cosine decay,
weight decay 1e-5)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, precision and loader settings of a training run."""

    epochs: int = 240
    batch_size: int = 32
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-5
    dtype: str = "fp32"
    num_workers: int = 0
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}"
            )
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """``base_lr * 0.5 * (1 + cos(pi * epoch / epochs))`` (cosine decay per epoch)."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def sgd(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with the run's momentum and weight decay."""
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


OPTIMIZERS = ("sgd", "adam", "adamw")


def make_optimizer(model: nn.Module, cfg: TrainConfig, name: str = "sgd") -> torch.optim.Optimizer:
    """``"sgd"``: :func:`sgd` (the paper's, Sec. 4.3). ``"adam"``: Adam with default betas
    and no weight decay, as the released fine-tuning code (RL4M/PCRLv2
    ``finetune.py``: ``torch.optim.Adam(model.parameters(), args.lr)``). Adam's step does
    not scale with ``lr / ||W||^2`` under batch norm, so a pre-trained kernel whose norm
    grew during pre-training is fine-tuned at the same effective rate as a fresh one.
    ``"adamw"``: AdamW (decoupled weight decay ``cfg.weight_decay``) - the small profiles'
    pre-training (:class:`pcrl_lib.profiles.PretrainSettings`), whose few hundred steps move
    an SGD-trained encoder little."""
    if name == "sgd":
        return sgd(model, cfg)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in opt.param_groups:
        group["lr"] = lr
