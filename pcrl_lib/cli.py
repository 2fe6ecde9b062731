"""Command line: ``python -m pcrl_lib <command> --help``."""

from __future__ import annotations

import argparse
import logging
import sys

from pcrl_lib.paths import PROFILES


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
