"""Fine-tuning and evaluation of the downstream models (PCRLv2 Sec. 4.2-4.3).

Classification (NIH ChestX-ray, LUNA nodule candidates): BCE on the logits, model selection
by the validation mean AUROC. Segmentation (BraTS, LiTS): Dice loss on the sigmoid outputs,
selection by the validation mean Dice. SGD with momentum (the paper) or Adam (the released
fine-tuning code; ``FinetuneConfig.optimizer``), cosine decay per epoch. Datasets yield dicts with ``image`` and ``label`` ``(C,)`` (classification)
or ``mask`` ``(C, *S)`` (segmentation).

Each finished run is summed up in one JSON *run record* (:func:`write_run_record`), the
only input of the tables.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pcrl_lib.engine.common import OPTIMIZERS, TrainConfig, cosine_lr, make_optimizer, set_lr
from pcrl_lib.engine.inference import predict_volume
from pcrl_lib.io import atomic_path, code_version, write_json_atomic
from pcrl_lib.losses import dice_loss
from pcrl_lib.metrics import auroc_per_class, bootstrap_auroc, bootstrap_ci, dice
from pcrl_lib.models.layers import batch_norms
from pcrl_lib.perf import (
    autocast_context,
    loader_options,
    mixed_input,
    mixed_model,
    prepare_device,
)

TASKS = ("classification", "segmentation")


@dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """Settings of a fine-tuning run: the task and the optimiser (as pre-training)."""

    task: str = "classification"
    epochs: int = 100
    patch_size: tuple[int, ...] | None = None  # segmentation: evaluate whole volumes by patches
    overlap: int = 0  # voxels shared by neighbouring inference patches
    eval_every: int = 1  # validate (model selection) every k epochs and after the last
    precise_bn: bool = False  # re-estimate batch-norm statistics before each validation
    eval_batch_size: int | None = None  # samples (or patches) per forward in evaluation
    optimizer: str = "sgd"  # "sgd" (the paper) | "adam" (the released fine-tuning code)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1 or None, got {self.eval_batch_size}")


def task_loss(task: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE on logits (classification) or Dice loss on sigmoid outputs (segmentation)."""
    if task == "classification":
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return dice_loss(torch.sigmoid(logits.float()), target.float())


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: Dataset, cfg: FinetuneConfig, class_names: list[str] | None = None
) -> dict:
    """Metrics of ``model`` on ``dataset``: per-class and mean AUROC, or Dice per channel
    and mean (per case, then averaged over cases; the per-case values are returned under
    ``"per_case"`` for bootstrap intervals)."""
    model.eval()
    device = prepare_device(cfg.device)
    mixed_model(model, cfg.dtype)
    per_forward = cfg.eval_batch_size or cfg.batch_size  # eval mode: samples are independent
    if cfg.task == "classification":
        loader = DataLoader(dataset, batch_size=per_forward, num_workers=cfg.num_workers)
        scores, labels = [], []
        for batch in loader:
            with autocast_context(cfg.dtype, device.type):
                logits = model(mixed_input(batch["image"], cfg.dtype, device))
            scores.append(torch.sigmoid(logits.float()).cpu().numpy())
            labels.append(batch["label"].numpy())
        y_true, y_score = np.concatenate(labels), np.concatenate(scores)
        out = auroc_per_class(y_true, y_score, class_names)
        out["per_case"] = {"y_true": y_true.tolist(), "y_score": y_score.tolist()}
        return out
    per_case = []
    whole = DataLoader(dataset, batch_size=1, num_workers=cfg.num_workers)
    for batch in whole:  # one case at a time: volumes differ in size
        if cfg.patch_size:  # whole volume, patch by patch (torchio grid sampler / aggregator)
            probs = predict_volume(
                model,
                batch["image"][0],
                cfg.patch_size,
                cfg.overlap,
                per_forward,
                cfg.dtype,
                cfg.device,
            )
            pred = (probs > 0.5).numpy()[None]
        else:
            with autocast_context(cfg.dtype, device.type):
                logits = model(mixed_input(batch["image"], cfg.dtype, device))
            pred = (logits.float() > 0).cpu().numpy()
        mask = batch["mask"].numpy() > 0.5
        for p, m in zip(pred, mask, strict=True):
            per_case.append([dice(p[c], m[c]) for c in range(p.shape[0])])
    values = np.asarray(per_case)
    names = class_names or [str(c) for c in range(values.shape[1])]
    out = {n: float(values[:, i].mean()) for i, n in enumerate(names)}
    out["mean"] = float(values.mean())
    out["per_case"] = {"dice": values.tolist()}
    return out


def finetune(
    model: nn.Module,
    train: Dataset,
    val: Dataset,
    cfg: FinetuneConfig,
    out_dir: str | os.PathLike,
    class_names: list[str] | None = None,
) -> dict:
    """Train on ``train``, select the epoch with the best validation mean metric, and leave
    ``model`` holding those weights (also written to ``out_dir/best.pt`` atomically).

    Returns:
        ``{"best_epoch", "best_val", "history": [{"epoch", "loss", "val"}...]}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = prepare_device(cfg.device)
    torch.manual_seed(cfg.seed)
    mixed_model(model.to(device), cfg.dtype)
    opt = make_optimizer(model, cfg, cfg.optimizer)
    target_key = "label" if cfg.task == "classification" else "mask"
    best, best_epoch, history = -math.inf, -1, []
    with open(out / "log.jsonl", "w") as log:
        for epoch in range(cfg.epochs):
            lr = cosine_lr(cfg.lr, epoch, cfg.epochs)
            set_lr(opt, lr)
            order = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            loader = DataLoader(
                train,
                batch_size=cfg.batch_size,
                shuffle=True,
                drop_last=len(train) > cfg.batch_size,  # no batch of one for batch norm
                generator=order,
                num_workers=cfg.num_workers,
                **loader_options(device),
            )
            model.train()
            losses = []
            for batch in loader:
                with autocast_context(cfg.dtype, device.type):
                    logits = model(mixed_input(batch["image"], cfg.dtype, device))
                loss = task_loss(cfg.task, logits, batch[target_key].to(device, non_blocking=True))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"fine-tuning loss is {loss.item()} at epoch {epoch}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
            record = {"epoch": epoch, "lr": lr, "loss": float(np.mean(losses))}
            last = epoch == cfg.epochs - 1
            if not last and (epoch + 1) % cfg.eval_every:
                log.write(json.dumps(record) + "\n")
                continue
            if cfg.precise_bn:
                recalibrate_batch_norm(model, train, cfg)
            score = evaluate(model, val, cfg, class_names)["mean"]
            record["val"] = score
            history.append(record)
            log.write(json.dumps(record) + "\n")
            log.flush()
            if score > best or not np.isfinite(best):
                best, best_epoch = score, epoch
                with atomic_path(out / "best.pt") as tmp:
                    torch.save(model.state_dict(), tmp)
    model.load_state_dict(torch.load(out / "best.pt", map_location=device, weights_only=True))
    return {"best_epoch": best_epoch, "best_val": best, "history": history}


def recalibrate_batch_norm(model: nn.Module, dataset: Dataset, cfg: FinetuneConfig) -> None:
    """Re-estimate every batch norm's running mean and variance as the average of the batch
    statistics over one pass of ``dataset`` ("precise BN"; no gradients, weights unchanged).

    Evaluation normalises with the running statistics, an exponential average (momentum
    0.1) over the training steps while the weights were moving. After a few dozen steps -
    the small profiles' budgets - they still mix in early weights and the initial values:
    a LUNA candidate classifier that scored AUROC 0.59 in training mode gave logits with a
    standard deviation of ~500 in evaluation mode (every score saturated, AUROC 0.5).
    Averaging the current weights' batch statistics removes that mismatch; after long
    training it changes little. The batches are formed as in training (``batch_size``).
    """
    bns = batch_norms(model)
    if not bns:
        return
    mixed_model(model, cfg.dtype)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pass
    device = prepare_device(cfg.device)
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        drop_last=len(dataset) > cfg.batch_size,
        num_workers=cfg.num_workers,
    )
    model.train()
    with torch.no_grad():
        for batch in loader:
            with autocast_context(cfg.dtype, device.type):
                model(mixed_input(batch["image"], cfg.dtype, device))
    for m, momentum in zip(bns, momenta, strict=True):
        m.momentum = momentum


def with_intervals(evaluation: dict, task: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """Point estimates of an :func:`evaluate` result with percentile-bootstrap 95 % intervals
    over test cases: ``{"mean": x, "mean_ci": [lo, hi], "<class>": x, "<class>_ci": [...]}``.
    """
    per_case = evaluation["per_case"]
    out: dict[str, float | list[float]] = {}
    if task == "classification":
        y_true, y_score = np.asarray(per_case["y_true"]), np.asarray(per_case["y_score"])
        names = [k for k in evaluation if k not in ("mean", "per_case", "undefined")]
        per_class, mean_ci = bootstrap_auroc(y_true, y_score, n_boot=n_boot, seed=seed)
        for name, ci in zip(names, per_class, strict=True):
            out[name] = evaluation[name]
            out[f"{name}_ci"] = list(ci)
        out["mean"] = evaluation["mean"]
        out["mean_ci"] = list(mean_ci)
        return out
    values = np.asarray(per_case["dice"])
    names = [k for k in evaluation if k not in ("mean", "per_case")]
    for k, name in enumerate(names):
        out[name] = evaluation[name]
        out[f"{name}_ci"] = list(
            bootstrap_ci(lambda v: float(v.mean()), values[:, k], n_boot=n_boot, seed=seed)
        )
    out["mean"] = evaluation["mean"]
    out["mean_ci"] = list(bootstrap_ci(lambda v: float(v.mean()), values, n_boot=n_boot, seed=seed))
    return out


def compact_per_case(per_case: dict) -> dict:
    """An :func:`evaluate` result's ``per_case`` for a run record: labels as integers,
    scores rounded to 6 decimals (AUROC ranks them: ties below 1e-6 are
    indistinguishable at the metric's resolution anyway), Dice to 5 decimals."""
    out = {}
    for key, values in per_case.items():
        arr = np.asarray(values, dtype=float)
        if key == "y_true":
            out[key] = arr.astype(int).tolist()
        else:
            out[key] = np.round(arr, 6 if key == "y_score" else 5).tolist()
    return out


def write_run_record(path: str | os.PathLike, **fields) -> Path:
    """Write one run record atomically: the given fields (table, task, protocol, method,
    label_ratio, seed, metrics, config, ...) plus ``code_version`` and ``written_at``."""
    required = ("table", "task", "protocol", "method", "label_ratio", "seed", "metrics", "config")
    missing = [k for k in required if k not in fields]
    if missing:
        raise ValueError(f"run record {path}: missing fields {missing}")
    record = {
        **fields,
        "code_version": code_version(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if hasattr(record["config"], "__dataclass_fields__"):
        record["config"] = asdict(record["config"])
    return write_json_atomic(path, record)
