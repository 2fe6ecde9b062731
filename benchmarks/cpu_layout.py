"""fp32 training steps on the CPU, contiguous against channels-last, side by side.

The study's pre-training methods (PCRLv2, MG, SimSiam) at a profile's shapes and its
fine-tuning classifiers (LUNA 3D, NIH 2D), in fp32 - what a CPU without native bf16 kernels
runs (:func:`pcrl_lib.perf.effective_dtype`) and what the smoke profile asks for. The two
layouts alternate step by step in one process, so their ratio is one run's:

    python benchmarks/cpu_layout.py --profile demo --steps 4 --threads 1
    python benchmarks/cpu_layout.py --profile paper --dims 3 --max-batch 2 --steps 2

``--segmentation`` adds the 3D BraTS and LiTS U-Nets at the profile's patch size;
``--max-batch`` caps the batch (the paper's 32 volumes of a full-width 3D step do not fit
one CPU core's minutes); the shapes stay the profile's.

Prints one JSON line per case: ``contiguous_s`` and ``channels_last_s`` (medians over
``--steps`` forward + backward passes after one warm-up each) and ``ratio`` (contiguous /
channels-last: above 1, channels-last is faster). Why fp32 stays contiguous for now:
:func:`pcrl_lib.perf.channels_last_for`.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable

import numpy as np
import torch
from method_steps import method_images, method_step_inputs

from pcrl_lib.models.downstream import Classifier, SegmentationUNet
from pcrl_lib.paper_check import FINETUNE_SHAPES
from pcrl_lib.perf import machine_description, to_channels_last
from pcrl_lib.profiles import classifier_input_shape, finetune_settings

METHODS = ("PCRLv2", "MG", "SimSiam")
TASKS = {3: ("luna", 1), 2: ("nih", 14)}  # the study's task per dimension, outputs
SEGMENTATION = ("brats", "lits")  # the 3D segmentation tasks (channels, outputs: FINETUNE_SHAPES)


def side_by_side(
    model: torch.nn.Module,
    batch: dict,
    loss: Callable[[torch.nn.Module, dict], torch.Tensor],
    steps: int,
) -> dict:
    """Median seconds of a forward + backward pass of ``model`` on ``batch`` in both layouts,
    alternating; the channels-last copy is a deep copy (the same weights)."""
    last = to_channels_last(copy.deepcopy(model))
    last_batch = {k: to_channels_last(v) for k, v in batch.items()}
    arms = {"contiguous": (model, batch), "channels_last": (last, last_batch)}
    times: dict[str, list[float]] = {name: [] for name in arms}
    for step in range(steps + 1):
        for name, (m, b) in arms.items():
            m.zero_grad(set_to_none=True)
            start = time.perf_counter()
            loss(m, b).backward()
            if step:  # the first is a warm-up
                times[name].append(time.perf_counter() - start)
    out = {f"{name}_s": round(float(np.median(t)), 4) for name, t in times.items()}
    out["ratio"] = round(out["contiguous_s"] / out["channels_last_s"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=("smoke", "demo", "paper"))
    parser.add_argument("--dims", type=int, nargs="+", default=[3, 2], choices=(2, 3))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="the study's workers use 1")
    parser.add_argument("--max-batch", type=int, default=None, help="cap on the batch size")
    parser.add_argument(
        "--segmentation", nargs="*", default=None, choices=SEGMENTATION,
        help="3D: also these segmentation U-Nets (no name: both)",
    )  # fmt: skip
    parser.add_argument("--finetuning-only", action="store_true", help="skip the pre-training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = machine_description()

    def report(case: str, dim: int, batch: int, row: dict) -> None:
        out = {"case": case, "dim": dim, "batch": batch, **row, "profile": args.profile}
        print(json.dumps({**out, "threads": args.threads, "machine": machine}), flush=True)

    for dim in args.dims:
        images = method_images(args.profile, dim)[: args.max_batch]
        for key in () if args.finetuning_only else METHODS:
            model, batch = method_step_inputs(args.profile, dim, key, images)
            row = side_by_side(model, batch, lambda m, b: m(b)["loss"], args.steps)
            report(f"pre-training {key}", dim, len(images), row)
        asked = args.segmentation
        segmentation = [] if dim == 2 or asked is None else asked or list(SEGMENTATION)
        tasks = [TASKS[dim]] + [(t, FINETUNE_SHAPES[t][1]) for t in segmentation]
        for task, n_out in tasks:
            s = finetune_settings(args.profile, task)
            size = min(s.batch_size, args.max_batch or s.batch_size)
            torch.manual_seed(0)
            if task in SEGMENTATION:
                shape = (FINETUNE_SHAPES[task][0][0], *s.patch_size)
                model = SegmentationUNet(dim, shape[0], n_out, depth=s.depth, width=s.width)
            else:
                shape = classifier_input_shape(args.profile, task)
                model = Classifier(dim, shape[0], n_out, depth=s.depth, width=s.width)
            batch = {"image": torch.rand(size, *shape)}
            row = side_by_side(model, batch, lambda m, b: m(b["image"]).square().mean(), args.steps)
            report(f"fine-tuning {task}", dim, size, row)


if __name__ == "__main__":
    main()
