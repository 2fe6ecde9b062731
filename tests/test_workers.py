import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pcrl_lib.paths import REPO_ROOT
from pcrl_lib.workers import PARENT_POLL_S, default_workers, run_jobs


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


def _stay(folder: str) -> dict:
    """A run that says its process id and then never ends."""
    (Path(folder) / f"{os.getpid()}.pid").write_text("")
    time.sleep(600)
    return {"run": "stay", "status": "ran", "seconds": 600.0}


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its exit status is left


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_a_killed_caller_takes_its_workers_with_it(tmp_path):
    # Killing a background study (its main process) must not leave workers that go on
    # writing into the run folders a restarted study resumes.
    script = (
        "from pcrl_lib.workers import run_jobs\n"
        "from tests.test_workers import _stay\n"
        f"run_jobs(_stay, [({str(tmp_path)!r},), ({str(tmp_path)!r},)], workers=2)\n"
    )
    caller = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT)
    try:
        assert _wait_for(lambda: len(list(tmp_path.glob("*.pid"))) == 2, 120), "no workers"
    finally:
        caller.kill()
        caller.wait()
    workers = [int(path.stem) for path in tmp_path.glob("*.pid")]
    assert caller.pid not in workers
    assert _wait_for(lambda: not any(map(_running, workers)), 5 * PARENT_POLL_S + 5)
