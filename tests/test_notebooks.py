"""Every sequenced notebook executes at the smoke profile (papermill, under pytest)."""

import os

import pytest

from pcrl_lib.paths import NOTEBOOKS_DIR
from pcrl_lib.reproduce import run_reproduction, sequenced_notebooks


@pytest.mark.slow
def test_every_notebook_runs_at_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("PCRL_RESULTS", str(tmp_path / "results"))
    runs = run_reproduction(
        "smoke", tmp_path / "data", tmp_path / "results", NOTEBOOKS_DIR, "python3"
    )
    assert [r.source for r in runs] == sequenced_notebooks()
    assert all(r.output.exists() for r in runs)
    figures = tmp_path / "results" / "smoke" / "figures"
    assert (figures / "fig5_subcrop.png").stat().st_size > 1000
    assert (figures / "data_samples.png").stat().st_size > 1000
    tables = tmp_path / "results" / "smoke" / "tables"
    assert os.path.exists(tables / "nsunet_pyramid.csv")
    assert "synthetic-luna-candidates" in (tables / "datasets.csv").read_text()
    assert (tmp_path / "data" / "smoke" / "synthetic-brats" / "prepare.json").is_file()
