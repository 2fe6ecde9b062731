"""Where things live: repository folders and the documented environment variables.

- ``PCRL_DATA_ROOT``: prepared datasets (default ``~/.cache/pcrl_lib/data``).
- ``PCRL_RESULTS``: what reproductions write (default ``<repository>/results``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PUBLISHED_DIR = REPO_ROOT / "results" / "published"
PROFILES = ("smoke", "demo", "paper")


def data_root(override: str | os.PathLike | None = None) -> Path:
    """The data folder: ``override``, else ``$PCRL_DATA_ROOT``, else ``~/.cache/pcrl_lib/data``."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("PCRL_DATA_ROOT")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pcrl_lib" / "data"


def results_root(override: str | os.PathLike | None = None) -> Path:
    """The results folder: ``override``, else ``$PCRL_RESULTS``, else ``<repo>/results``."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("PCRL_RESULTS")
    return Path(env).expanduser() if env else REPO_ROOT / "results"
