"""PCRLv2 pre-training against training from scratch, on a CPU, over several seeds.

Pre-trains PCRLv2 once on the profile's CT volumes (the LUNA role), then fine-tunes the
task at one label ratio from that checkpoint and from random initialisation (TS) with each
seed, and prints one JSON line per run and a summary line (mean and spread per method).

    python benchmarks/pretrain_vs_scratch.py --profile demo --task luna --ratio 0.1 --seeds 0 1 2
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=("smoke", "demo"))
    parser.add_argument("--task", default="luna", choices=sorted(PROTOCOL))
    parser.add_argument("--pretrained", default=None, help="a pre-trained last.pt to reuse")
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
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
        t = time.perf_counter()
        ckpt = out / "pretrain" / "last.pt"
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
        if args.pretrained:
            ckpt = Path(args.pretrained)
        else:
            run_pretrain(folders["luna"] / "volumes", pre, ckpt.parent, progress_bar=False)
        print(json.dumps({"pretrain_s": round(time.perf_counter() - t, 1)}), flush=True)
        scores: dict[str, list[float]] = {"PCRLv2": [], "TS": []}
        for seed in args.seeds:
            for method, weights in (("PCRLv2", ckpt), ("TS", None)):
                rec = run_finetune(
                    args.task, folders[args.task], fine,
                    out / f"{method}_{seed}", checkpoint=weights, protocol=PROTOCOL[args.task],
                    label_ratio=args.ratio, seed=seed,
                )  # fmt: skip
                scores[method].append(rec["metrics"]["mean"])
                line = {"method": method, "seed": seed, "mean": round(rec["metrics"]["mean"], 4)}
                print(
                    json.dumps(
                        {
                            **line,
                            "ci": [round(v, 3) for v in rec["metrics"]["mean_ci"]],
                            "wall_s": rec["wall_s"],
                        }
                    ),
                    flush=True,
                )
        summary = {
            m: {"mean": round(float(np.mean(v)), 4), "std": round(float(np.std(v)), 4)}
            for m, v in scores.items()
        }
        print(json.dumps({"task": args.task, "ratio": args.ratio, "seeds": args.seeds, **summary}))


if __name__ == "__main__":
    main()
