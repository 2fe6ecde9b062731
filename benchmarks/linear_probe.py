"""Linear probes of the grid's pre-trained encoders against the same encoder at random
initialisation, for one classification table (IV: NIH semi, V: LUNA, VI: CheXpert -> NIH).

Reads the checkpoints a reproduction left under ``results/<profile>/pretrain/`` and
prints one JSON line per method and label ratio (the probe's test AUROC, %) - what the
representation holds apart from the fine-tuning budget (:mod:`pcrl_lib.engine.probe`).

    python benchmarks/linear_probe.py --profile demo --table table4 --ratios 0.05 1.0
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from pcrl_lib.engine.experiment import labelled_ids
from pcrl_lib.engine.probe import linear_probe
from pcrl_lib.grid import MAIN_TABLES, PretrainRun, pretrain_dir
from pcrl_lib.models.downstream import load_pretrained_encoder
from pcrl_lib.profiles import ensure_data, finetune_settings
from pcrl_lib.tasks import get_task

CLASSIFICATION_TABLES = ("table4", "table5", "table6")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=("smoke", "demo", "paper"))
    parser.add_argument("--table", default="table4", choices=CLASSIFICATION_TABLES)
    parser.add_argument("--methods", nargs="+", default=None, help="default: the table's")
    parser.add_argument("--ratios", type=float, nargs="+", default=None, help="default: lowest, 1")
    parser.add_argument("--c", type=float, default=0.1, help="inverse L2 strength")
    parser.add_argument("--seed", type=int, default=0, help="random initialisation's seed")
    parser.add_argument("--data-root", default=None, help="default: $PCRL_DATA_ROOT")
    parser.add_argument("--results", default=None, help="default: $PCRL_RESULTS")
    args = parser.parse_args()
    spec = MAIN_TABLES[args.table]
    task = get_task(spec.task)
    folder = ensure_data(args.profile, args.data_root, roles=(spec.task,))[spec.task]
    data = task.data(folder)
    splits = data.splits()
    settings = finetune_settings(args.profile, spec.task)
    methods = args.methods or [m for m in spec.methods if m != "IN"]
    ratios = args.ratios or [spec.ratios[0], 1.0]
    names = task.class_names(data)
    for method in methods:
        torch.manual_seed(args.seed)
        model = task.model(data, settings.depth, settings.width)
        if method != "TS":
            ckpt = pretrain_dir(args.profile, PretrainRun(spec.source, method), args.results)
            load_pretrained_encoder(model, ckpt / "last.pt")
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        for ratio in ratios:
            model.load_state_dict(initial)  # each probe from the same running statistics
            ids = labelled_ids(splits["train"], spec.protocol, ratio)
            t = time.perf_counter()
            out = linear_probe(
                model,
                task.dataset(data, ids),
                task.dataset(data, splits["test"]),
                args.c,
                settings.batch_size,
                settings.dtype,
                names,
            )
            line = {
                "table": args.table,
                "method": "random init" if method == "TS" else method,
                "ratio": ratio,
                "labelled": len(ids),
                "auroc": round(100 * out["mean"], 1),
                "unfitted": len(out["unfitted"]),
                "seconds": round(time.perf_counter() - t, 1),
            }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
