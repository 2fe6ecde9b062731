"""The papermill runner executes sequenced notebooks with the profile injected."""

import json

import nbformat
import pytest

from pcrl_lib.reproduce import run_reproduction, sequenced_notebooks


def _notebook(path, body):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("profile = 'demo'\ndata_root = ''")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, str(path))


def test_runs_in_order_with_parameters(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_b.ipynb", "import pathlib; pathlib.Path('order.txt').open('a').write('b')")
    _notebook(
        nbs / "00_a.ipynb", "import pathlib; pathlib.Path('order.txt').open('a').write(profile)"
    )
    (nbs / "scratch.ipynb").write_text("{}")  # not sequenced: ignored
    assert [p.name for p in sequenced_notebooks(nbs)] == ["00_a.ipynb", "01_b.ipynb"]
    runs = run_reproduction("smoke", tmp_path / "data", tmp_path / "res", nbs, "python3")
    assert [r.output.name for r in runs] == ["00_a.ipynb", "01_b.ipynb"]
    assert (nbs / "order.txt").read_text() == "smokeb"
    executed = json.loads(runs[0].output.read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])


def test_failing_notebook_is_named_and_kept(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_bad.ipynb", "raise ValueError('boom')")
    with pytest.raises(RuntimeError, match="00_bad.ipynb"):
        run_reproduction("smoke", tmp_path / "data", tmp_path / "res", nbs, "python3")
    assert (tmp_path / "res" / "smoke" / "notebooks" / "00_bad.failed.ipynb").exists()


def test_unknown_profile(tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        run_reproduction("huge", tmp_path, tmp_path, tmp_path)
