"""Command line: ``python -m pcrl_lib <command> --help``."""

from __future__ import annotations

import argparse
import logging
import sys
import zipfile

from pcrl_lib.paths import PROFILES, data_root


def _reproduce(args: argparse.Namespace) -> int:
    from pcrl_lib.reproduce import run_reproduction

    runs = run_reproduction(
        profile=args.profile,
        data_dir=args.data_root,
        results_dir=args.results,
        kernel_name=args.kernel,
    )
    total = sum(r.seconds for r in runs)
    print(f"reproduction '{args.profile}': {len(runs)} notebook(s) executed in {total:.0f} s")
    return 0


def _parse_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (numbers, lists), else a string."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def _non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0 (argparse reports anything else, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _prepare(args: argparse.Namespace) -> int:
    from pcrl_lib.data.prepare import DATASETS, options_of, prepare

    if args.list or args.dataset is None:
        for name in DATASETS:
            opts = ", ".join(f"{k}={v!r}" for k, v in options_of(name).items())
            print(f"{name:20s} {opts}")
        return 0 if args.list else 2
    out = args.out or str(data_root() / args.dataset)
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in (args.option or [])}
    for root in prepare(args.dataset, out, raw=args.raw, **options):
        print(f"prepared {root}")
    return 0


def _settings_with(base, args: argparse.Namespace, names: tuple[str, ...]):
    """``base`` settings with the command line's overrides (flags left unset keep the profile's)."""
    from dataclasses import replace

    changes = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return replace(base, **changes)


def _pretrain(args: argparse.Namespace) -> int:
    import json

    from pcrl_lib.data.prepared import PreparedDataset
    from pcrl_lib.engine.experiment import run_pretrain
    from pcrl_lib.profiles import pretrain_settings

    data = PreparedDataset(args.data)
    dims = data.load(data.manifest.index[0])["image"].ndim - 1
    settings = _settings_with(
        pretrain_settings(args.profile, dims),
        args,
        ("epochs", "batch_size", "lr", "dtype", "encoder_init"),
    )
    summary = run_pretrain(
        args.data, settings, args.out, method=args.method, preset=args.preset, split=args.split, seed=args.seed,
        num_workers=args.workers, progress_bar=not args.quiet,
    )  # fmt: skip
    print(json.dumps(summary))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace

    from pcrl_lib.engine.experiment import record_path, record_stem, run_finetune
    from pcrl_lib.profiles import finetune_settings

    names = ("epochs", "batch_size", "lr", "dtype")
    settings = _settings_with(finetune_settings(args.profile, args.task), args, names)
    if args.epochs is not None:  # an explicit epoch count replaces a step budget
        settings = replace(settings, steps=None)
    method = args.method or ("PCRLv2" if args.checkpoint else "TS")
    stem = record_stem(
        args.task, args.protocol, args.label_ratio, method, args.seed, draw=args.draw
    )
    record_file = args.record or record_path(args.profile, stem)
    record = run_finetune(
        args.task, args.data, settings, args.out, checkpoint=args.checkpoint, protocol=args.protocol,
        label_ratio=args.label_ratio, seed=args.seed, record=record_file,
        record_fields={"method": method}, draw=args.draw,
    )  # fmt: skip
    print(json.dumps({"record": str(record_file), "metrics": record["metrics"]}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    import torch

    from pcrl_lib.engine.experiment import finetune_config
    from pcrl_lib.engine.finetune import evaluate, with_intervals
    from pcrl_lib.profiles import finetune_settings
    from pcrl_lib.tasks import get_task

    spec, settings = get_task(args.task), finetune_settings(args.profile, args.task)
    data = spec.data(args.data)
    model = spec.model(data, settings.depth, settings.width)
    try:
        model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    except (RuntimeError, KeyError) as err:
        raise ValueError(
            f"{args.weights}: not weights of the {args.task} model at profile {args.profile} ({err})"
        ) from err
    cfg = finetune_config(spec.kind, settings)
    result = evaluate(
        model, spec.dataset(data, data.splits()[args.split]), cfg, spec.class_names(data)
    )
    print(json.dumps(with_intervals(result, spec.kind)))
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile", choices=PROFILES, default="demo", help="settings to start from (default demo)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    p.add_argument("--batch-size", type=int, default=None, help="override the profile's batch size")
    p.add_argument("--lr", type=float, default=None, help="override the profile's learning rate")
    p.add_argument(
        "--dtype", choices=("fp32", "bf16", "fp16"), default=None, help="autocast precision"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m pcrl_lib`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m pcrl_lib",
        description="PCRLv2 companion: regenerate the paper's tables and figures.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "reproduce",
        help="execute the sequenced notebooks with papermill for one profile",
        description=(
            "Execute notebooks/NN_*.ipynb in order and write the executed notebooks, tables "
            "and figures under results/<profile>/. smoke: minutes, numbers meaningless; "
            "demo (default): synthetic data on a CPU; paper: real datasets on GPUs."
        ),
    )
    rep.add_argument("--profile", choices=PROFILES, default="demo")
    rep.add_argument(
        "--data-root",
        default=None,
        help="prepared data folder (default: $PCRL_DATA_ROOT or ~/.cache/pcrl_lib/data)",
    )
    rep.add_argument(
        "--results", default=None, help="results root (default: $PCRL_RESULTS or ./results)"
    )
    rep.add_argument("--kernel", default=None, help="Jupyter kernel name (default: python3)")
    rep.set_defaults(func=_reproduce)

    prep = sub.add_parser(
        "prepare",
        help="convert a downloaded dataset (or generate a synthetic one) to the prepared format",
        description=(
            "Prepare one dataset: real ones read their published layout from --raw "
            "(luna, lits, brats, nih, chexpert, medmnist); synthetic-* ones are generated. "
            "The output folder gets manifest.csv, cases/*.npz, splits/ and prepare.json. "
            "`--list` shows every dataset with its options and defaults."
        ),
        epilog=(
            "examples:\n"
            "  python -m pcrl_lib prepare luna --raw ~/data/LUNA16 --out ~/prepared/luna\n"
            "  python -m pcrl_lib prepare synthetic-nih --out /tmp/nih --option n=500 --option size=64\n"
            "  python -m pcrl_lib prepare medmnist --raw ~/medmnist --out /tmp/organ --option name=organmnist3d"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prep.add_argument("dataset", nargs="?", help="dataset name (see --list)")
    prep.add_argument("--raw", default=None, help="the downloaded dataset's folder (real datasets)")
    prep.add_argument(
        "--out", default=None, help="output folder (default: $PCRL_DATA_ROOT/<dataset>)"
    )
    prep.add_argument(
        "--option",
        action="append",
        type=_parse_option,
        metavar="KEY=VALUE",
        help="a preparation option, repeatable (e.g. n=200, size=64, shape=[96,96,64])",
    )
    prep.add_argument("--list", action="store_true", help="list datasets and their options")
    prep.set_defaults(func=_prepare)

    pre = sub.add_parser(
        "pretrain",
        help="pre-train PCRLv2 or a baseline on a prepared image dataset (CT volumes or X-rays)",
        description=(
            "Pre-train PCRLv2 or a baseline (--method; one loop: SGD, cosine decay, checkpoints "
            "every epoch). Start it "
            "again on the same --out to resume from last.pt. For several GPUs launch it with "
            "`torchrun --nproc_per_node N -m pcrl_lib pretrain ...`."
        ),
        epilog="example:\n  python -m pcrl_lib pretrain --data ~/prepared/luna/volumes --out runs/pcrlv2_luna --profile paper",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pre.add_argument(
        "--data", required=True, help="prepared folder of images (LUNA: <out>/volumes)"
    )
    pre.add_argument("--out", required=True, help="run folder: last.pt and log.jsonl go there")
    pre.add_argument(
        "--preset",
        choices=("paper", "official"),
        default="paper",
        help="PCRLv2 as the paper describes it, or as the official code does it",
    )
    pre.add_argument(
        "--method",
        default="PCRLv2",
        choices=("PCRLv2", "SimSiam", "C2L", "PCRLv1", "MG", "TransVW", "Cube++", "3D-CPC"),
        help="the method, by its key in the paper's tables (default PCRLv2)",
    )
    pre.add_argument(
        "--split", default="train", help="which split's cases to pre-train on (default train)"
    )
    pre.add_argument(
        "--encoder-init",
        metavar="FILE|imagenet",
        help=(
            "start the encoder from these weights instead of a random initialisation; "
            "'imagenet': torchvision's ResNet-18 file ($PCRL_IMAGENET_WEIGHTS or the torch hub "
            "cache; never downloaded), as the official 2D code starts (smp's default)"
        ),
    )
    pre.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    pre.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_common(pre)
    pre.set_defaults(func=_pretrain)

    fin = sub.add_parser(
        "finetune",
        help="fine-tune a downstream model (from a checkpoint or from scratch) and test it",
        description=(
            "Fine-tune on the labelled part of the training split (protocol + label ratio), "
            "keep the epoch with the best validation score, test with bootstrap 95% "
            "intervals and write one JSON run record."
        ),
        epilog="example:\n  python -m pcrl_lib finetune luna --data ~/prepared/luna --checkpoint runs/pcrlv2_luna/last.pt --label-ratio 0.1 --out runs/ft",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fin.add_argument("task", choices=("luna", "nih", "brats", "lits"), help="downstream task")
    fin.add_argument(
        "--data",
        required=True,
        help="the task's prepared folder (LUNA: the folder holding candidates/)",
    )
    fin.add_argument("--out", required=True, help="run folder: best.pt and log.jsonl")
    fin.add_argument(
        "--checkpoint",
        default=None,
        help="pre-trained weights for the encoder (omit: train from scratch)",
    )
    fin.add_argument(
        "--protocol",
        choices=("semi", "transfer", "full"),
        default="semi",
        help="which labelled cases (default semi)",
    )
    fin.add_argument(
        "--label-ratio",
        type=float,
        default=1.0,
        help="fraction of the training split labelled (default 1.0)",
    )
    fin.add_argument(
        "--draw",
        type=_non_negative_int,
        default=0,
        help="label draw: 0 the official ordered list (default), d > 0 the patients reordered "
        "with seed d - which labelled subset the ratio takes",
    )
    fin.add_argument(
        "--record",
        default=None,
        help="run record path (default results/<profile>/runs/<task>_<protocol>_r<ratio>_<method>_s<seed>.json)",
    )
    fin.add_argument(
        "--method",
        default=None,
        help="method name in the record (default PCRLv2 with a checkpoint, TS without)",
    )
    _add_common(fin)
    fin.set_defaults(func=_finetune)

    ev = sub.add_parser(
        "evaluate",
        help="test fine-tuned weights on a split, with bootstrap intervals",
        description="Evaluate fine-tuned weights (best.pt of a finetune run) and print the metrics as JSON.",
    )
    ev.add_argument("task", choices=("luna", "nih", "brats", "lits"))
    ev.add_argument("--data", required=True, help="the task's prepared folder")
    ev.add_argument("--weights", required=True, help="best.pt written by finetune")
    ev.add_argument("--split", default="test", help="split to evaluate (default test)")
    ev.add_argument(
        "--profile", choices=PROFILES, default="demo", help="the profile the model was trained at"
    )
    ev.set_defaults(func=_evaluate)

    grid = sub.add_parser(
        "grid",
        help="list the reproduction's runs and their state, or run one pre-training run of it",
        description=(
            "The runs behind Tables I-VIII at a profile (pcrl_lib/grid.py). --list shows each "
            "pre-training run and whether it is done, and how many fine-tuning records exist. "
            "--pretrain NAME runs one pre-training run where notebook 02 looks for it, so the "
            "notebooks then skip it: on several GPUs, start it with torchrun. --check runs every "
            "run's training step twice at the profile's shapes and batch sizes on this device "
            "(gradient accumulation past --max-batch or the device's memory) and extrapolates "
            "the grid's device-hours (pcrl_lib/paper_check.py); it writes "
            "<results>/<profile>/paper_check.json."
        ),
        epilog=(
            "examples:\n  python -m pcrl_lib grid --profile demo --list\n"
            "  python -m pcrl_lib grid --profile paper --check              # on a GPU\n"
            "  python -m pcrl_lib grid --profile paper --check --max-batch 2 --dtype bf16  # CPU\n"
            "  torchrun --nproc_per_node 8 -m pcrl_lib grid --profile paper --pretrain luna_PCRLv2"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid.add_argument("--profile", choices=PROFILES, default="demo")
    grid.add_argument("--data-root", default=None, help="default: $PCRL_DATA_ROOT")
    what = grid.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="the runs and their state")
    what.add_argument("--pretrain", metavar="NAME", help="one pre-training run, e.g. luna_PCRLv2")
    what.add_argument("--check", action="store_true", help="two steps of every run's workload")
    grid.add_argument("--max-batch", type=int, default=None, help="--check: micro-batch cap")
    grid.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="--check")
    grid.add_argument("--only", nargs="+", default=None, help="--check: these workloads")
    grid.add_argument("--results", default=None, help="--check: default $PCRL_RESULTS")
    grid.set_defaults(func=_grid)

    zoo = sub.add_parser(
        "zoo",
        help="build or verify the shipped pre-trained encoders (results/zoo)",
        description=(
            "build: export the pre-training budget study's encoders after --steps steps "
            "(pre-training any that is missing) into results/zoo with a manifest of SHA-256 "
            "hashes, loss curves and probes. verify: check every file against its hash."
        ),
    )
    zoo.add_argument("action", choices=("build", "verify"))
    zoo.add_argument("--steps", type=int, default=None, help="build: the budget (steps)")
    zoo.add_argument("--seeds-2d", type=int, nargs="+", default=[0], help="build: NIH seeds")
    zoo.add_argument(
        "--methods-2d", nargs="+", default=["PCRLv2"], help="build: NIH methods (80 MB cap)"
    )
    zoo.add_argument(
        "--max-mb", type=float, default=80.0, help="build: size cap (the committed zoo: 80)"
    )
    zoo.add_argument("--data-root", default=None, help="default: $PCRL_DATA_ROOT")
    zoo.add_argument("--results", default=None, help="the study's results root")
    zoo.set_defaults(func=_zoo)
    return parser


def _zoo(args: argparse.Namespace) -> int:
    from pcrl_lib import zoo
    from pcrl_lib.budget import COMMITTED_RECORDS
    from pcrl_lib.grid import MAIN_TABLES, PROBE_TABLES
    from pcrl_lib.profiles import ensure_data

    if args.action == "verify":
        entries = zoo.verify_zoo()
        print(f"{len(entries)} zoo files match their SHA-256 ({zoo.ZOO_DIR})")
        return 0
    if args.steps is None or args.steps < 1:
        raise ValueError("zoo build needs --steps N (N >= 1): the budget to ship")
    entries = zoo.zoo_entries(seeds_2d=tuple(args.seeds_2d), methods_2d=tuple(args.methods_2d))
    roles = {e.source for e in entries} | {
        MAIN_TABLES[PROBE_TABLES[e.source]].task for e in entries
    }
    folders = ensure_data("demo", args.data_root, roles=tuple(sorted(roles)))
    manifest = zoo.build_zoo(
        args.steps,
        folders,
        entries,
        results=args.results,
        max_bytes=int(args.max_mb * 1e6),
        records=COMMITTED_RECORDS,  # the demo study's (benchmarks/pretrain_budget.py)
    )
    size = sum(e["bytes"] for e in manifest["entries"]) / 1e6
    print(f"{len(manifest['entries'])} encoders, {size:.1f} MB, in {zoo.ZOO_DIR}")
    return 0


def _grid(args: argparse.Namespace) -> int:
    from pcrl_lib import grid
    from pcrl_lib.engine.distributed import init_from_env
    from pcrl_lib.profiles import ensure_data

    if args.check:
        return _paper_check(args)
    runs = grid.pretrain_runs(args.profile)
    if args.list:
        for run in runs:
            folder = grid.pretrain_dir(args.profile, run)
            state = (
                "done"
                if (folder / "summary.json").is_file()
                else ("failed" if (folder / "failed.json").is_file() else "to run")
            )
            print(f"pretrain  {run.name:32s} {state}")
        fine = grid.finetune_runs(args.profile)
        done = sum(grid.record_file(args.profile, r).is_file() for r in fine)
        print(f"finetune  {done} of {len(fine)} runs have a record")
        return 0
    by_name = {r.name: r for r in runs}
    if args.pretrain not in by_name:
        raise ValueError(f"no pre-training run {args.pretrain!r}; see --list")
    run = by_name[args.pretrain]
    init_from_env()
    probe_task = grid.MAIN_TABLES[grid.PROBE_TABLES[run.source]].task  # the run's probe
    folders = ensure_data(args.profile, args.data_root, roles=tuple({run.source, probe_task}))
    print(grid.pretrain_one(args.profile, run, folders, None))
    return 0


def _paper_check(args: argparse.Namespace) -> int:
    import json

    from pcrl_lib import paper_check
    from pcrl_lib.engine.experiment import default_device
    from pcrl_lib.grid import output_dir
    from pcrl_lib.io import write_json_atomic

    if args.max_batch is not None and args.max_batch < 1:
        raise ValueError(f"--max-batch must be >= 1, got {args.max_batch}")
    if args.profile != "paper":
        raise ValueError("--check measures the paper grid's shapes: run it with --profile paper")
    header = f"{'workload':30s} {'runs':>5s} {'batch':>6s} {'micro':>6s} {'step s':>9s} {'peak MB':>9s} {'h/run':>9s} {'h total':>10s}"
    print(header)

    def show(r: dict) -> None:
        print(
            f"{r['name']:30s} {r['runs']:5d} {r['batch']:6d} {r['micro_batch']:6d} "
            f"{r['step_s']:9.3f} {r['peak_mb']:9.0f} {r['run_hours']:9.2f} {r['total_hours']:10.1f}",
            flush=True,
        )

    result = paper_check.check(default_device(), args.max_batch, args.dtype, args.only, report=show)
    path = output_dir(args.profile, args.results) / "paper_check.json"
    write_json_atomic(path, result)
    summary = {k: v for k, v in result.items() if k != "rows"}
    print(json.dumps({**summary, "written": str(path)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError, KeyError, EOFError, zipfile.BadZipFile) as err:
        # OSError: a file or folder that cannot be written or read (e.g. --out is a file);
        # BadZipFile / EOFError: a truncated .npz or checkpoint
        print(f"error: {err}", file=sys.stderr)
        return 2
