"""Tiny raw datasets written in their published formats, quirks included, for the readers'
tests: LUNA16 (.mhd/.raw, anisotropic spacing, world-coordinate CSVs), NIH ChestX-ray14
(PNG, pipe-separated labels, "No Finding"), CheXpert (JPEG, uncertain -1 and blank labels),
BraTS 2018 (.nii.gz per modality, label 4), LiTS (.nii, labels 1 / 2), MedMNIST (.npz)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk
from PIL import Image

LUNA_SPACING = (0.75, 0.75, 2.5)  # x, y, z mm: LUNA's typical anisotropy
LUNA_ORIGIN = (-100.0, -120.0, -300.0)


def write_luna(root: Path, n_scans: int = 3) -> Path:
    """``n_scans`` scans of 64x64x16 voxels, each with a bright 6 mm ball (a nodule) at a
    known world position and a listed negative elsewhere."""
    rows, ann = [], []
    for s in range(n_scans):
        folder = root / f"subset{s % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        uid = f"1.3.6.1.4.1.14519.5.2.1.{s}"
        arr = np.full((16, 64, 64), -900, dtype=np.int16)  # SimpleITK order (z, y, x)
        z, y, x = np.ogrid[:16, :64, :64]
        cx, cy, cz = 20 + 5 * s, 30, 8
        ball = ((x - cx) * LUNA_SPACING[0]) ** 2 + ((y - cy) * LUNA_SPACING[1]) ** 2 + (
            (z - cz) * LUNA_SPACING[2]
        ) ** 2 < 3**2
        arr[ball] = 100
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(LUNA_SPACING)
        img.SetOrigin(LUNA_ORIGIN)
        sitk.WriteImage(img, str(folder / f"{uid}.mhd"))
        world = np.asarray(LUNA_ORIGIN) + np.asarray([cx, cy, cz]) * np.asarray(LUNA_SPACING)
        rows.append([uid, *world, 1])
        rows.append(
            [
                uid,
                *(np.asarray(LUNA_ORIGIN) + np.asarray([45, 45, 4]) * np.asarray(LUNA_SPACING)),
                0,
            ]
        )
        ann.append([uid, *world, 6.0])
    rows.append(["1.3.6.absent", 0.0, 0.0, 0.0, 0])  # a scan of a subset not downloaded
    pd.DataFrame(rows, columns=["seriesuid", "coordX", "coordY", "coordZ", "class"]).to_csv(
        root / "candidates_V2.csv", index=False
    )
    pd.DataFrame(ann, columns=["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]).to_csv(
        root / "annotations.csv", index=False
    )
    return root


NIH_ROWS = [
    ("00000001_000.png", "Cardiomegaly|Effusion", 1),
    ("00000001_001.png", "No Finding", 1),
    ("00000002_000.png", "Hernia", 2),
    ("00000003_000.png", "Infiltration|Mass|Nodule", 3),
    ("00000004_000.png", "No Finding", 4),
    ("00000005_000.png", "Pleural_Thickening", 5),
    ("00000006_000.png", "Pneumothorax", 6),
    ("00000007_000.png", "No Finding", 7),
    ("00000008_000.png", "Edema|Emphysema", 8),
    ("00000009_000.png", "Atelectasis", 9),
]


def write_nih(root: Path) -> Path:
    """Ten 40x48 PNGs (one RGBA, as in the real release) and the CSV / list files."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k, (name, _, _) in enumerate(NIH_ROWS):
        arr = rng.integers(0, 256, (40, 48), dtype=np.uint8)
        img = Image.fromarray(arr).convert("RGBA") if k == 3 else Image.fromarray(arr)
        img.save(root / "images" / name)
    table = pd.DataFrame(NIH_ROWS, columns=["Image Index", "Finding Labels", "Patient ID"])
    table["Follow-up #"] = 0
    table.to_csv(root / "Data_Entry_2017.csv", index=False)
    names = [r[0] for r in NIH_ROWS]
    (root / "train_val_list.txt").write_text("\n".join(names[:8]) + "\n")
    (root / "test_list.txt").write_text("\n".join(names[8:]) + "\n")
    return root


CHEXPERT_OBS = [
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
]  # fmt: skip


def write_chexpert(root: Path, n: int = 6) -> Path:
    """``root`` is ``CheXpert-v1.0-small``: train.csv, valid.csv and the JPEGs they list."""
    rng = np.random.default_rng(1)
    for split, count in (("train", n), ("valid", 2)):
        rows = []
        for k in range(count):
            rel = f"CheXpert-v1.0-small/{split}/patient{k + (0 if split == 'train' else 100):05d}/study1/view1_frontal.jpg"
            path = root.parent / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (50, 40), dtype=np.uint8)).save(path)
            labels = [np.nan] * len(CHEXPERT_OBS)
            labels[2], labels[8] = 1.0, -1.0  # cardiomegaly positive, atelectasis uncertain
            labels[5] = 0.0
            rows.append([rel, "Female", 50, "Frontal", "PA", *labels])
        lateral = rows[0].copy()
        lateral[0] = lateral[0].replace("view1_frontal", "view2_lateral")
        lateral[3] = "Lateral"
        Image.fromarray(rng.integers(0, 256, (50, 40), dtype=np.uint8)).save(
            root.parent / lateral[0]
        )
        rows.append(lateral)
        pd.DataFrame(
            rows, columns=["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_OBS]
        ).to_csv(root / f"{split}.csv", index=False)
    return root


def _nifti(path: Path, arr: np.ndarray, zooms=(1.0, 1.0, 1.0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(arr, np.diag([*zooms, 1.0]))
    nib.save(img, str(path))


def write_brats(root: Path, n: int = 4, shape=(24, 24, 20)) -> Path:
    """``HGG/Brats18_x_y_1/Brats18_x_y_1_{t1,t1ce,t2,flair,seg}.nii.gz`` with labels 0/1/2/4
    and a zero background outside a brain box."""
    rng = np.random.default_rng(2)
    for s in range(n):
        name = f"Brats18_TEST_{s}_1"
        folder = root / ("HGG" if s % 2 == 0 else "LGG") / name
        brain = np.zeros(shape, bool)
        brain[3:-3, 4:-4, 2:-2] = True
        seg = np.zeros(shape, np.int16)
        seg[8:16, 8:16, 6:14] = 2
        seg[10:14, 10:14, 8:12] = 4
        seg[11:13, 11:13, 9:11] = 1
        for m, base in (("t1", 300), ("t1ce", 350), ("t2", 500), ("flair", 400)):
            arr = np.where(brain, base + 50 * rng.standard_normal(shape), 0).astype(np.float32)
            _nifti(folder / f"{name}_{m}.nii.gz", arr)
        _nifti(folder / f"{name}_seg.nii.gz", seg)
    return root


def write_lits(root: Path, n: int = 4, shape=(20, 20, 80), zooms=(0.8, 0.8, 2.0)) -> Path:
    """``volume-N.nii`` / ``segmentation-N.nii``: liver (1) in slices 30-49 with a tumour (2)."""
    rng = np.random.default_rng(3)
    for k in range(n):
        hu = (rng.normal(0, 300, shape)).astype(np.float32)
        seg = np.zeros(shape, np.uint8)
        seg[5:15, 5:15, 30:50] = 1
        seg[8:11, 8:11, 38:42] = 2
        _nifti(root / f"volume-{k}.nii", hu, zooms)
        _nifti(root / f"segmentation-{k}.nii", seg, zooms)
    return root


def write_medmnist(root: Path, name: str = "organmnist3d", size: int = 28) -> Path:
    """A MedMNIST-style ``<name>_<size>.npz`` with a few samples per split."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(4)
    spec = {
        "chestmnist": (2, 14, True),
        "nodulemnist3d": (3, 1, True),
        "organmnist3d": (3, 11, False),
    }[name]
    arrays = {}
    for split, count in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(
            0, 256, (count, *([size] * spec[0])), dtype=np.uint8
        )
        arrays[f"{split}_labels"] = (
            rng.integers(0, 2, (count, spec[1]))
            if spec[2]
            else rng.integers(0, spec[1], (count, 1))
        )
    np.savez(root / f"{name}_{size}.npz", **arrays)
    return root
