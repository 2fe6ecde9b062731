"""Chest X-rays: NIH ChestX-ray14 (14 findings, multi-label) and CheXpert (the transfer
source of Table VI), real or synthetic (:mod:`pcrl_lib.data.synthetic.xray`). Every image is
stored grey-scale, resized to ``size x size``, uint8; labels are manifest columns.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from pcrl_lib.data.plausibility import check_not_constant
from pcrl_lib.data.prepared import PreparedWriter, check_unique, read_csv
from pcrl_lib.data.preprocess import xray_uint8
from pcrl_lib.data.readers import read_grey_image
from pcrl_lib.data.splits import split_by_patient
from pcrl_lib.data.synthetic.xray import NIH_FINDINGS, synthetic_chest_xray

NIH_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
CHEXPERT_OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
UNCERTAIN_POLICIES = ("ones", "zeros", "ignore")


def parse_nih_labels(text: str, where: str) -> np.ndarray:
    """``"Effusion|Mass"`` -> 14 binary labels in :data:`NIH_FINDINGS` order; ``"No Finding"``
    -> all zero. An unknown finding stops with ``where`` (file and row) in the message."""
    names = [t.strip() for t in str(text).split("|") if t.strip()]
    if not names:
        raise ValueError(f"{where}: empty 'Finding Labels'")
    out = np.zeros(len(NIH_FINDINGS), dtype=np.float32)
    for name in names:
        if name == "No Finding":
            if len(names) > 1:
                raise ValueError(f"{where}: 'No Finding' together with findings: {text!r}")
            continue
        if name not in NIH_FINDINGS:
            raise ValueError(
                f"{where}: unknown finding {name!r} (known: {', '.join(NIH_FINDINGS)})"
            )
        out[NIH_FINDINGS.index(name)] = 1
    return out


def _image_index(raw: Path) -> dict[str, Path]:
    """NIH ships ``images/*.png`` (or ``images_001/images/*.png`` ... when unpacked per part)."""
    return {p.name: p for p in raw.glob("images*/**/*.png")} | {
        p.name: p for p in raw.glob("images/*.png")
    }


def _nih_splits(
    raw: Path, ids: list[str], patients: dict[str, str], split: str, seed: int
) -> dict[str, list[str]]:
    if split == "paper":
        return split_by_patient(ids, patients, seed=seed)
    if split != "official":
        raise ValueError(f"NIH split must be 'paper' or 'official', got {split!r}")
    lists = {}
    for name in ("train_val_list.txt", "test_list.txt"):
        path = raw / name
        if not path.is_file():
            raise FileNotFoundError(f"missing file: {path} (needed by split='official')")
        lists[name] = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    known = set(ids)  # case ids are the file names' stems
    lists = {k: [Path(i).stem for i in v] for k, v in lists.items()}
    train_val = [i for i in lists["train_val_list.txt"] if i in known]
    inner = split_by_patient(train_val, patients, fractions=(0.875, 0.125, 0.0), seed=seed)
    return {
        "train": inner["train"],
        "val": inner["val"],
        "test": [i for i in lists["test_list.txt"] if i in known],
    }


def prepare_nih(
    raw: str | os.PathLike,
    out: str | os.PathLike,
    size: int = 224,
    split: str = "paper",
    seed: int = 0,
) -> list[Path]:
    """Prepare NIH ChestX-ray14 from ``Data_Entry_2017.csv`` and ``images/*.png``.

    ``split="paper"``: 70/10/20 by patient (Sec. 4.1). ``split="official"``: NIH's
    ``test_list.txt`` as test, ``train_val_list.txt`` cut 7:1 by patient into train / val.
    Every row of the CSV must have its image: a missing one stops the preparation.
    """
    raw, out = Path(raw), Path(out)
    csv = raw / "Data_Entry_2017.csv"
    table = read_csv(csv, NIH_COLUMNS)
    check_unique(table, "Image Index", csv)
    images = _image_index(raw)
    missing = [n for n in table["Image Index"] if n not in images]
    if missing:
        raise FileNotFoundError(
            f"{raw}: {len(missing)} image(s) listed in {csv.name} are missing, e.g. {missing[:3]}"
        )
    writer = PreparedWriter(
        out, "nih", str(raw), {"size": size, "split": split, "labels": list(NIH_FINDINGS)}
    )
    for row, (name, text, patient) in enumerate(table[list(NIH_COLUMNS)].itertuples(index=False)):
        labels = parse_nih_labels(text, f"{csv} row {row + 2}")
        grey = read_grey_image(images[name])
        check_not_constant(grey, images[name])
        image = xray_uint8(grey, size)
        writer.add(
            Path(name).stem,
            str(patient),
            dict(zip(NIH_FINDINGS, labels.tolist(), strict=True)),
            image=image[None],
        )
    return [writer.finish(_nih_splits(raw, writer.ids, writer.patients, split, seed))]


def chexpert_labels(values: pd.DataFrame, policy: str, where: str) -> np.ndarray:
    """CheXpert's observation columns -> ``(N, 14)`` float32.

    Blank -> 0 (not mentioned); 1 positive; 0 negative; -1 uncertain mapped by ``policy``:
    ``"ones"`` (U-Ones: uncertain counts as positive, Irvin et al. 2019's best choice for
    atelectasis and oedema), ``"zeros"`` (U-Zeros) or ``"ignore"`` (kept as -1, for a
    masked loss). Other values stop with ``where`` and the column.
    """
    if policy not in UNCERTAIN_POLICIES:
        raise ValueError(
            f"uncertain-label policy must be one of {UNCERTAIN_POLICIES}, got {policy!r}"
        )
    arr = values.apply(pd.to_numeric, errors="coerce")
    bad = arr.notna() & ~arr.isin([1, 0, -1]) | (values.notna() & arr.isna())
    if bad.any().any():
        col = bad.any().idxmax()
        raise ValueError(
            f"{where}: column {col!r} has values other than 1, 0, -1 or blank, row {int(bad[col].idxmax()) + 2}"
        )
    out = np.array(arr.fillna(0).to_numpy(np.float32), copy=True)
    if policy != "ignore":
        out[out == -1] = 1.0 if policy == "ones" else 0.0
    return out


def _chexpert_image(raw: Path, rel: str) -> Path:
    """``Path`` entries start with the release folder (``CheXpert-v1.0-small/train/...``);
    accept the CSVs' folder being that folder or its parent."""
    parts = Path(rel).parts
    for candidate in (
        raw / rel,
        raw.parent / rel,
        raw.joinpath(*parts[1:]) if len(parts) > 1 else raw / rel,
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{raw}: image {rel!r} listed in the CSV is missing")


def prepare_chexpert(
    raw: str | os.PathLike,
    out: str | os.PathLike,
    size: int = 224,
    uncertain: str = "ones",
    frontal_only: bool = True,
    seed: int = 0,
) -> list[Path]:
    """Prepare CheXpert from ``train.csv`` and ``valid.csv`` (``Path``, ``Frontal/Lateral``
    and the 14 observations). Uncertain labels follow ``uncertain`` (:func:`chexpert_labels`);
    only frontal views by default (the NIH target is frontal). In the paper CheXpert is the
    pre-training source of the transfer protocol; splits are 70/10/20 by patient."""
    raw, out = Path(raw), Path(out)
    frames = []
    for name in ("train.csv", "valid.csv"):
        table = read_csv(raw / name, ("Path", "Frontal/Lateral", *CHEXPERT_OBSERVATIONS))
        table["_labels"] = list(
            chexpert_labels(table[list(CHEXPERT_OBSERVATIONS)], uncertain, str(raw / name))
        )
        frames.append(table)
    table = pd.concat(frames, ignore_index=True)
    check_unique(table, "Path", f"{raw / 'train.csv'} + valid.csv")
    if frontal_only:
        table = table[table["Frontal/Lateral"] == "Frontal"]
    writer = PreparedWriter(
        out,
        "chexpert",
        str(raw),
        {
            "size": size,
            "uncertain": uncertain,
            "frontal_only": frontal_only,
            "labels": list(CHEXPERT_OBSERVATIONS),
        },
    )
    for rel, labels in zip(table["Path"], table["_labels"], strict=True):
        m = re.search(r"(patient\d+)/(study\d+)/(view\d+)", rel)
        if m is None:
            raise ValueError(f"{raw}: Path {rel!r} is not .../patientNNNNN/studyN/viewN_*.jpg")
        path = _chexpert_image(raw, rel)
        grey = read_grey_image(path)
        check_not_constant(grey, path)
        image = xray_uint8(grey, size)
        columns = dict(zip(CHEXPERT_OBSERVATIONS, labels.tolist(), strict=True))
        writer.add(f"{m[1]}_{m[2]}_{m[3]}", m[1], columns, image=image[None])
    return [writer.finish(split_by_patient(writer.ids, writer.patients, seed=seed))]


def prepare_synthetic_xray(
    out: str | os.PathLike,
    n: int = 1000,
    size: int = 224,
    domain: str = "nih",
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> list[Path]:
    """``n`` synthetic chest X-rays of ``domain`` (``"nih"`` or ``"chexpert"``), labelled with
    the 14 NIH findings, prepared like the real NIH; one image per patient; ``fractions``:
    train / val / test."""
    params = {"n": n, "size": size, "domain": domain, "seed": seed, "labels": list(NIH_FINDINGS)}
    writer = PreparedWriter(
        Path(out),
        f"synthetic-{domain}",
        "synthetic_chest_xray",
        {**params, "fractions": list(fractions)},
    )
    for i in range(n):
        image, labels = synthetic_chest_xray(seed, i, size, domain)
        writer.add(
            f"{domain}{i:06d}",
            f"{domain}{i:06d}",
            dict(zip(NIH_FINDINGS, labels.tolist(), strict=True)),
            image=xray_uint8(image, size)[None],
        )
    return [writer.finish(split_by_patient(writer.ids, fractions=fractions, seed=seed))]
