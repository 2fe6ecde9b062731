"""Running independent jobs (pre-training and fine-tuning runs) in worker processes.

Used by the grid (:mod:`pcrl_lib.grid`), the budget study (:mod:`pcrl_lib.budget`) and the
headline table (:mod:`pcrl_lib.headline`). Each job returns a status row ``{"run", "status",
"seconds"}``; rows are printed as runs end, except those of runs done before.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

PARENT_POLL_S = 2.0  # how often a worker checks that the process that started it still runs


def default_workers(profile: str) -> int:
    """Runs at a time: on a CPU, small models use two processes of one thread better than one
    of two (measured: 1.6x the runs per hour); ``paper`` runs one at a time (GPU)."""
    return 1 if profile == "paper" else max(1, min(2, os.cpu_count() or 1))


def _init_worker(workers: int, parent: int) -> None:
    """A worker's set-up: its share of the threads, and a watch that ends it when ``parent``
    (the process that started the pool) is gone - killed, it would otherwise leave its
    workers running on, and a restarted study would have two writers on one run folder."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)  # its run's checkpoints and records are written atomically: nothing half-done


def run_jobs(fn: Callable[..., dict], jobs: list[tuple], workers: int) -> list[dict]:
    """``[fn(*job) for job in jobs]``, in ``workers`` processes of ``cpu_count // workers``
    threads each when more than one (spawned: ``fn`` must be importable); each row is
    printed as its run ends. An exception in a run stops the caller with it; a caller that
    is killed takes its workers with it (within :data:`PARENT_POLL_S` seconds)."""
    if workers <= 1 or len(jobs) <= 1:
        rows = []
        for job in jobs:
            rows.append(fn(*job))
            _print_row(rows[-1])
        return rows
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(workers, os.getpid())
    ) as pool:
        futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
        rows: list[dict] = [{} for _ in jobs]
        for fut in as_completed(futures):
            rows[futures[fut]] = fut.result()
            _print_row(rows[futures[fut]])
    return rows


def _print_row(row: dict) -> None:
    if row["status"] != "done before":
        print(f"{row['run']:45s} {row['status']:12s} {row['seconds']:7.1f} s", flush=True)
