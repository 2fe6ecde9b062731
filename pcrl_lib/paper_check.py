"""The paper-shapes check: every run of the ``paper`` grid, two steps at the paper's shapes.

``python -m pcrl_lib grid --profile paper --check`` groups the grid's runs
(:func:`pcrl_lib.grid.pretrain_runs`, :func:`pcrl_lib.grid.finetune_runs`) into
*workloads* - runs that execute the same training step: a pre-training method (and
ablation variant) on a source, or the downstream model of a task - and runs each workload
for two optimiser steps at the paper's input shapes and batch sizes (Sec. 4.3;
:mod:`pcrl_lib.profiles`), on whatever device is present. The second step is timed (the
first allocates, and on a GPU lets ``cudnn.benchmark`` choose its kernels). Where the
device cannot hold the paper's batch, or ``max_batch`` caps it (the CPU test), the paper's
batch is reached by gradient accumulation over micro-batches: on a GPU each step runs
them all; on a CPU one, and ``step_s`` counts it as many times as the batch needs (the
optimiser's update, once per step, counted once).

Pre-training inputs come from the method's own input pipeline (the view generator and
the baselines' inputs, :mod:`pcrl_lib.methods.inputs`) on synthetic images of paper size:
a 160x160x128 CT phantom at 1 mm (the paper's largest crop, 112x112x64, fits) and
224x224 X-rays. Fine-tuning inputs are random tensors of the task's shape (48^3 LUNA
candidates, 224^2 X-rays, 112^3 x 4 BraTS and 256x256x64 LiTS patches): the step time of a
convolutional network does not depend on the values.

Workloads that execute the same step - a method on NIH's and on CheXpert's X-rays, which
have one shape - are measured once (``measured_as`` names the one measured). From the step
time the check extrapolates each run: ``steps = epochs * ceil(n / batch)``
with the paper's 240 epochs and ``n`` the training samples of the paper's datasets
(:data:`PAPER_DATA`, 70 % of each; labelled fraction for fine-tuning), and sums the
device-hours of the whole grid. Not counted: validation and test passes, data loading
(measured separately by ``benchmarks/gpu_check.sh``), start-up.

Peak memory: on a GPU ``torch.cuda.max_memory_allocated`` over the workload (model,
optimiser state, activations); on a CPU the peak resident memory above the level before
the workload; on a CPU each workload runs in a fresh process, so that the measure does not
see what an earlier workload left allocated.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from pcrl_lib.grid import finetune_runs, pretrain_runs
from pcrl_lib.methods.registry import get_method
from pcrl_lib.perf import autocast_context, machine_description, mixed_input, mixed_model
from pcrl_lib.pipeline import paper_view_generator
from pcrl_lib.profiles import finetune_settings, pretrain_settings

# Training samples of the paper's datasets (public counts; 70 % of each is the paper's
# training split, Sec. 4.3): samples per pre-training epoch and labelled samples per
# fine-tuning epoch at ratio 1.
PAPER_DATA: dict[str, tuple[int, str]] = {
    "luna": (888, "LUNA16 CT scans (pre-training: one sample per scan per epoch)"),
    # candidates_V2.csv's 1,557 nodules with 10 negatives each, as prepare_luna keeps them
    "luna_candidates": (17_127, "LUNA16 candidates (1,557 nodules, 10 negatives each)"),
    "nih": (112_120, "NIH ChestX-ray14 images"),
    "chexpert": (191_027, "CheXpert v1.0 frontal training images"),
    "brats": (285, "BraTS 2018 training subjects (one 112^3 patch per subject per epoch)"),
    "lits": (131, "LiTS training volumes (one 256x256x64 patch per volume per epoch)"),
}
TRAIN_FRACTION = 0.7
PAPER_EPOCHS = 240
# fine-tuning input (C, *S) and outputs per task at the paper's shapes (Sec. 4.3)
FINETUNE_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "luna": ((1, 48, 48, 48), 1),
    "nih": ((3, 224, 224), 14),
    "brats": ((4, 112, 112, 112), 3),
    "lits": ((1, 256, 256, 64), 1),
}
FINETUNE_DATA = {"luna": "luna_candidates", "nih": "nih", "brats": "brats", "lits": "lits"}


@dataclass(frozen=True)
class Workload:
    """Runs of the grid that execute one training step.

    ``kind``: ``"pretrain"`` or ``"finetune"``; ``name``: e.g. ``luna_PCRLv2-row3`` or
    ``finetune_lits``; ``runs``: how many runs of the grid; ``steps``: their optimiser steps
    in all (the extrapolation's multiplier); ``batch``: the paper's batch."""

    kind: str
    name: str
    method: str
    source: str
    variant: str
    spatial_dims: int
    batch: int
    runs: int
    steps: int

    @property
    def steps_per_run(self) -> float:
        """Average optimiser steps of one run."""
        return self.steps / self.runs


def samples(key: str, fraction: float = 1.0) -> int:
    """Training samples of :data:`PAPER_DATA` ``key`` (70 % split) times ``fraction``."""
    return max(1, round(PAPER_DATA[key][0] * TRAIN_FRACTION * fraction))


def workloads() -> list[Workload]:
    """The ``paper`` grid's workloads at the paper's batches, pre-training first."""
    profile = "paper"
    out = []
    pre = Counter((r.source, r.method, r.variant) for r in pretrain_runs(profile))
    for (source, method, variant), n in pre.items():
        dims = 3 if source == "luna" else 2
        s = pretrain_settings(profile, dims)
        per_run = PAPER_EPOCHS * math.ceil(samples(source) / s.batch_size)
        name = f"{source}_{method}" + (f"-{variant}" if variant else "")
        out.append(
            Workload("pretrain", name, method, source, variant, dims, s.batch_size, n, n * per_run)
        )
    steps: Counter = Counter()
    count: Counter = Counter()
    for r in finetune_runs(profile):
        s = finetune_settings(profile, r.task)
        n_labelled = samples(FINETUNE_DATA[r.task], r.label_ratio)
        steps[r.task] += PAPER_EPOCHS * math.ceil(n_labelled / s.batch_size)
        count[r.task] += 1
    for task in sorted(count):
        s = finetune_settings(profile, task)
        dims = len(FINETUNE_SHAPES[task][0]) - 1
        out.append(
            Workload(
                "finetune", f"finetune_{task}", "", task, "", dims, s.batch_size,
                count[task], steps[task],
            )
        )  # fmt: skip
    return out


class PeakMemory:
    """Peak memory over a ``with`` block, in MB: CUDA's allocator peak on a GPU, else the
    process's peak resident memory (``ru_maxrss``) above its resident memory at entry - a
    measure of the block alone only in a fresh process (:func:`check` isolates)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mb = device, 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            import psutil

            self._base = psutil.Process().memory_info().rss
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
            self.peak_mb = max(0.0, (peak - self._base) / 2**20)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pretrain_parts(w: Workload, micro: int, seed: int = 0):
    """The method at the paper's settings and a micro-batch of its inputs on synthetic
    images of paper size."""
    from pcrl_lib.data.phantom import phantom_ct
    from pcrl_lib.data.synthetic.xray import synthetic_chest_xray
    from pcrl_lib.engine.experiment import _visual_words
    from pcrl_lib.grid import VARIANTS

    s = pretrain_settings("paper", w.spatial_dims)
    spec = get_method(w.method, w.spatial_dims)
    channels = 1 if w.spatial_dims == 3 else 3
    kw = dict(VARIANTS[w.variant])
    if w.method == "PCRLv2":
        kw["preset"] = "paper"
    if w.method == "TransVW":
        kw["n_words"] = 4
    torch.manual_seed(seed)
    model = spec.build(w.spatial_dims, channels, s.depth, s.width, **kw)
    crops = model.config.crops if w.method == "PCRLv2" else "none"
    base = paper_view_generator(w.spatial_dims, crops)
    n = max(micro, 5) if w.method == "TransVW" else micro  # its word search needs a few
    if w.spatial_dims == 3:
        images = [phantom_ct((160, 160, 128), seed=seed + i) for i in range(n)]
    else:
        images = [np.repeat(synthetic_chest_xray(seed, i, 224)[0][None], 3, 0) for i in range(n)]
    if w.method == "TransVW":
        items, gen = _visual_words([lambda im=im: im for im in images], base, 4, n - 1, seed)
        views = [gen(items[i](), i) for i in range(micro)]
    else:
        gen = spec.inputs(base)
        views = [gen(images[i], i) for i in range(micro)]
    batch = {k: torch.stack([v[k] for v in views]) for k in views[0]}

    def loss_fn(m: nn.Module, b: dict) -> torch.Tensor:
        return m(b)["loss"]

    return model, batch, loss_fn


def _finetune_parts(w: Workload, micro: int, seed: int = 0):
    """The task's downstream model and a micro-batch of random inputs of its shape."""
    from pcrl_lib.engine.finetune import task_loss
    from pcrl_lib.models.downstream import Classifier, SegmentationUNet

    s = finetune_settings("paper", w.source)
    shape, n_out = FINETUNE_SHAPES[w.source]
    torch.manual_seed(seed)
    dims = len(shape) - 1
    if w.source in ("luna", "nih"):
        model: nn.Module = Classifier(dims, shape[0], n_out, depth=s.depth, width=s.width)
        target = torch.randint(0, 2, (micro, n_out)).float()
    else:
        model = SegmentationUNet(dims, shape[0], n_out, depth=s.depth, width=s.width)
        target = torch.randint(0, 2, (micro, n_out, *shape[1:])).float()
    batch = {"image": torch.randn(micro, *shape), "target": target}
    kind = w.source

    def loss_fn(m: nn.Module, b: dict) -> torch.Tensor:
        return task_loss(kind, m(b["image"]), b["target"])

    return model, batch, loss_fn


def measure(
    w: Workload,
    device: str | torch.device,
    max_batch: int | None = None,
    dtype: str = "fp32",
    accumulate: bool | None = None,
) -> dict:
    """Two optimiser steps of workload ``w`` on ``device``; the second timed.

    The micro-batch is the paper's batch capped at ``max_batch`` (pre-training: at least 2,
    its projection heads batch-normalise over samples), halved on a CUDA out-of-memory
    error until it fits. ``accumulate`` (default: on a GPU): each step runs every
    micro-batch of the paper's batch before the update; otherwise one, and ``step_s`` counts
    it ``accumulation`` times. Returns the row :func:`check` reports."""
    device = torch.device(device)
    if accumulate is None:
        accumulate = device.type == "cuda"
    micro = min(w.batch, max_batch or w.batch)
    if w.kind == "pretrain":
        micro = max(micro, min(2, w.batch))
    while True:
        try:
            return _measure(w, device, micro, dtype, accumulate)
        except torch.OutOfMemoryError:
            if micro <= 2:
                raise
            micro //= 2
            torch.cuda.empty_cache()


def _measure(w: Workload, device: torch.device, micro: int, dtype: str, accumulate: bool) -> dict:
    parts = _pretrain_parts if w.kind == "pretrain" else _finetune_parts
    accumulation = math.ceil(w.batch / micro)
    passes = accumulation if accumulate else 1
    with PeakMemory(device) as mem:
        model, batch, loss_fn = parts(w, micro)
        model = mixed_model(model.to(device), dtype)
        batch = {k: mixed_input(v, dtype, device) for k, v in batch.items()}
        model.train()
        opt = torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad], lr=1e-2, momentum=0.9
        )
        times = []
        for _ in range(2):
            _sync(device)
            start = time.perf_counter()
            for _ in range(passes):
                with autocast_context(dtype, device.type):
                    loss = loss_fn(model, batch) / accumulation
                loss.backward()
            _sync(device)
            fwd_bwd = (time.perf_counter() - start) / passes
            opt.step()
            opt.zero_grad(set_to_none=True)
            _sync(device)
            times.append((fwd_bwd, time.perf_counter() - start - fwd_bwd * passes))
        value = float(loss.detach()) * accumulation
        if not math.isfinite(value):
            raise FloatingPointError(f"{w.name}: the loss is {value} at the paper's shapes")
    fwd_bwd, update = times[-1]
    measured = {
        "micro_batch": micro,
        "accumulation": accumulation,
        "accumulated": accumulate,
        "step_s": round(accumulation * fwd_bwd + update, 4),
        "peak_mb": round(mem.peak_mb, 1),
        "measured_as": w.name,
    }
    return _extrapolate(measured, w)


def _step_key(w: Workload) -> tuple:
    """Workloads with one key execute the same step: a pre-training method and variant on
    images of one dimension (NIH's and CheXpert's X-rays have the same shapes)."""
    if w.kind == "pretrain":
        return (w.kind, w.method, w.variant, w.spatial_dims)
    return (w.kind, w.source)


def _extrapolate(measured: dict, w: Workload) -> dict:
    """``w``'s row from a measured step: one run's and all runs' hours."""
    keep = ("micro_batch", "accumulation", "accumulated", "step_s", "peak_mb", "measured_as")
    row = {**asdict(w), **{k: measured[k] for k in keep}}
    run_h = row["step_s"] * w.steps_per_run / 3600
    return {**row, "run_hours": round(run_h, 3), "total_hours": round(run_h * w.runs, 2)}


def check(
    device: str | torch.device = "cpu",
    max_batch: int | None = None,
    dtype: str = "fp32",
    only: Sequence[str] | None = None,
    report: Callable[[dict], None] | None = None,
    isolate: bool | None = None,
) -> dict:
    """Measure every workload of the paper grid (``only``: those names) and return
    ``{"rows", "device_hours", "runs", "machine", "device", "max_batch", "dtype"}``;
    ``report`` is called with each row as it is measured. ``isolate`` (default: on a CPU):
    each workload in a fresh process (spawned, with this process's torch thread count) -
    the CPU's memory measure needs it; CUDA's peak counter is reset per workload."""
    chosen = workloads()
    if only is not None:
        unknown = sorted(set(only) - {w.name for w in chosen})
        if unknown:
            raise ValueError(
                f"unknown workloads {unknown}; the grid has {[w.name for w in chosen]}"
            )
        chosen = [w for w in chosen if w.name in only]
    if isolate is None:
        isolate = torch.device(device).type == "cpu"
    rows, measured = [], {}
    for w in chosen:
        key = _step_key(w)
        if key in measured:  # the same step on another source: not measured again
            row = _extrapolate(measured[key], w)
        else:
            args = (w, str(device), max_batch, dtype)
            row = _in_fresh_process(measure, args) if isolate else measure(*args)
            measured[key] = row
        rows.append(row)
        if report is not None:
            report(row)
    return {
        "profile": "paper",
        "device": str(device),
        "machine": machine_description(),
        "max_batch": max_batch,
        "dtype": dtype,
        "runs": sum(r["runs"] for r in rows),
        "device_hours": round(sum(r["run_hours"] * r["runs"] for r in rows), 1),
        "rows": rows,
    }


def _with_threads(threads: int, fn: Callable, args: tuple):
    torch.set_num_threads(threads)
    return fn(*args)


def _in_fresh_process(fn: Callable, args: tuple):
    """``fn(*args)`` in a new spawned process with this one's torch thread count."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(_with_threads, torch.get_num_threads(), fn, args).result()
