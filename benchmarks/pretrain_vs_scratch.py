"""PCRLv2 pre-training against training from scratch, on a CPU, over several seeds.

Pre-trains PCRLv2 on the profile's CT volumes (the LUNA role) once per pre-training seed,
then fine-tunes the task at one label ratio from each checkpoint and from random
initialisation (TS) with each fine-tuning seed. Prints one JSON line per pre-training run
(its wall time and how far it moved the encoder, :mod:`pcrl_lib.engine.drift`), one per
fine-tuning run, and a summary line: mean and standard deviation per method over the
fine-tuning seeds, per pre-training seed - the spread the demo's check compares a gap with
covers fine-tuning seeds only, and at small budgets the pre-training run moves the result
as much.

    python benchmarks/pretrain_vs_scratch.py --profile demo --task lits --ratio 0.1 \\
        --seeds 0 1 2 --pretrain-seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from pcrl_lib.engine.experiment import run_finetune, run_pretrain
from pcrl_lib.profiles import ensure_data, finetune_settings, pretrain_settings

PROTOCOL = {"luna": "semi", "lits": "transfer", "brats": "transfer"}


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=("smoke", "demo"))
    parser.add_argument("--task", default="luna", choices=sorted(PROTOCOL))
    parser.add_argument("--pretrained", default=None, help="a pre-trained last.pt to reuse")
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--data-root", default=None, help="default: $PCRL_DATA_ROOT")
    parser.add_argument("--out", default=None, help="work folder (default: temporary)")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="override the profile's")
    parser.add_argument("--finetune-epochs", type=int, default=None, help="override the profile's")
    parser.add_argument("--finetune-lr", type=float, default=None, help="override the profile's")
    parser.add_argument("--finetune-steps", type=int, default=None, help="override the profile's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        folders = ensure_data(args.profile, args.data_root, roles=("luna", args.task))
        pre = pretrain_settings(args.profile, 3)
        pre = replace(pre, epochs=args.pretrain_epochs or pre.epochs)
        fine = finetune_settings(args.profile, args.task)
        if args.finetune_epochs:  # an epoch count replaces the profile's step budget
            e = args.finetune_epochs
            fine = replace(fine, epochs=e, eval_every=max(1, e // 10), steps=None)
        if args.finetune_lr:
            fine = replace(fine, lr=args.finetune_lr)
        if args.finetune_steps:
            fine = replace(fine, steps=args.finetune_steps)
        checkpoints: dict[str, Path | None] = {"TS": None}
        if args.pretrained:
            checkpoints["PCRLv2"] = Path(args.pretrained)
        else:
            for pseed in args.pretrain_seeds:
                t = time.perf_counter()
                folder = out / f"pretrain_s{pseed}"
                summary = run_pretrain(
                    folders["luna"] / "volumes", pre, folder, progress_bar=False, seed=pseed
                )
                checkpoints[f"PCRLv2/p{pseed}"] = folder / "last.pt"
                line = {"pretrain_seed": pseed, "pretrain_s": round(time.perf_counter() - t, 1)}
                drift = summary["encoder_drift"] or {}
                line["encoder_drift"] = {k: round(v, 3) for k, v in drift.items()}
                print(json.dumps(line), flush=True)
        scores: dict[str, list[float]] = {name: [] for name in checkpoints}
        for seed in args.seeds:
            for name, weights in checkpoints.items():
                rec = run_finetune(
                    args.task, folders[args.task], fine,
                    out / f"{name.replace('/', '_')}_{seed}", checkpoint=weights,
                    protocol=PROTOCOL[args.task], label_ratio=args.ratio, seed=seed,
                )  # fmt: skip
                scores[name].append(rec["metrics"]["mean"])
                line = {"method": name, "seed": seed, "mean": round(rec["metrics"]["mean"], 4)}
                line["ci"] = [round(v, 3) for v in rec["metrics"]["mean_ci"]]
                print(json.dumps({**line, "wall_s": rec["wall_s"]}), flush=True)
        summary = {name: _stats(v) for name, v in scores.items()}
        print(json.dumps({"task": args.task, "ratio": args.ratio, "seeds": args.seeds, **summary}))


if __name__ == "__main__":
    main()
