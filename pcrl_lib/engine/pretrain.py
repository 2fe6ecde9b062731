"""The one pre-training loop for every self-supervised method (PCRLv2 Sec. 4.3).

SGD with momentum, cosine learning-rate decay per epoch, weight decay (paper: lr 1e-2,
momentum 0.9, weight decay 1e-5, 240 epochs) - or AdamW with a linear warm-up and a
constant rate, stopping after ``max_steps`` and keeping encoder snapshots along the way
(the small profiles and the pre-training budget study); CPU or CUDA with optional bf16/fp16 autocast;
DataLoader workers; a tqdm bar; a JSONL log of every step and epoch (every loss term the
method returns, the learning rate, and for siamese methods the collapse monitor
``collapse_std``).

Checkpoints (``last.pt``) are written atomically at the end of every epoch with the model,
the optimizer, the epoch and the random state; a run started again on the same folder
resumes from it and ends with the same weights as an uninterrupted run (CPU, fp32, same
seed; seed torch before building the method, which fixes its initial weights): the views
of a sample are seeded by (seed, epoch, index), the batch order by (seed, epoch), and the
method's own random draws continue from the saved torch random state.

Distributed: launched with ``torchrun`` and a process group initialised
(:func:`pcrl_lib.engine.distributed.init_from_env`), the same loop runs DistributedDataParallel
with a DistributedSampler; ``batch_size`` is the global batch, split over the processes,
and every process sees the global batches a single process would. Batch-norm statistics
are per process unless ``sync_bn`` is set (``nn.SyncBatchNorm``, GPUs only). On a GPU,
:func:`pcrl_lib.perf.prepare_device` switches on ``cudnn.benchmark`` and batches come from
pinned memory with non-blocking copies.
Process 0 writes the log and the checkpoints. A NaN or Inf loss stops the run with an error naming the step; the last
checkpoint, written before it, is kept.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pcrl_lib.engine.common import TrainConfig, cosine_lr, make_optimizer, set_lr
from pcrl_lib.engine.distributed import sync_batchnorm
from pcrl_lib.engine.drift import kernel_weights, summarize_drift, weight_drift
from pcrl_lib.io import atomic_path
from pcrl_lib.perf import (
    autocast_context,
    loader_options,
    mixed_input,
    mixed_model,
    prepare_device,
)

SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """Settings of a pre-training run (defaults: the paper's, Sec. 4.3).

    ``optimizer``: ``"sgd"`` (the paper's) or ``"adamw"`` (:func:`make_optimizer`).
    ``warmup_steps``: the learning rate rises linearly over the first steps.
    ``schedule``: ``"cosine"`` (per epoch, the paper's) or ``"constant"`` after the warm-up -
    then a snapshot taken after ``n`` steps is the same whatever the run's length, so one run
    serves every budget of a study (:mod:`pcrl_lib.budget`).
    ``max_steps``: stop after this many optimiser steps (``epochs`` is then
    ``ceil(max_steps / steps per epoch)``); the run may be extended later by calling
    :func:`pretrain` again with a larger ``max_steps`` (it goes on from the step it stopped
    at, to the same weights as an uninterrupted run). ``snapshot_steps``: after each of these
    global steps (0: before the first) the encoder is saved as ``step_<n>.pt`` - steps past
    ``max_steps`` are taken when an extension reaches them. ``sync_bn``: under
    DistributedDataParallel, batch-norm statistics over every process's samples
    (``nn.SyncBatchNorm``; the GPU backend) instead of each process's own."""

    progress_bar: bool = True
    optimizer: str = "sgd"
    warmup_steps: int = 0
    schedule: str = "cosine"
    max_steps: int | None = None
    snapshot_steps: tuple[int, ...] = ()
    sync_bn: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        bad = [n for n in self.snapshot_steps if n < 0]
        if bad:
            raise ValueError(f"snapshot_steps must be >= 0, got {bad}")


def learning_rate(cfg: PretrainConfig, epoch: int, epochs: int, step: int) -> float:
    """The learning rate of global step ``step`` (0-based) in ``epoch`` of ``epochs``:
    ``lr * (step + 1) / warmup_steps`` during the warm-up, then ``lr`` (constant) or
    :func:`cosine_lr` (per epoch)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr if cfg.schedule == "constant" else cosine_lr(cfg.lr, epoch, epochs)


def snapshot_path(out_dir: str | os.PathLike, step: int) -> Path:
    """Where the encoder snapshot after ``step`` optimiser steps lives."""
    return Path(out_dir) / f"step_{step:06d}.pt"


def _snapshot(out_dir: Path, encoder: nn.Module, step: int, cfg: PretrainConfig) -> None:
    state = {
        "model": {f"encoder.{k}": v.detach().cpu() for k, v in encoder.state_dict().items()},
        "step": step,
        "config": asdict(cfg),
    }
    with atomic_path(snapshot_path(out_dir, step)) as tmp:
        torch.save(state, tmp)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample ``index`` in ``epoch``: independent of workers and of resuming."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def order_seed(seed: int, epoch: int) -> int:
    """The seed of the batch order of ``epoch`` (distinct from every sample seed)."""
    return int(np.random.SeedSequence([seed, epoch, 0, 1]).generate_state(1)[0])


class ViewDataset(Dataset):
    """Images turned into training samples by a view generator, seeded per (epoch, index).

    Args:
        images: a sequence of images ``(C, *S)`` or of zero-argument callables that load one
            (so large datasets load lazily in the workers).
        generator: ``generator(image, seed) -> dict`` (e.g. :class:`pcrl_lib.pipeline.ViewGenerator`).
        seed: the run's seed.
    """

    def __init__(self, images: Sequence, generator: Callable, seed: int = 0) -> None:
        self.images, self.generator, self.seed, self.epoch = images, generator, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose views ``__getitem__`` returns."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.images[index]
        image = image() if callable(image) else image
        return self.generator(image, sample_seed(self.seed, self.epoch, index))


def _save(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    epoch: int,
    cfg: PretrainConfig,
    step: int,
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": epoch,
        "step": step,
        "torch_rng": torch.get_rng_state(),
        "config": asdict(cfg),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _log(handle, record: dict) -> None:
    handle.write(json.dumps(record) + "\n")
    handle.flush()


def pretrain(
    method: nn.Module,
    dataset: ViewDataset,
    cfg: PretrainConfig,
    out_dir: str | os.PathLike,
) -> dict:
    """Pre-train ``method`` on ``dataset``; resume from ``out_dir/last.pt`` if present.

    Writes ``out_dir/last.pt`` (each epoch, atomically) and ``out_dir/log.jsonl`` (one line
    per step and per epoch).

    Returns:
        ``{"epochs_run", "last_epoch_metrics", "checkpoint", "encoder_drift"}``; the last is
        how far the run moved the encoder's kernels from their initial values
        (:func:`pcrl_lib.engine.drift.summarize_drift`: first / median / mean / last layer),
        ``None`` when the run resumed (the initial weights are not kept in checkpoints).

    Raises:
        FloatingPointError: a loss was NaN or Inf (``last.pt`` holds the last good epoch).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "last.pt"
    device = prepare_device(cfg.device)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {world} processes")
    torch.manual_seed(cfg.seed)  # the same draws (scales) in every process
    if distributed and cfg.sync_bn:
        method = sync_batchnorm(method)
    mixed_model(method.to(device), cfg.dtype)  # channels-last under bf16 / fp16
    # heads of the scales not drawn in a step get no gradient: find_unused_parameters
    model = DistributedDataParallel(method, find_unused_parameters=True) if distributed else method
    opt = make_optimizer(method, cfg, cfg.optimizer)
    # One global order per epoch, shared by 1 or N processes: process r takes every N-th
    # sample, so N processes see the same global batches as one process would.
    if len(dataset) < 2 * world:
        raise ValueError(
            f"pre-training needs at least 2 images per process (batch norm), got {len(dataset)}"
        )
    # keep a tiny dataset's only batch, but never a final batch of one (batch norm)
    per_rank = math.ceil(len(dataset) / world)
    one_left = per_rank % (cfg.batch_size // world) == 1
    drop_last = len(dataset) >= 2 * cfg.batch_size or one_left
    sampler = DistributedSampler(
        dataset,
        num_replicas=world,
        rank=rank,
        shuffle=True,
        seed=order_seed(cfg.seed, 0),
        drop_last=drop_last,
    )
    per_process = cfg.batch_size // world
    per_epoch = len(sampler) // per_process if drop_last else math.ceil(len(sampler) / per_process)
    epochs = cfg.epochs if cfg.max_steps is None else math.ceil(cfg.max_steps / per_epoch)
    last_step = cfg.max_steps if cfg.max_steps is not None else epochs * per_epoch
    start, skip, global_step, resumed_rng = 0, 0, 0, None
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        method.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        resumed_rng = state["torch_rng"]
        global_step = int(state.get("step", (int(state["epoch"]) + 1) * per_epoch))
        # a run stopped inside an epoch (max_steps) goes on from the next batch of it
        start, skip = divmod(global_step, per_epoch)
    encoder = getattr(method, "encoder", method)  # every registered method has one
    initial = kernel_weights(encoder) if start == 0 and skip == 0 else None
    epochs_run, epoch_metrics = 0, {}
    if rank == 0 and global_step == 0 and 0 in cfg.snapshot_steps:
        _snapshot(out, encoder, 0, cfg)
    with open(out / "log.jsonl", "a") if rank == 0 else open(os.devnull, "w") as log:
        if one_left and start == 0 and skip == 0:
            _log(log, {"kind": "note", "text": "the final batch of one is dropped each epoch"})
        for epoch in range(start, epochs):
            if global_step >= last_step:
                break
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch)
            order = list(sampler)[skip * per_process :] if epoch == start else sampler
            loader = DataLoader(
                dataset,
                batch_size=per_process,
                sampler=order,
                num_workers=cfg.num_workers,
                drop_last=drop_last,
                **loader_options(device),
            )
            # creating the iterator draws the loader's base seed from torch's generator: a
            # state saved at an epoch's end goes in before that draw, one saved inside an
            # epoch (after it) goes in after it
            if resumed_rng is not None and skip == 0:
                torch.set_rng_state(resumed_rng)
            batches = iter(loader)
            if resumed_rng is not None and skip > 0:
                torch.set_rng_state(resumed_rng)
            resumed_rng = None
            method.train()
            sums: dict[str, float] = {}
            steps, tic = 0, time.perf_counter()
            first = skip if epoch == start else 0
            for step, batch in enumerate(
                _progress(batches, cfg, epoch, epochs, len(loader)), first
            ):
                lr = learning_rate(cfg, epoch, epochs, global_step)
                set_lr(opt, lr)
                batch = {k: mixed_input(v, cfg.dtype, device) for k, v in batch.items()}
                with autocast_context(cfg.dtype, device.type):
                    terms = model(batch, progress=epoch / epochs)
                loss = terms["loss"]
                finite = torch.isfinite(loss.detach()).float()
                if distributed:  # stop in every process if one of them saw a NaN
                    dist.all_reduce(finite, op=dist.ReduceOp.MIN)
                if not finite:
                    raise FloatingPointError(
                        f"loss is {loss.item()} at epoch {epoch}, step {step}; stopping. "
                        f"The last good checkpoint is {ckpt if ckpt.exists() else 'none (first epoch)'}."
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                global_step += 1
                values = _mean_over_processes(
                    {k: v.detach().float().to(device) for k, v in terms.items() if v.dim() == 0},
                    distributed,
                )
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
                _log(
                    log,
                    {
                        "kind": "step",
                        "epoch": epoch,
                        "step": step,
                        "global_step": global_step,
                        "lr": lr,
                        **values,
                    },
                )
                if rank == 0 and global_step in cfg.snapshot_steps:
                    _snapshot(out, encoder, global_step, cfg)
                if global_step >= last_step:
                    break
            epoch_metrics = {k: v / max(steps, 1) for k, v in sums.items()}
            if rank == 0:
                _save(ckpt, method, opt, epoch, cfg, global_step)
            if distributed:
                dist.barrier()
            _log(
                log,
                {
                    "kind": "epoch",
                    "epoch": epoch,
                    "lr": lr,
                    "steps": steps,
                    "seconds": time.perf_counter() - tic,
                    **epoch_metrics,
                },
            )
            epochs_run += 1
    drift = None if initial is None else weight_drift(initial, kernel_weights(encoder))
    return {
        "epochs_run": epochs_run,
        "last_epoch_metrics": epoch_metrics,
        "checkpoint": str(ckpt),
        "encoder_drift": None if drift is None else summarize_drift(drift),
    }


def _mean_over_processes(values: dict[str, torch.Tensor], distributed: bool) -> dict[str, float]:
    """Scalar terms averaged over the processes (one all-reduce), as Python floats."""
    if not values:
        return {}
    stacked = torch.stack(list(values.values()))
    if distributed:
        dist.all_reduce(stacked)
        stacked /= dist.get_world_size()
    return dict(zip(values, stacked.tolist(), strict=True))


def _progress(batches, cfg: PretrainConfig, epoch: int, epochs: int, total: int):
    if not cfg.progress_bar:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", total=total, leave=False)
