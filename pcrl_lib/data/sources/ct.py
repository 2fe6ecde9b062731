"""CT datasets: LUNA16 (pre-training volumes and nodule candidates) and LiTS (liver
segmentation), real or synthetic (:mod:`pcrl_lib.data.synthetic.ct`).

Both kinds go through the same case functions, so synthetic data is preprocessed exactly as
the real data (Sec. 4.1 / 4.3): LUNA volumes resampled to 1 mm, HU window [-1000, 1000],
48^3 candidate crops; LiTS cropped to the liver's slices plus 30, HU window [-200, 200].
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from pcrl_lib.data.location import normalized_frame, register_volumes, synthetic_ct_frame
from pcrl_lib.data.plausibility import check_ct
from pcrl_lib.data.prepared import (
    PreparedWriter,
    check_labels,
    check_numeric,
    exclude_incomplete_case,
    read_csv,
)
from pcrl_lib.data.preprocess import (
    LITS_WINDOW,
    LUNA_WINDOW,
    crop_centered,
    liver_slab,
    resample,
    window_int16,
)
from pcrl_lib.data.readers import Volume, check_aligned, read_itk, read_label_nifti, read_nifti
from pcrl_lib.data.splits import split_by_patient
from pcrl_lib.data.synthetic.ct import synthetic_chest_ct

CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")
ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
LITS_LABELS = (0, 1, 2)


class _LunaWriters:
    """The two outputs of a LUNA-style preparation: ``volumes/`` and ``candidates/``."""

    def __init__(self, out: Path, dataset: str, source: str, params: dict) -> None:
        self.volumes = PreparedWriter(out / "volumes", f"{dataset}-volumes", source, params)
        self.candidates = PreparedWriter(
            out / "candidates", f"{dataset}-candidates", source, params
        )
        self.crop = int(params["crop"])
        self.reference: np.ndarray | None = None  # the first real scan: the location frame's

    def add_scan(
        self,
        uid: str,
        hu: np.ndarray,
        spacing,
        centers_vox: np.ndarray,
        labels: Iterable[int],
        body: tuple | None = None,
    ) -> None:
        """One scan: ``hu (X, Y, Z)`` at ``spacing``; candidate centres in its voxel grid.

        Its location ``frame`` (:mod:`pcrl_lib.data.location`) is recorded with the volume:
        from ``body`` (a synthetic case's centre and half-axes in mm) when given, else by
        registering it to the first scan added (whose frame is its own extent)."""
        factor = np.asarray(spacing) / 1.0
        hu1 = window_int16(resample(hu, spacing, 1.0), LUNA_WINDOW)
        if body is not None:
            frame = synthetic_ct_frame(hu.shape, spacing, hu1.shape, *body)
        elif self.reference is None:
            self.reference = hu1.astype(np.float32)
            frame = normalized_frame(hu1.shape)
        else:
            frame = register_volumes(hu1.astype(np.float32), self.reference)
        self.volumes.add(
            uid,
            uid,
            image=hu1[None],
            spacing=np.ones(3, np.float32),
            frame=frame.astype(np.float32),
        )
        for k, (center, label) in enumerate(zip(centers_vox, labels, strict=True)):
            c1 = (np.asarray(center, dtype=float) + 0.5) * factor - 0.5
            crop = crop_centered(hu1, c1, self.crop, fill=LUNA_WINDOW[0])
            self.candidates.add(f"{uid}_c{k:05d}", uid, {"label": int(label)}, image=crop[None])

    def finish(
        self,
        seed: int,
        extra: dict | None = None,
        fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    ) -> list[Path]:
        splits = split_by_patient(self.volumes.ids, fractions=fractions, seed=seed)
        where = {i: s for s, ids in splits.items() for i in ids}
        cand_splits = {s: [] for s in splits}
        for row in self.candidates.rows:
            cand_splits[where[row["patient"]]].append(row["id"])
        return [self.volumes.finish(splits, extra), self.candidates.finish(cand_splits, extra)]


def prepare_luna(
    raw: str | os.PathLike,
    out: str | os.PathLike,
    crop: int = 48,
    negatives_per_positive: int = 10,
    seed: int = 0,
) -> list[Path]:
    """Prepare LUNA16 from its published layout.

    Reads ``subset*/*.mhd`` (+ ``.raw``), ``candidates_V2.csv`` (``seriesuid, coordX, coordY,
    coordZ, class``) and ``annotations.csv`` (checked, counted). Writes ``<out>/volumes``
    (1 mm, int16 HU in [-1000, 1000], the pre-training data) and ``<out>/candidates``
    (``crop``^3 crops, ``label`` 1 nodule / 0 not). LUNA has ~550k negatives to ~1.5k
    positives: each scan keeps all positives and at most ``negatives_per_positive`` times as
    many negatives (at least 10 per scan), drawn with ``seed``. Splits 70/10/20 by scan.
    """
    raw, out = Path(raw), Path(out)
    scans = sorted(raw.glob("subset*/*.mhd"))
    if not scans:
        raise FileNotFoundError(f"{raw}: no subset*/*.mhd files (LUNA16 layout expected)")
    candidates = read_csv(raw / "candidates_V2.csv", CANDIDATE_COLUMNS)
    annotations = read_csv(raw / "annotations.csv", ANNOTATION_COLUMNS)
    check_numeric(candidates, ("coordX", "coordY", "coordZ", "class"), raw / "candidates_V2.csv")
    check_numeric(annotations, ANNOTATION_COLUMNS[1:], raw / "annotations.csv")
    bad = ~candidates["class"].isin([0, 1])
    if bad.any():
        raise ValueError(
            f"{raw / 'candidates_V2.csv'}: class must be 0 or 1, row {int(bad.idxmax()) + 2}"
        )
    params = {
        "crop": crop,
        "negatives_per_positive": negatives_per_positive,
        "spacing_mm": 1.0,
        "window": LUNA_WINDOW,
    }
    writers = _LunaWriters(out, "luna", str(raw), params)
    rng = np.random.default_rng(seed)
    by_uid = dict(tuple(candidates.groupby("seriesuid")))
    for mhd in scans:
        uid = mhd.stem
        volume = read_itk(mhd)
        check_ct(volume.array, mhd)
        rows = by_uid.get(uid, candidates.iloc[:0])
        pos, neg = rows[rows["class"] == 1], rows[rows["class"] == 0]
        keep = min(len(neg), max(10, negatives_per_positive * len(pos)))
        neg = neg.iloc[np.sort(rng.choice(len(neg), keep, replace=False))] if keep else neg
        rows = pd.concat([pos, neg])
        centers = volume.world_to_voxel(rows[["coordX", "coordY", "coordZ"]].to_numpy(float))
        outside = ~((centers > -0.5) & (centers < np.asarray(volume.array.shape) - 0.5)).all(axis=1)
        if outside.any():
            raise ValueError(
                f"{mhd}: candidate(s) outside the volume, e.g. {rows.iloc[int(outside.argmax())].to_dict()}"
            )
        writers.add_scan(uid, volume.array, volume.spacing, centers, rows["class"].to_numpy())
    present = {m.stem for m in scans}
    extra = {
        "scans": len(scans),
        "annotated_nodules": int(annotations["seriesuid"].isin(present).sum()),
        "candidates_of_absent_scans": int((~candidates["seriesuid"].isin(present)).sum()),
    }
    if extra["candidates_of_absent_scans"]:  # e.g. subsets not downloaded: said, not hidden
        absent = candidates.loc[~candidates["seriesuid"].isin(present), "seriesuid"].nunique()
        print(
            f"{raw / 'candidates_V2.csv'}: {extra['candidates_of_absent_scans']} candidates of "
            f"{absent} scans not under {raw} left out (counted in prepare.json)"
        )
    return writers.finish(seed, extra)


def prepare_synthetic_luna(
    out: str | os.PathLike,
    n: int = 40,
    shape: tuple[int, int, int] = (128, 128, 80),
    spacing: tuple[float, float, float] = (1.5, 1.5, 2.0),
    crop: int = 48,
    seed: int = 0,
    max_nodules: int = 4,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    extra_mimics: int = 0,
) -> list[Path]:
    """The synthetic LUNA16: ``n`` chest CTs (:func:`synthetic_chest_ct` with ``seed``,
    ``max_nodules`` and ``extra_mimics``) prepared like the real one; candidates are each case's nodules (label
    1) and its nodule-like negatives (label 0). ``fractions``: train / val / test by scan
    (the paper's 70/10/20 by default; the demo gives the test split more scans, so that its
    AUROC has a standard error of about a point)."""
    params = {
        "n": n,
        "shape": list(shape),
        "spacing": list(spacing),
        "crop": crop,
        "seed": seed,
        "window": LUNA_WINDOW,
        "max_nodules": max_nodules,
        "fractions": list(fractions),
        "extra_mimics": extra_mimics,
    }
    writers = _LunaWriters(Path(out), "synthetic-luna", "synthetic_chest_ct", params)
    for i in range(n):
        case = synthetic_chest_ct(seed, i, shape, spacing, max_nodules, extra_mimics)
        centers = [nod.center for nod in case.nodules] + list(case.mimics)
        labels = [1] * len(case.nodules) + [0] * len(case.mimics)
        writers.add_scan(
            f"ct{i:04d}", case.image, spacing, np.asarray(centers, float), labels, case.body
        )
    return writers.finish(seed, fractions=fractions)


def _add_lits_case(
    writer: PreparedWriter,
    case_id: str,
    hu: np.ndarray,
    seg: np.ndarray,
    spacing,
    where: str,
    margin: int,
) -> None:
    check_labels(seg, LITS_LABELS, where)
    try:
        slab = liver_slab(seg, margin)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    writer.add(
        case_id,
        case_id,
        image=window_int16(hu[..., slab], LITS_WINDOW)[None],
        mask=seg[..., slab].astype(np.uint8)[None],
        spacing=np.asarray(spacing, np.float32),
    )


def _lits_number(path: Path) -> int:
    """N of ``volume-N.nii`` / ``segmentation-N.nii(.gz)``."""
    stem = path.name.split("-", 1)[1].split(".")[0]
    if not stem.isdigit():
        raise ValueError(
            f"{path}: LiTS files are named volume-N.nii / segmentation-N.nii, N a number"
        )
    return int(stem)


def prepare_lits(
    raw: str | os.PathLike,
    out: str | os.PathLike,
    margin: int = 30,
    seed: int = 0,
    exclude_incomplete: bool = False,
) -> list[Path]:
    """Prepare LiTS from ``volume-N.nii`` / ``segmentation-N.nii`` pairs (any sub-folder;
    ``.nii.gz`` too). Labels 0 background, 1 liver, 2 tumour (the liver task uses > 0).
    Each case is cut to the slices holding liver plus ``margin``, HU window [-200, 200].
    A volume without its segmentation, or a segmentation without its volume, stops the
    preparation - or, with ``exclude_incomplete``, is left out, printed and listed under
    ``excluded`` in ``prepare.json``. Splits 70/10/20 by case."""
    raw, out = Path(raw), Path(out)
    found: dict[tuple[Path, int], dict[str, Path]] = {}
    for kind in ("volume", "segmentation"):
        for path in raw.rglob(f"{kind}-*.nii*"):
            found.setdefault((path.parent, _lits_number(path)), {})[kind] = path
    if not any("volume" in v for v in found.values()):
        raise FileNotFoundError(f"{raw}: no volume-N.nii files (LiTS layout expected)")
    writer = PreparedWriter(out, "lits", str(raw), {"margin": margin, "window": LITS_WINDOW})
    excluded = []
    for (folder, number), files in sorted(found.items(), key=lambda kv: (kv[0][1], str(kv[0][0]))):
        if len(files) < 2:
            (_, path), other = (
                next(iter(files.items())),
                ({"volume", "segmentation"} - set(files)).pop(),
            )
            problem = f"no matching {other}-{number}.nii in {folder}"
            exclude_incomplete_case(excluded, path, problem, exclude_incomplete)
            continue
        vol_path, seg_path = files["volume"], files["segmentation"]
        image, seg = read_nifti(vol_path), read_label_nifti(seg_path, LITS_LABELS)
        check_ct(image.array, vol_path)
        check_aligned(image, seg, vol_path, seg_path)
        _add_lits_case(
            writer,
            f"lits{number:04d}",
            image.array,
            seg.array,
            image.spacing,
            str(seg_path),
            margin,
        )
    return [writer.finish(split_by_patient(writer.ids, seed=seed), {"excluded": excluded})]


def prepare_synthetic_lits(
    out: str | os.PathLike,
    n: int = 40,
    shape: tuple[int, int, int] = (128, 128, 80),
    spacing: tuple[float, float, float] = (1.5, 1.5, 2.0),
    margin: int = 30,
    seed: int = 1,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> list[Path]:
    """The synthetic LiTS: ``n`` chest CTs of collection ``seed`` (another collection than the
    synthetic LUNA's, as LiTS's patients are not LUNA's), prepared like the real one;
    ``fractions``: train / val / test by case."""
    params = {
        "n": n,
        "shape": list(shape),
        "spacing": list(spacing),
        "margin": margin,
        "seed": seed,
        "window": LITS_WINDOW,
        "fractions": list(fractions),
    }
    writer = PreparedWriter(Path(out), "synthetic-lits", "synthetic_chest_ct", params)
    for i in range(n):
        case = synthetic_chest_ct(seed, i, shape, spacing)
        _add_lits_case(
            writer, f"ct{i:04d}", case.image, case.liver, spacing, f"synthetic case {i}", margin
        )
    return [writer.finish(split_by_patient(writer.ids, fractions=fractions, seed=seed))]


__all__ = [
    "Volume",
    "prepare_luna",
    "prepare_lits",
    "prepare_synthetic_luna",
    "prepare_synthetic_lits",
]
