"""Brain MRI: BraTS 2018 (WT / TC / ET segmentation), real or synthetic
(:mod:`pcrl_lib.data.synthetic.mri`). Both go through :func:`_add_brats_case`: the four
modalities in the order t1, t1ce, t2, flair, each z-scored over the brain and cropped to the
brain's bounding box (stored as float16), and the label map with BraTS's values 0, 1, 2, 4.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pcrl_lib.data.plausibility import check_mri
from pcrl_lib.data.prepared import PreparedWriter, check_labels, exclude_incomplete_case
from pcrl_lib.data.preprocess import normalise_brain
from pcrl_lib.data.readers import check_aligned, read_label_nifti, read_nifti
from pcrl_lib.data.splits import split_by_patient
from pcrl_lib.data.synthetic.mri import BRATS_LABELS, MODALITIES, synthetic_brain_mri


def _add_brats_case(
    writer: PreparedWriter, case_id: str, image: np.ndarray, seg: np.ndarray, where: str
) -> None:
    check_labels(seg, BRATS_LABELS, where)
    try:
        norm, box = normalise_brain(image)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    writer.add(
        case_id, case_id, image=norm.astype(np.float16), mask=seg[box].astype(np.uint8)[None]
    )


def _modality_files(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f"*_{name}.nii.gz")) + sorted(folder.glob(f"*_{name}.nii"))


def _modality_file(folder: Path, name: str) -> Path:
    hits = _modality_files(folder, name)
    if not hits:
        raise FileNotFoundError(
            f"{folder}: no *_{name}.nii(.gz) file (BraTS layout: one per modality and _seg)"
        )
    if len(hits) > 1:
        raise ValueError(f"{folder}: several *_{name}.nii files: {[h.name for h in hits]}")
    return hits[0]


def prepare_brats(
    raw: str | os.PathLike, out: str | os.PathLike, seed: int = 0, exclude_incomplete: bool = False
) -> list[Path]:
    """Prepare BraTS 2018: every folder (any depth, e.g. ``HGG/`` and ``LGG/``) holding any
    ``*_{t1,t1ce,t2,flair,seg}.nii(.gz)`` is one subject, which must have all five files
    on one grid. A subject missing one stops the preparation with what is missing - or,
    with ``exclude_incomplete``, is left out, printed and listed under ``excluded`` in
    ``prepare.json``: nothing disappears silently. Splits 70/10/20 by subject."""
    raw, out = Path(raw), Path(out)
    names = (*MODALITIES, "seg")
    subjects = sorted({p.parent for m in names for p in raw.rglob(f"*_{m}.nii*")})
    if not subjects:
        raise FileNotFoundError(
            f"{raw}: no subject folders with *_flair.nii.gz (BraTS layout expected)"
        )
    writer = PreparedWriter(
        out, "brats", str(raw), {"modalities": list(MODALITIES), "labels": list(BRATS_LABELS)}
    )
    excluded = []
    for folder in subjects:
        missing = [m for m in names if not _modality_files(folder, m)]
        if missing:
            files = ", ".join(f"*_{m}.nii(.gz)" for m in missing)
            problem = f"incomplete BraTS subject (no {files})"
            exclude_incomplete_case(excluded, folder, problem, exclude_incomplete)
            continue
        paths = [_modality_file(folder, m) for m in MODALITIES]
        vols = [read_nifti(p) for p in paths]
        for path, v in zip(paths, vols, strict=True):
            check_mri(v.array, path)
        seg_path = _modality_file(folder, "seg")
        seg = read_label_nifti(seg_path, BRATS_LABELS)
        for path, v in zip(paths, vols, strict=True):  # every contrast on the mask's grid
            check_aligned(v, seg, path, seg_path)
        _add_brats_case(
            writer, folder.name, np.stack([v.array for v in vols]), seg.array, str(seg_path)
        )
    return [writer.finish(split_by_patient(writer.ids, seed=seed), {"excluded": excluded})]


def prepare_synthetic_brats(
    out: str | os.PathLike,
    n: int = 40,
    shape: tuple[int, int, int] = (96, 96, 80),
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> list[Path]:
    """The synthetic BraTS: ``n`` brain MRIs of collection ``seed``, prepared like the real one;
    ``fractions``: train / val / test by subject."""
    writer = PreparedWriter(
        Path(out),
        "synthetic-brats",
        "synthetic_brain_mri",
        {"n": n, "shape": list(shape), "seed": seed, "fractions": list(fractions)},
    )
    for i in range(n):
        case = synthetic_brain_mri(seed, i, shape)
        _add_brats_case(writer, f"mri{i:04d}", case.image, case.seg, f"synthetic case {i}")
    return [writer.finish(split_by_patient(writer.ids, fractions=fractions, seed=seed))]
