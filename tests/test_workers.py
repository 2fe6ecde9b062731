import pytest

from pcrl_lib.workers import default_workers, run_jobs


def _row(name: str, status: str = "ran") -> dict:
    if name == "boom":
        raise RuntimeError("run boom diverged")
    return {"run": name, "status": status, "seconds": 1.5}


def test_rows_come_back_in_job_order_and_only_new_runs_are_printed(capsys):
    jobs = [("a",), ("b", "done before"), ("c",)]
    rows = run_jobs(_row, jobs, workers=1)
    assert [r["run"] for r in rows] == ["a", "b", "c"]
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == ["a", "c"]
    assert printed[0].split()[1:] == ["ran", "1.5", "s"]


def test_two_processes_return_the_same_rows_in_job_order():
    jobs = [(name,) for name in "abcde"]
    assert run_jobs(_row, jobs, workers=2) == run_jobs(_row, jobs, workers=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_run_stops_the_caller(workers):
    with pytest.raises(RuntimeError, match="run boom diverged"):
        run_jobs(_row, [("a",), ("boom",)], workers=workers)


def test_the_paper_profile_runs_one_at_a_time():
    assert default_workers("paper") == 1
    assert 1 <= default_workers("demo") <= 2
