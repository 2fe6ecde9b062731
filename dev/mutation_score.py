"""Per-module mutation score of `make mutation` (issue 22), printed as JSON.

Reads the verdicts mutmut leaves in ``mutants/<module>.py.meta`` and the triaged equivalent
mutants in ``dev/mutation_equivalents.csv`` (one ``mutant,reason`` row each: a mutant that
no test can kill because it does not change behaviour). A module passes when at most
``--max-survival`` of its non-equivalent mutants survive (killed and timed-out count as
caught; "no tests" counts as surviving). Exit code 1 when a module fails, 2 on bad input.

    python dev/mutation_score.py [--mutants mutants] [--max-survival 0.10]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from mutmut.stats import status_by_exit_code

# mutmut's own reading of its exit codes (killed, timeout, survived, no tests, ...)
CAUGHT = {"killed", "timeout"}
SURVIVED = {"survived", "no tests"}
EQUIVALENTS = Path(__file__).with_name("mutation_equivalents.csv")


def read_equivalents(path: Path) -> dict[str, str]:
    """``{mutant name: reason}`` from the triage file; every row needs both fields."""
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    with path.open(newline="") as f:
        for row_no, row in enumerate(csv.DictReader(f), start=2):
            name, reason = (row.get("mutant") or "").strip(), (row.get("reason") or "").strip()
            if not name or not reason:
                raise ValueError(f"{path}, row {row_no}: needs a mutant and a one-line reason")
            if name in out:
                raise ValueError(f"{path}, row {row_no}: {name} listed twice")
            out[name] = reason
    return out


def module_scores(mutants: Path, equivalents: dict[str, str]) -> dict[str, dict]:
    """Counts and survival fraction per mutated module, from mutmut's ``.meta`` files."""
    scores: dict[str, dict] = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        module = meta.relative_to(mutants).as_posix().removesuffix(".meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = {"total": len(codes), "caught": 0, "survived": 0, "equivalent": 0, "other": 0}
        survivors = []
        for name, code in sorted(codes.items()):
            if name in equivalents:
                counts["equivalent"] += 1
            elif status_by_exit_code[code] in CAUGHT:
                counts["caught"] += 1
            elif status_by_exit_code[code] in SURVIVED:
                counts["survived"] += 1
                survivors.append(name)
            else:  # not checked, skipped, suspicious, segfault
                counts["other"] += 1
                survivors.append(name)
        judged = counts["total"] - counts["equivalent"]
        uncaught = counts["survived"] + counts["other"]
        counts["survival"] = round(uncaught / judged, 4) if judged else 0.0
        counts["survivors"] = survivors
        scores[module] = counts
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--max-survival", type=float, default=0.10)
    parser.add_argument("--list", action="store_true", help="also list the surviving mutants")
    args = parser.parse_args(argv)
    try:
        equivalents = read_equivalents(EQUIVALENTS)
        if not args.mutants.is_dir():
            raise ValueError(f"{args.mutants}: no mutmut results; run `make mutation` first")
        scores = module_scores(args.mutants, equivalents)
    except (ValueError, OSError, json.JSONDecodeError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = {
        m: {k: v for k, v in s.items() if k != "survivors" or args.list} for m, s in scores.items()
    }
    failing = [m for m, s in scores.items() if s["survival"] > args.max_survival]
    print(
        json.dumps(
            {"max_survival": args.max_survival, "modules": report, "failing": failing}, indent=1
        )
    )
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
