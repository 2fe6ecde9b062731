"""The papermill reproduction: execute the sequenced notebooks in order for one profile.

Each notebook ``notebooks/NN_name.ipynb`` is executed with the parameters ``profile`` and
``data_root`` injected into its cell tagged ``parameters``; the executed copy is written
atomically to ``results/<profile>/notebooks/NN_name.ipynb``. A failing notebook stops the run
with its name, and its partly executed copy is kept as ``NN_name.failed.ipynb`` to read.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pcrl_lib.io import atomic_path
from pcrl_lib.paths import NOTEBOOKS_DIR, PROFILES, data_root, results_root

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NotebookRun:
    """One executed notebook: its source, its executed copy and the seconds it took."""

    source: Path
    output: Path
    seconds: float


def sequenced_notebooks(notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR) -> list[Path]:
    """The notebooks named ``NN_*.ipynb`` in ``notebooks_dir``, in their numbered order."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebooks folder not found: {folder}")
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if p.is_file())


def run_reproduction(
    profile: str = "demo",
    data_dir: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR,
    kernel_name: str | None = None,
) -> list[NotebookRun]:
    """Execute every sequenced notebook for ``profile`` and return what ran.

    Args:
        profile: ``smoke``, ``demo`` or ``paper``.
        data_dir: prepared data (default: :func:`pcrl_lib.paths.data_root`).
        results_dir: results root; outputs go under ``<results_dir>/<profile>/``.
        notebooks_dir: where the sequenced notebooks are.
        kernel_name: Jupyter kernel to run them with (default: the notebook's own).

    Raises:
        ValueError: unknown profile.
        RuntimeError: a notebook failed; the message names it and its partial copy.
    """
    import papermill

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    out_dir = results_root(results_dir) / profile / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"profile": profile, "data_root": str(data_root(data_dir))}
    notebooks = sequenced_notebooks(notebooks_dir)
    if not notebooks:
        log.warning("no sequenced notebooks in %s: nothing to execute", notebooks_dir)
    runs = []
    for nb in notebooks:
        target = out_dir / nb.name
        log.info("executing %s (profile=%s)", nb.name, profile)
        start = time.perf_counter()
        with atomic_path(target) as tmp:
            try:
                papermill.execute_notebook(
                    str(nb),
                    str(tmp),
                    parameters=params,
                    kernel_name=kernel_name,
                    cwd=str(nb.parent),
                    progress_bar=False,
                )
            except Exception as err:
                failed = out_dir / f"{nb.stem}.failed.ipynb"
                shutil.copyfile(tmp, failed)
                raise RuntimeError(
                    f"notebook {nb} failed at profile {profile!r}: {err}. "
                    f"Its partly executed copy is {failed}."
                ) from err
        runs.append(NotebookRun(nb, target, time.perf_counter() - start))
        log.info("  done in %.1f s -> %s", runs[-1].seconds, target)
    return runs
