"""dev/mutation_score.py: the per-module score of `make mutation` from mutmut's results."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "dev" / "mutation_score.py"
spec = importlib.util.spec_from_file_location("mutation_score", SCRIPT)
mutation_score = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutation_score)


def _meta(root: Path, module: str, codes: dict) -> None:
    path = root / f"{module}.meta"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"exit_code_by_key": codes}))


def test_score_counts_timeouts_as_caught_and_leaves_equivalents_out(tmp_path):
    # 10 mutants: 6 killed, 1 timeout, 2 survived (one listed as equivalent), 1 no tests
    codes = {f"m.x_f__mutmut_{i}": 1 for i in range(6)}
    codes |= {"m.x_f__mutmut_6": 36, "m.x_f__mutmut_7": 0, "m.x_f__mutmut_8": 0}
    codes |= {"m.x_f__mutmut_9": 33}
    _meta(tmp_path, "pkg/m.py", codes)
    (score,) = mutation_score.module_scores(tmp_path, {"m.x_f__mutmut_8": "same value"}).values()
    assert (score["caught"], score["survived"], score["equivalent"]) == (7, 2, 1)
    assert score["survival"] == round(2 / 9, 4)  # survived + no tests over non-equivalent
    assert score["survivors"] == ["m.x_f__mutmut_7", "m.x_f__mutmut_9"]


def test_cli_fails_a_module_over_the_limit_and_passes_under_it(tmp_path, capsys):
    _meta(tmp_path, "a.py", {"a.x_f__mutmut_1": 1, "a.x_f__mutmut_2": 0})
    assert mutation_score.main(["--mutants", str(tmp_path)]) == 1
    assert json.loads(capsys.readouterr().out)["failing"] == ["a.py"]
    assert mutation_score.main(["--mutants", str(tmp_path), "--max-survival", "0.5"]) == 0


def test_equivalents_need_a_reason_and_appear_once(tmp_path):
    bad = tmp_path / "eq.csv"
    bad.write_text("mutant,reason\nm.x_f__mutmut_1,\n")
    with pytest.raises(ValueError, match=r"eq.csv, row 2: needs a mutant and a one-line reason"):
        mutation_score.read_equivalents(bad)
    bad.write_text("mutant,reason\nm.x,a\nm.x,b\n")
    with pytest.raises(ValueError, match="row 3: m.x listed twice"):
        mutation_score.read_equivalents(bad)


def test_the_committed_equivalents_file_is_valid():
    assert all(mutation_score.read_equivalents(mutation_score.EQUIVALENTS).values())


def test_missing_results_exit_2(tmp_path, capsys):
    assert mutation_score.main(["--mutants", str(tmp_path / "none")]) == 2
    assert "run `make mutation` first" in capsys.readouterr().err
