"""Command line: ``python -m pcrl_lib <command> --help``."""

from __future__ import annotations

import argparse
import logging
import sys

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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
