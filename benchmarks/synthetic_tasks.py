"""Are the synthetic downstream tasks learnable but hard with few labels?

Trains each task's downstream model from scratch (TS) on 10 % and on 100 % of the training
split - the same number of optimisation steps for both - and prints one JSON line per task
and label ratio with the test metric (mean AUROC or mean Dice), the data's generation speed
(cases per second on one core) and the wall time.

    python benchmarks/synthetic_tasks.py --tasks nih candidates lits brats --out /tmp/tasks
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from pcrl_lib.data.datasets import ClassificationCases, SegmentationCases
from pcrl_lib.data.prepare import prepare
from pcrl_lib.data.prepared import PreparedDataset
from pcrl_lib.data.splits import transfer
from pcrl_lib.engine.finetune import FinetuneConfig, evaluate, finetune
from pcrl_lib.metrics import BRATS_REGIONS
from pcrl_lib.models.downstream import Classifier, SegmentationUNet

TASKS = {
    # dataset, its size options, model builder, datasets builder, steps, batch
    "nih": ("synthetic-nih", {"n": 1500, "size": 64}),
    "candidates": ("synthetic-luna", {"n": 120, "crop": 32}),
    "lits": ("synthetic-lits", {"n": 30}),
    "brats": ("synthetic-brats", {"n": 30}),
}


def _build(task: str, root: Path):
    if task == "nih":
        data = PreparedDataset(root)
        make = lambda ids: ClassificationCases(data, ids, channels=3)  # noqa: E731
        model = lambda: Classifier(2, 3, 14)  # noqa: E731
        return data, make, make, model, "classification", 32
    if task == "candidates":
        data = PreparedDataset(root / "candidates")
        make = lambda ids: ClassificationCases(data, ids)  # noqa: E731
        model = lambda: Classifier(3, 1, 1, depth=4, width=0.25)  # noqa: E731
        return data, make, make, model, "classification", 16
    regions = BRATS_REGIONS if task == "brats" else {"liver": (1, 2)}
    channels = 4 if task == "brats" else 1
    data = PreparedDataset(root)
    train = lambda ids: SegmentationCases(data, ids, regions, (48, 48, 32), samples_per_case=4)  # noqa: E731
    full = lambda ids: SegmentationCases(data, ids, regions)  # noqa: E731
    model = lambda: SegmentationUNet(3, channels, len(regions), depth=4, width=0.25)  # noqa: E731
    return data, train, full, model, "segmentation", 4


def run(
    task: str, out: Path, steps: int, ratios: list[float], seed: int, args_lr: float | None = None
) -> list[dict]:
    dataset, options = TASKS[task]
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    folder = out / dataset
    info = folder / ("volumes" if task == "candidates" else "") / "prepare.json"
    cached = info.is_file()  # reuse a folder prepared by an earlier run (speed not measured)
    if cached:
        roots = [folder / "candidates"] if task == "candidates" else [folder]
    else:
        roots = prepare(dataset, folder, **options)
    speed = None if cached else round(options["n"] / (time.perf_counter() - t0), 2)
    torch.set_num_threads(2)
    data, make_train, make_eval, make_model, kind, batch = _build(
        task, roots[0].parent if task == "candidates" else roots[0]
    )
    splits = data.splits()
    results = []
    for ratio in ratios:
        ids = transfer(splits["train"], ratio)
        train = make_train(ids)
        epochs = max(1, round(steps * batch / max(len(train), 1)))
        cfg = FinetuneConfig(
            task=kind,
            epochs=epochs,
            batch_size=batch,
            lr=args_lr if args_lr else (0.05 if kind == "segmentation" else 0.1),
            dtype="bf16",
            seed=seed,
            eval_every=max(1, epochs // 10),
            patch_size=(48, 48, 32) if kind == "segmentation" else None,
            overlap=8,
        )
        torch.manual_seed(seed)
        model = make_model()
        t = time.perf_counter()
        finetune(model, train, make_eval(splits["val"]), cfg, out / "runs" / f"{task}_{ratio}")
        test = evaluate(model, make_eval(splits["test"]), cfg)
        results.append(
            {
                "task": task,
                "label_ratio": ratio,
                "train_cases": len(ids),
                "epochs": epochs,
                "test_mean": round(test["mean"], 4),
                "train_s": round(time.perf_counter() - t, 1),
                "cases": len(data.manifest),
                "generate_and_prepare_cases_per_s": speed,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps per run")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--lr", type=float, default=None, help="default 0.1 (classification), 0.05 (segmentation)"
    )
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        for task in args.tasks:
            run(task, out, args.steps, args.ratios, args.seed, args.lr)


if __name__ == "__main__":
    main()
