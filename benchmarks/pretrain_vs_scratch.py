"""PCRLv2 pre-training against training from scratch at one cell of Tables IV-VIII, over
fine-tuning seeds and pre-training seeds - the demo's check, measured with its spread.

Pre-trains PCRLv2 on the table's source (LUNA CT volumes, NIH or CheXpert X-rays) once per
pre-training seed with the profile's settings, then fine-tunes the table's task at one label
ratio (default: the table's lowest) from each checkpoint and from random initialisation
(TS), with each fine-tuning seed. ``--supervised-reference`` (X-ray sources) adds an
encoder trained with the source's own labels - an upper reference for what an
initialisation can give at this fine-tuning budget (for Table IV, whose source is the
task's own data, it has seen every training label: an oracle).

Prints one JSON line per pre-training run (wall time; how far it moved the encoder,
:mod:`pcrl_lib.engine.drift`), one per fine-tuning run, and a summary line: mean and
standard deviation over the fine-tuning seeds per initialisation, and for each its gap to
TS against the spread (the sum of the two standard deviations, as in the 07 report). The
spread covers fine-tuning seeds only; the pre-training seeds show how much the pre-training
run moves the result besides. Runs use one thread, as the grid's do: with bf16 the sums,
and so the numbers, depend on the thread count.

    python benchmarks/pretrain_vs_scratch.py --profile demo --table table8 \\
        --seeds 0 1 2 --pretrain-seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from pcrl_lib.engine.experiment import run_finetune, run_pretrain
from pcrl_lib.grid import MAIN_TABLES, PretrainRun, source_folder
from pcrl_lib.profiles import ensure_data, finetune_settings, pretrain_settings
from pcrl_lib.report import seed_spread, seed_stats


def _summary(scores: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Mean and std per initialisation; for each but TS, its gap to TS and the spread (the
    07 report's rule, :func:`pcrl_lib.report.seed_spread`)."""
    stats = {k: seed_stats(v) for k, v in scores.items()}
    out = {k: {"mean": s[0], "std": s[1]} for k, s in stats.items()}
    for name, s in out.items():
        if name != "TS":
            s["gap"] = s["mean"] - out["TS"]["mean"]
            s["spread"] = seed_spread(stats[name], stats["TS"])
            s["beats_ts"] = bool(s["gap"] > s["spread"])
    rounded = lambda s: {m: round(x, 2) if isinstance(x, float) else x for m, x in s.items()}  # noqa: E731
    return {k: rounded(s) for k, s in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=("smoke", "demo"))
    parser.add_argument("--table", default="table8", choices=sorted(MAIN_TABLES))
    parser.add_argument("--ratio", type=float, default=None, help="default: the table's lowest")
    parser.add_argument("--pretrained", default=None, help="a pre-trained last.pt to reuse")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--supervised-reference", action="store_true")
    parser.add_argument("--reference-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="1: as the grid's runs")
    parser.add_argument("--data-root", default=None, help="default: $PCRL_DATA_ROOT")
    parser.add_argument("--out", default=None, help="work folder (default: temporary)")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="override the profile's")
    parser.add_argument("--finetune-lr", type=float, default=None, help="override the profile's")
    parser.add_argument("--finetune-steps", type=int, default=None, help="override the profile's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # bf16 sums depend on it: same threads, same numbers
    spec = MAIN_TABLES[args.table]
    ratio = spec.ratios[0] if args.ratio is None else args.ratio
    source = PretrainRun(spec.source, "PCRLv2")
    if args.supervised_reference and source.spatial_dims != 2:
        parser.error(
            f"--supervised-reference needs an X-ray source; {args.table}'s is {spec.source}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        folders = ensure_data(args.profile, args.data_root, roles=(spec.source, spec.task))
        pre = pretrain_settings(args.profile, source.spatial_dims)
        pre = replace(pre, epochs=args.pretrain_epochs or pre.epochs)
        fine = finetune_settings(args.profile, spec.task)
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
                    source_folder(folders, spec.source), pre, folder, progress_bar=False, seed=pseed
                )
                checkpoints[f"PCRLv2/p{pseed}"] = folder / "last.pt"
                drift = {k: round(v, 3) for k, v in (summary["encoder_drift"] or {}).items()}
                line = {"pretrain_seed": pseed, "pretrain_s": round(time.perf_counter() - t, 1)}
                print(json.dumps({**line, "encoder_drift": drift}), flush=True)
        if args.supervised_reference:  # the task's model trained on all of the source's labels
            t = time.perf_counter()
            run_finetune(
                spec.task, folders[spec.source], replace(fine, steps=args.reference_steps),
                out / "supervised", protocol="full",
            )  # fmt: skip
            checkpoints["supervised"] = out / "supervised" / "best.pt"
            print(json.dumps({"supervised_s": round(time.perf_counter() - t, 1)}), flush=True)
        scores: dict[str, list[float]] = {name: [] for name in checkpoints}
        for seed in args.seeds:
            for name, weights in checkpoints.items():
                rec = run_finetune(
                    spec.task, folders[spec.task], fine,
                    out / f"{name.replace('/', '_')}_{seed}", checkpoint=weights,
                    protocol=spec.protocol, label_ratio=ratio, seed=seed,
                )  # fmt: skip
                scores[name].append(100 * rec["metrics"]["mean"])
                line = {"init": name, "seed": seed, "score": round(scores[name][-1], 2)}
                print(json.dumps({**line, "wall_s": rec["wall_s"]}), flush=True)
        head = {"table": args.table, "task": spec.task, "ratio": ratio, "seeds": args.seeds}
        print(json.dumps({**head, **_summary(scores)}))


if __name__ == "__main__":
    main()
