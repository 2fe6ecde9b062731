"""The zoo: this project's own pre-trained encoders, shipped in the repository.

``python -m pcrl_lib zoo build --steps N`` takes the encoders of the pre-training budget
study (:mod:`pcrl_lib.budget`) after ``N`` steps - pre-training any that is missing with the
study's settings - and writes each, in fp16, to ``results/zoo/<source>_<method>_p<seed>.pt``
with an entry in ``results/zoo/manifest.json``: the file's SHA-256 and size, the run's
settings, the code version, its loss curve, its linear probe, its pre-training seconds and
the machine. ``python -m pcrl_lib zoo verify`` (and :func:`zoo_checkpoint`, which every
user of a zoo file goes through) recomputes the hashes: a changed or missing file is an
error that names it.

Sizes (fp16): the demo's 3D encoder (depth 5, width 0.25; 2.21 M parameters) is 4.4 MB, the
2D ResNet-18 encoder (11.19 M) 22.4 MB. :data:`MAX_BYTES` bounds the zoo; :func:`zoo_entries`
says which seeds a set holds.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pcrl_lib.budget import (
    PLANS,
    pretrain_job,
    record_path,
    records_dir,
    run_name,
    step_log,
    study_dir,
    study_settings,
)
from pcrl_lib.grid import source_folder
from pcrl_lib.io import atomic_path, code_version, read_json, write_json_atomic
from pcrl_lib.paths import REPO_ROOT

ZOO_DIR = REPO_ROOT / "results" / "zoo"
MANIFEST = "manifest.json"
MAX_BYTES = 80 * 10**6


class ZooError(ValueError):
    """A zoo file is missing, changed, or the zoo would exceed its size."""


@dataclass(frozen=True)
class ZooEntry:
    """One shipped encoder: ``method`` pre-trained on ``source`` with ``seed``."""

    source: str
    method: str
    seed: int

    @property
    def file(self) -> str:
        """``<source>_<method>_p<seed>.pt``."""
        return f"{run_name(self.source, self.method, self.seed)}.pt"


def zoo_entries(
    methods: tuple[str, ...] = ("PCRLv2", "MG", "SimSiam"),
    seeds_3d: tuple[int, ...] = (0, 1, 2),
    seeds_2d: tuple[int, ...] = (0,),
    methods_2d: tuple[str, ...] | None = ("PCRLv2",),
) -> list[ZooEntry]:
    """The zoo's encoders: every method on LUNA (3D) with ``seeds_3d``, ``methods_2d``
    (``None``: every method) on NIH (2D) with ``seeds_2d``.

    The default fits :data:`MAX_BYTES`: nine 3D encoders (39.9 MB) and one 2D encoder
    (22.4 MB); a second 2D encoder would bring it to 84.6 MB."""
    methods_2d = methods if methods_2d is None else methods_2d
    return [ZooEntry("luna", m, k) for m in methods for k in seeds_3d] + [
        ZooEntry("nih", m, k) for m in methods_2d for k in seeds_2d
    ]


def sha256(path: str | os.PathLike) -> str:
    """The file's SHA-256 (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _loss_curve(log: Path, steps: int, points: int = 100) -> list[list[float]]:
    """``[[step, loss], ...]``: the run's loss up to ``steps``, averaged in ``points`` bins."""
    lines = step_log(log)
    size = max(1, steps // points)
    curve = []
    for start in range(1, steps + 1, size):
        losses = [
            lines[s]["loss"] for s in range(start, min(start + size, steps + 1)) if s in lines
        ]
        if losses:
            curve.append([start + len(losses) - 1, round(sum(losses) / len(losses), 5)])
    return curve


def export_encoder(snapshot: Path, out: Path) -> None:
    """Write a snapshot's encoder (keys ``encoder.*``) in fp16 to ``out``, atomically."""
    import torch

    state = torch.load(snapshot, map_location="cpu", weights_only=True)["model"]
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    with atomic_path(out) as tmp:
        torch.save({"model": half}, tmp)


def build_zoo(
    steps: int,
    folders: dict[str, Path],
    entries: list[ZooEntry] | None = None,
    profile: str = "demo",
    results: str | os.PathLike | None = None,
    out: str | os.PathLike = ZOO_DIR,
    max_bytes: int = MAX_BYTES,
    records: str | os.PathLike | None = None,
) -> dict:
    """Export the study's encoders after ``steps`` steps into ``out`` (pre-training any that
    is missing) and add them to the manifest; returns it. ``records``: the study's
    (:func:`pcrl_lib.budget.records_dir`), for each encoder's probe.

    Raises:
        ZooError: the files would exceed ``max_bytes``, or the zoo holds encoders of
            another budget (nothing is written then).
    """
    entries = zoo_entries() if entries is None else entries
    base = study_dir(profile, results)
    run_dirs = {}
    for e in entries:
        run_dir = base / "pretrain" / run_name(e.source, e.method, e.seed)
        if not (run_dir / f"step_{steps:06d}.pt").is_file():
            budgets = tuple(sorted({*PLANS[profile].budgets, steps}))
            job = (profile, e.source, e.method, e.seed, steps, budgets)
            pretrain_job(*job, source_folder(folders, e.source), run_dir)
        run_dirs[e] = run_dir
    return _install(
        run_dirs, steps, profile, Path(out), records_dir(profile, results, records), max_bytes
    )


def add_run_to_zoo(
    source: str,
    method: str,
    seed: int,
    run_dir: Path,
    records: Path,
    *,
    steps: int,
    profile: str = "demo",
    out: str | os.PathLike = ZOO_DIR,
    max_bytes: int = MAX_BYTES,
    entries: tuple[ZooEntry, ...] | None = None,
) -> dict | None:
    """The budget study's ``after_run`` hook (:func:`pcrl_lib.budget.study_run_job`): add
    a finished run's encoder after ``steps`` steps to the zoo if it is one of ``entries``
    (default :func:`zoo_entries`); returns the manifest, or ``None`` for a run the zoo does
    not ship. Several study processes may call it at once (the manifest is updated under a
    lock)."""
    entry = ZooEntry(source, method, seed)
    if entry not in (zoo_entries() if entries is None else entries):
        return None
    return _install({entry: Path(run_dir)}, steps, profile, Path(out), Path(records), max_bytes)


def _install(
    run_dirs: dict[ZooEntry, Path],
    steps: int,
    profile: str,
    out: Path,
    records: Path,
    max_bytes: int,
) -> dict:
    """Under a lock on ``out``: check the zoo's budget, stage the encoders of ``run_dirs``
    after ``steps`` steps, check the zoo's size with them, then move them in and rewrite the
    manifest."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    lock = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = out / MANIFEST
        manifest = read_manifest(out) if path.is_file() else {"steps": steps, "profile": profile}
        if (manifest["steps"], manifest["profile"]) != (steps, profile):
            raise ZooError(
                f"{path}: the zoo holds {manifest['profile']} encoders after "
                f"{manifest['steps']} steps, not {profile} after {steps}; delete {out} to "
                "build it at another budget"
            )
        staged = {}
        for e, run_dir in run_dirs.items():
            staged[e] = out / f".{e.file}.{os.getpid()}.new"
            export_encoder(run_dir / f"step_{steps:06d}.pt", staged[e])
        kept = [x for x in manifest.get("entries", []) if x["file"] not in {e.file for e in staged}]
        total = sum(x["bytes"] for x in kept) + sum(p.stat().st_size for p in staged.values())
        if total > max_bytes:
            for p in staged.values():
                p.unlink()
            raise ZooError(
                f"{out}: {len(kept) + len(staged)} encoders take {total / 1e6:.1f} MB, over "
                f"the zoo's {max_bytes / 1e6:.0f} MB; ship fewer seeds (zoo_entries)"
            )
        for e, tmp in staged.items():
            tmp.replace(out / e.file)
            kept.append(_manifest_entry(e, steps, profile, out, run_dirs[e], records))
        manifest["entries"] = sorted(kept, key=lambda x: (x["source"], x["method"], x["seed"]))
        write_json_atomic(path, manifest)
        return manifest
    finally:
        os.close(lock)


def _manifest_entry(
    e: ZooEntry, steps: int, profile: str, out: Path, run_dir: Path, records: Path
) -> dict:
    from pcrl_lib.budget import pretrain_seconds
    from pcrl_lib.perf import machine_description

    final = out / e.file
    record = record_path(records, e.source, e.method, e.seed, steps)
    probe = None
    if record.is_file():
        p = read_json(record)["probe"]
        probe = {k: p[k] for k in ("task", "label_ratio", "split", "draws", "auroc", "mean")}
    log = run_dir / "log.jsonl"
    return {
        **asdict(e),
        "file": e.file,
        "sha256": sha256(final),
        "bytes": final.stat().st_size,
        "steps": steps,
        "dtype": "fp16",
        "settings": asdict(study_settings(profile, 3 if e.source == "luna" else 2)),
        "code_version": code_version(),
        "loss_curve": _loss_curve(log, steps),
        "probe": probe,
        "pretrain_wall_s": round(pretrain_seconds(log, steps), 1),
        "machine": machine_description(),
    }


def read_manifest(zoo: str | os.PathLike = ZOO_DIR) -> dict:
    """The zoo's manifest.

    Raises:
        ZooError: there is none, or it is not readable JSON with entries.
    """
    path = Path(zoo) / MANIFEST
    if not path.is_file():
        raise ZooError(f"{path}: no zoo manifest; build it with `python -m pcrl_lib zoo build`")
    try:
        manifest = json.loads(path.read_text())
        entries = manifest["entries"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ZooError(f"{path}: not a zoo manifest ({err})") from err
    if not isinstance(entries, list):
        raise ZooError(f"{path}: 'entries' is not a list")
    return manifest


def verify_zoo(zoo: str | os.PathLike = ZOO_DIR) -> list[dict]:
    """Check every file of the manifest against its SHA-256; returns the entries.

    Raises:
        ZooError: a file is missing or its hash differs (the message names it).
    """
    zoo = Path(zoo)
    entries = read_manifest(zoo)["entries"]
    for entry in entries:
        path = zoo / entry["file"]
        if not path.is_file():
            raise ZooError(f"{path}: listed in the zoo's manifest but missing")
        got = sha256(path)
        if got != entry["sha256"]:
            raise ZooError(
                f"{path}: SHA-256 {got[:16]}... differs from the manifest's "
                f"{entry['sha256'][:16]}...; restore it (git checkout) or rebuild the zoo"
            )
    return entries


def zoo_checkpoint(source: str, method: str, seed: int, zoo: str | os.PathLike = ZOO_DIR) -> Path:
    """The verified file of one zoo encoder.

    Raises:
        ZooError: the zoo has no such encoder, or its file does not match its hash.
    """
    zoo = Path(zoo)
    for entry in read_manifest(zoo)["entries"]:
        if (entry["source"], entry["method"], entry["seed"]) == (source, method, seed):
            path = zoo / entry["file"]
            if not path.is_file() or sha256(path) != entry["sha256"]:
                raise ZooError(f"{path}: missing or not the file the manifest hashed")
            return path
    raise ZooError(f"{zoo / MANIFEST}: no encoder for {method} on {source}, seed {seed}")
