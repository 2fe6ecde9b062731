"""The pre-training budget study (:mod:`pcrl_lib.budget`): pre-train PCRLv2, MG and SimSiam
on the synthetic LUNA volumes and NIH-like X-rays, measure a linear probe and a fine-tuning
at every budget, and write the two study tables.

Run by run, seed by seed, up to ``--upto`` steps. Each finished run writes its records (for
the demo into ``results/studies/pretrain_budget_records/``, committed: a run whose records
exist is never run again, on any machine) and, for the demo at its largest budget, adds its
encoder to the zoo when the zoo ships it (:func:`pcrl_lib.zoo.add_run_to_zoo`). The two
tables are rewritten once every record of the plan up to ``--upto`` exists; until then the
script says which are missing. Meant for the background, across sessions:

    nohup python benchmarks/pretrain_budget.py --profile demo --upto 3000 > budget.log &

``--start-by`` leaves runs not begun by then for a later call (a run is about an hour on
one core: do not start what the machine will not finish).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from functools import partial

from pcrl_lib.budget import (
    COMMITTED_RECORDS,
    PLANS,
    missing_records,
    precision_changes,
    records_dir,
    run_study,
    study_dir,
    write_study,
)
from pcrl_lib.engine.experiment import default_device
from pcrl_lib.grid import MAIN_TABLES, PROBE_TABLES
from pcrl_lib.paths import REPO_ROOT
from pcrl_lib.profiles import ensure_data
from pcrl_lib.workers import default_workers
from pcrl_lib.zoo import ZOO_DIR, add_run_to_zoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=tuple(PLANS))
    parser.add_argument("--upto", type=int, default=None, help="default: the plan's largest")
    parser.add_argument("--workers", type=int, default=None, help="runs at a time")
    parser.add_argument("--data-root", default=None, help="default: $PCRL_DATA_ROOT")
    parser.add_argument("--results", default=None, help="default: $PCRL_RESULTS")
    parser.add_argument("--out", default=None, help="where the two tables go")
    parser.add_argument("--records", default=None, help="demo: results/studies/...records")
    parser.add_argument("--zoo", default=None, help="demo: results/zoo; 'none': no zoo")
    parser.add_argument("--sources", nargs="+", default=None, help="a part of the plan's")
    parser.add_argument("--methods", nargs="+", default=None, help="a part of the plan's")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="a part of the plan's")
    parser.add_argument(
        "--start-by", type=float, default=None, help="minutes from now: no run starts later"
    )
    args = parser.parse_args()
    full = plan = PLANS[args.profile]
    for name in ("sources", "methods", "seeds"):  # e.g. the 3D runs here, the 2D ones on a GPU
        chosen = getattr(args, name)
        if chosen is not None:
            unknown = sorted(set(chosen) - set(getattr(plan, name)))
            if unknown:
                parser.error(f"--{name} {unknown} not in the plan's {getattr(plan, name)}")
            plan = replace(plan, **{name: tuple(chosen)})
    if args.profile == "demo" and args.records is None:
        changes = precision_changes(plan, args.profile, default_device())
        if changes:
            parser.error(
                "the committed records were measured at their settings' precision, which this "
                f"machine would change ({'; '.join(changes)}: no native bf16 kernels on this "
                "CPU). Run the study on a CPU with AVX-512 or on a GPU, or set "
                "PCRL_CPU_AUTOCAST=on (bf16 as asked, 10-50x slower here), or write the "
                "records elsewhere (--records DIR)"
            )
    tasks = {MAIN_TABLES[PROBE_TABLES[s]].task for s in plan.sources}
    folders = ensure_data(args.profile, args.data_root, roles=tuple(set(plan.sources) | tasks))
    workers = default_workers(args.profile) if args.workers is None else args.workers
    demo = args.profile == "demo"
    records = args.records or (COMMITTED_RECORDS if demo else None)
    records = records_dir(args.profile, args.results, records)
    out = args.out or (REPO_ROOT / "results" / "studies" if demo else None)
    out = out or study_dir(args.profile, args.results)
    upto = plan.budgets[-1] if args.upto is None else args.upto
    zoo = args.zoo or (str(ZOO_DIR) if demo and upto == full.budgets[-1] else "none")
    after_run = None
    if zoo != "none":
        after_run = partial(add_run_to_zoo, steps=upto, profile=args.profile, out=zoo)
    start_by = None if args.start_by is None else time.time() + 60 * args.start_by
    run_study(
        args.profile, folders, plan, upto, args.results, workers, records, after_run, start_by
    )
    missing = missing_records(full, upto, records)
    if missing:
        print(json.dumps({"upto": upto, "missing_records": missing, "tables": "not rewritten"}))
        return
    paths = write_study(args.profile, out, args.results, records)
    print(json.dumps({"upto": upto, "written": [str(p) for p in paths]}), flush=True)


if __name__ == "__main__":
    main()
