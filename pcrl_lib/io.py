"""Atomic file writes (write to a temporary file beside the target, then rename: a reader
never sees a half-written result, and an interrupted write leaves the previous version in
place) and the code version stamped into what the project writes.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pcrl_lib


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``path``, on error delete it. The
    file gets the usual permissions (``0o666`` less the umask), not the private ones of a
    temporary file.

    Example:
        >>> with atomic_path("out.pt") as tmp:  # doctest: +SKIP
        ...     torch.save(obj, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, default: Callable | None = str) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path; a path
    ending in ``.gz`` is gzip-compressed, with no time stamp in the header (the same object
    gives the same bytes, so a committed file changes only when its content does)."""
    gz = str(path).endswith(".gz")
    text = json.dumps(obj, indent=None if gz else 2, sort_keys=True, default=default)
    if not gz:
        return write_text_atomic(path, text + "\n")
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    """The JSON object in ``path`` (gzip-compressed when it ends in ``.gz``).

    Raises:
        ValueError: the file is not readable JSON (the message names it).
    """
    raw = Path(path).read_bytes()
    try:
        if str(path).endswith(".gz"):
            raw = gzip.decompress(raw)
        return json.loads(raw)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not readable JSON ({err})") from err


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def code_version() -> str:
    """The package version and, inside a git checkout, the commit (``.dirty`` if tracked
    files are modified), e.g. ``0.1.0+8e70c3e``."""
    root = Path(pcrl_lib.__file__).resolve().parents[1]
    try:
        sha = _git(root, "rev-parse", "--short", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return pcrl_lib.__version__
    return f"{pcrl_lib.__version__}+{sha}{'.dirty' if dirty else ''}"
