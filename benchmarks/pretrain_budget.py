"""The pre-training budget study (:mod:`pcrl_lib.budget`): pre-train PCRLv2, MG and SimSiam
on the synthetic LUNA volumes and NIH-like X-rays, measure a linear probe and a fine-tuning
at every budget, and write the two study tables.

Budget by budget up to ``--upto`` steps; runs extend from their checkpoints and measured
snapshots are kept, so the study can be stopped (or killed) and started again, across
sessions. Meant for the background:

    nohup python benchmarks/pretrain_budget.py --profile demo --upto 3000 > budget.log &

Writes ``pretrain_budget.csv`` and ``pretrain_budget_gains.csv`` after every budget - for
the demo into ``results/studies/`` (committed), else into ``<results>/<profile>/budget/``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from pcrl_lib.budget import PLANS, run_study, study_dir, write_study
from pcrl_lib.grid import MAIN_TABLES, PROBE_TABLES
from pcrl_lib.paths import REPO_ROOT
from pcrl_lib.profiles import ensure_data
from pcrl_lib.workers import default_workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=tuple(PLANS))
    parser.add_argument("--upto", type=int, default=None, help="default: the plan's largest")
    parser.add_argument("--workers", type=int, default=None, help="runs at a time")
    parser.add_argument("--data-root", default=None, help="default: $PCRL_DATA_ROOT")
    parser.add_argument("--results", default=None, help="default: $PCRL_RESULTS")
    parser.add_argument("--out", default=None, help="where the two tables go")
    parser.add_argument("--sources", nargs="+", default=None, help="a part of the plan's")
    parser.add_argument("--methods", nargs="+", default=None, help="a part of the plan's")
    args = parser.parse_args()
    plan = PLANS[args.profile]
    for name in ("sources", "methods"):  # e.g. the 3D runs here, the 2D ones on a GPU
        chosen = getattr(args, name)
        if chosen is not None:
            unknown = sorted(set(chosen) - set(getattr(plan, name)))
            if unknown:
                parser.error(f"--{name} {unknown} not in the plan's {getattr(plan, name)}")
            plan = replace(plan, **{name: tuple(chosen)})
    tasks = {MAIN_TABLES[PROBE_TABLES[s]].task for s in plan.sources}
    folders = ensure_data(args.profile, args.data_root, roles=tuple(set(plan.sources) | tasks))
    workers = default_workers(args.profile) if args.workers is None else args.workers
    default_out = REPO_ROOT / "results" / "studies" if args.profile == "demo" else None
    out = args.out or default_out or study_dir(args.profile, args.results)
    upto = plan.budgets[-1] if args.upto is None else args.upto
    budgets = [b for b in plan.budgets if 0 < b <= upto]
    for budget in budgets:
        rows = run_study(args.profile, folders, plan, budget, args.results, workers)
        if budget != budgets[-1] and all(r["status"] == "done before" for r in rows):
            continue  # a resumed study: nothing new below the last budget to tabulate
        paths = write_study(args.profile, out, args.results)
        print(json.dumps({"budget": budget, "written": [str(p) for p in paths]}), flush=True)


if __name__ == "__main__":
    main()
