"""The prepared-data format every dataset - real or synthetic - is converted to once.

A prepared dataset is a folder::

    <root>/
      prepare.json      what made it: dataset, source, parameters, code version, counts
      manifest.csv      one row per case: id, patient, file, then task columns (labels)
      cases/<id>.npz    the arrays of one case (``image`` and, for segmentation, ``mask``)
      splits/{train,val,test}.txt

Everything is written atomically (temporary file, then rename), so an interrupted
``prepare`` leaves no half-written case behind, and ``prepare.json`` - written last - marks a
folder as complete. Readers check every case they load and name the file on any problem.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pcrl_lib.data.splits import read_splits, write_splits
from pcrl_lib.io import atomic_path, code_version, write_json_atomic, write_text_atomic

FORMAT_VERSION = 1


def check_finite(array: np.ndarray, where: str | os.PathLike) -> np.ndarray:
    """Raise ``ValueError`` naming ``where`` when ``array`` holds NaN or Inf values."""
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"{where}: {bad} NaN/Inf voxels")
    return array


def check_labels(mask: np.ndarray, allowed: Iterable[int], where: str | os.PathLike) -> np.ndarray:
    """Raise ``ValueError`` naming ``where`` when ``mask`` holds a value outside ``allowed``
    or, stored as floats, a value that is not a whole number (1.5 is an error, not a 1:
    check before any cast)."""
    allowed = list(allowed)
    values = np.unique(mask)
    if np.issubdtype(values.dtype, np.floating):
        fractional = values[values != np.round(values)]
        if len(fractional):
            raise ValueError(
                f"{where}: non-integer label values {[float(v) for v in fractional[:5]]} "
                f"(a label map holds whole numbers among {sorted(allowed)})"
            )
    extra = sorted(set(int(v) for v in values) - set(allowed))
    if extra:
        raise ValueError(f"{where}: unexpected label values {extra} (allowed {sorted(allowed)})")
    return mask


def exclude_incomplete_case(
    excluded: list[dict], case: str | os.PathLike, problem: str, allowed: bool
) -> None:
    """An incomplete case: an error naming it and ``problem`` - or, when ``allowed`` (the
    preparers' ``exclude_incomplete`` option), an exclusion printed and appended to
    ``excluded`` (which ``prepare.json`` lists). Never a silent skip."""
    if not allowed:
        raise FileNotFoundError(
            f"{case}: {problem}; complete it, or pass exclude_incomplete=true to leave it out "
            "(listed in prepare.json)"
        )
    print(f"excluded {case}: {problem}")
    excluded.append({"case": str(case), "reason": problem})


def require_columns(table: pd.DataFrame, columns: Iterable[str], where: str | os.PathLike) -> None:
    """Raise ``ValueError`` naming ``where`` and the missing columns (and those present)."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; found {list(table.columns)}")
    if table.empty:
        raise ValueError(f"{where}: no rows")


def check_numeric(table: pd.DataFrame, columns: Iterable[str], where: str | os.PathLike) -> None:
    """Raise ``ValueError`` naming ``where``, the row (as a spreadsheet counts it: the header
    is row 1) and the column of the first value of ``columns`` that is not a number."""
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.astype(float))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{where}: row {row + 2}, column {column}: {table[column].iloc[row]!r} is not a number"
            )


def check_unique(table: pd.DataFrame, column: str, where: str | os.PathLike) -> None:
    """Raise ``ValueError`` naming ``where`` and both rows when ``column`` repeats a value."""
    repeated = table[column].duplicated(keep=False).to_numpy()
    if repeated.any():
        rows = np.flatnonzero(repeated)
        first = table[column].iloc[rows[0]]
        twin = rows[table[column].iloc[rows].to_numpy() == first]
        raise ValueError(
            f"{where}: {column} {first!r} appears in rows {[int(r) + 2 for r in twin[:5]]}"
        )


def read_csv(path: str | os.PathLike, columns: Iterable[str] = ()) -> pd.DataFrame:
    """Read a CSV, stopping with the file's name when it is missing, empty or lacks columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}")
    try:
        table = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: unreadable CSV ({err})") from err
    require_columns(table, columns, path)
    return table


@dataclass
class PreparedWriter:
    """Writes one prepared dataset: ``add`` each case, then ``finish`` with the splits.

    Example::

        writer = PreparedWriter(out, dataset="lits", source=raw, params={"hu": [-200, 200]})
        writer.add("volume-0", patient="0", image=hu, mask=liver)
        writer.finish(split_by_patient(writer.ids, writer.patients))
    """

    root: Path
    dataset: str
    source: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        (self.root / "cases").mkdir(parents=True, exist_ok=True)
        stale = self.root / "prepare.json"
        if stale.exists():  # being rewritten: not complete until finish()
            stale.unlink()

    @property
    def ids(self) -> list[str]:
        """Case ids in the order they were added."""
        return [r["id"] for r in self.rows]

    @property
    def patients(self) -> dict[str, str]:
        """Case id -> patient id."""
        return {r["id"]: r["patient"] for r in self.rows}

    def add(
        self,
        case_id: str,
        patient: str,
        columns: Mapping[str, Any] | None = None,
        **arrays: np.ndarray,
    ) -> None:
        """Write ``cases/<case_id>.npz`` (atomically) and record its manifest row."""
        if not case_id or "/" in case_id or case_id in self._seen:
            raise ValueError(f"{self.dataset}: bad or repeated case id {case_id!r}")
        rel = f"cases/{case_id}.npz"
        for name, arr in arrays.items():
            check_finite(np.asarray(arr), f"{self.dataset} case {case_id} ({name})")
        with atomic_path(self.root / rel) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        self._seen.add(case_id)
        self.rows.append(
            {"id": case_id, "patient": str(patient), "file": rel, **dict(columns or {})}
        )

    def finish(
        self, splits: Mapping[str, Sequence[str]], extra: Mapping[str, Any] | None = None
    ) -> Path:
        """Write the manifest, the splits and, last, ``prepare.json``. Returns the root."""
        if not self.rows:
            raise ValueError(f"{self.dataset}: no cases were prepared from {self.source}")
        ids = set(self.ids)
        if len(ids) != len(self.rows):
            raise ValueError(f"{self.dataset}: duplicate case ids")
        unknown = {i for s in splits.values() for i in s} - ids
        if unknown:
            raise ValueError(
                f"{self.dataset}: splits name unknown cases, e.g. {sorted(unknown)[:3]}"
            )
        write_text_atomic(self.root / "manifest.csv", pd.DataFrame(self.rows).to_csv(index=False))
        write_splits(self.root / "splits", splits)
        info = {
            "format": FORMAT_VERSION,
            "dataset": self.dataset,
            "source": str(self.source),
            "params": self.params,
            "cases": len(self.rows),
            "splits": {k: len(v) for k, v in splits.items()},
            "code_version": code_version(),
            **dict(extra or {}),
        }
        write_json_atomic(self.root / "prepare.json", info)
        return self.root


class PreparedDataset:
    """A prepared dataset folder, read back (see the module docstring for the layout).

    Attributes:
        root: the folder. info: ``prepare.json``. manifest: ``manifest.csv`` indexed by id.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        info_path = self.root / "prepare.json"
        if not info_path.is_file():
            raise FileNotFoundError(
                f"{self.root}: not a prepared dataset (no prepare.json); run "
                "`python -m pcrl_lib prepare <dataset> --raw DIR --out DIR` first"
            )
        self.info: dict[str, Any] = json.loads(info_path.read_text())
        manifest = read_csv(self.root / "manifest.csv", ["id", "patient", "file"])
        self.manifest = manifest.astype({"id": str, "patient": str}).set_index("id", drop=False)

    @property
    def name(self) -> str:
        """The dataset's name as ``prepare`` recorded it."""
        return str(self.info.get("dataset", self.root.name))

    @property
    def patients(self) -> dict[str, str]:
        """Case id -> patient id, from the manifest (what label draws group by)."""
        return dict(zip(self.manifest["id"], self.manifest["patient"], strict=True))

    def splits(self, names: Sequence[str] = ("train", "val", "test")) -> dict[str, list[str]]:
        """The saved splits."""
        return read_splits(self.root / "splits", names)

    def load(self, case_id: str) -> dict[str, np.ndarray]:
        """The arrays of one case; a missing or corrupt file stops with its path."""
        if case_id not in self.manifest.index:
            raise KeyError(f"{self.root}: no case {case_id!r} in manifest.csv")
        path = self.root / self.manifest.at[case_id, "file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in manifest.csv but missing")
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path}: corrupt case file ({err})") from err

    def columns(self, case_ids: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """Manifest columns ``names`` for ``case_ids`` as a float32 array ``(len(ids), len(names))``."""
        require_columns(self.manifest, names, self.root / "manifest.csv")
        return self.manifest.loc[list(case_ids), list(names)].to_numpy(dtype=np.float32)
