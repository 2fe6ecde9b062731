"""Notebooks are committed without outputs, carry a papermill ``parameters`` cell and give
every cell a unique id (nbformat 4.5; a missing id is a warning today, an error later)."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def hygiene_problems(path: Path) -> list[str]:
    """What is wrong with a stored notebook (empty list when it is clean)."""
    try:
        nb = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        return [f"{path.name}: not valid JSON ({err})"]
    problems = []
    cells = nb.get("cells", [])
    for i, cell in enumerate(cells):
        if cell.get("cell_type") == "code" and (cell.get("outputs") or cell.get("execution_count")):
            problems.append(f"{path.name}: cell {i} has stored outputs or an execution count")
    ids = [cell.get("id") for cell in cells]
    if None in ids or len(set(ids)) != len(ids):
        problems.append(f"{path.name}: cells without an id or with a repeated one")
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells):
        problems.append(f"{path.name}: no cell tagged 'parameters'")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_clean(path):
    assert hygiene_problems(path) == []


def test_checker_flags_outputs_and_missing_parameters(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text(
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "metadata": {},
                        "source": "1",
                        "outputs": [{"x": 1}],
                        "execution_count": 1,
                    }
                ]
            }
        )
    )
    problems = hygiene_problems(bad)
    assert any("stored outputs" in p for p in problems)
    assert any("parameters" in p for p in problems)
    assert any("without an id" in p for p in problems)
