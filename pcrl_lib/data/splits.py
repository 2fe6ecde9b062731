"""Split protocols (PCRLv2 Sec. 4.1-4.2): train / val / test by patient, the semi-supervised
protocol and the transfer protocol. Deterministic, written beside the prepared data as text
files (one sample id a line), never overlapping.

- **By patient, 70 / 10 / 20**: patients (not samples) are shuffled with a seed and cut by
  the fractions, so no patient's images fall on both sides of a split.
- **Semi-supervised** (Tables II, IV, V): a label ratio ``r`` of the training split is
  labelled and used for fine-tuning; the rest is unlabelled and used for pre-training.
  As the official lists (RL4M/PCRLv2 ``utils.py``: ``get_luna_pretrain_list`` takes
  ``x_train[:int(len(x_train) * ratio)]``, ``get_luna_finetune_list`` the remainder) the
  ordered training list is cut once: the **first** ``n - round(n * r)`` samples are the
  pre-training (unlabelled) part, the **last** ``round(n * r)`` the fine-tuning (labelled) part.
- **Transfer** (Tables VI-VIII): pre-train on all of the source dataset's training split;
  fine-tune on the first ``round(n * r)`` samples of the target's training split; validate
  and test on the target's own val / test splits.
- **Label draws** (:func:`label_draw`): draw 0 is the ordered list above (the official
  protocol); draw ``d > 0`` reorders the training list patient by patient with seed ``d``
  before the same cut, so each draw labels another subset, the same for every method.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from pcrl_lib.io import write_text_atomic

SPLITS = ("train", "val", "test")


def split_by_patient(
    ids: Sequence[str],
    patient_of: Callable[[str], str] | Mapping[str, str] | None = None,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
) -> dict[str, list[str]]:
    """Split sample ids into train / val / test by patient.

    Args:
        ids: sample ids (unique).
        patient_of: the patient of each id (function or mapping); default: each id is its
            own patient.
        fractions: train, val, test fractions of the patients (sum 1).
        seed: shuffling seed.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, ids in their input order.

    Raises:
        ValueError: duplicate ids, bad fractions, or fewer patients than splits.
    """
    if len(set(ids)) != len(ids):
        dup = sorted(i for i, n in Counter(ids).items() if n > 1)[:5]
        raise ValueError(f"split_by_patient: duplicate sample ids, e.g. {dup}")
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"split_by_patient: fractions must be 3 non-negative numbers summing to 1, got {fractions}"
        )
    get = patient_of.__getitem__ if isinstance(patient_of, Mapping) else patient_of or (lambda i: i)
    patients = sorted({get(i) for i in ids})
    if len(patients) < sum(f > 0 for f in fractions):
        raise ValueError(f"split_by_patient: {len(patients)} patients cannot fill {fractions}")
    order = np.random.default_rng(seed).permutation(len(patients))
    counts = np.round(np.asarray(fractions) * len(patients)).astype(int)
    counts[-1] = len(patients) - counts[:-1].sum()
    for k in np.flatnonzero((np.asarray(fractions) > 0) & (counts < 1)):
        counts[k] += 1  # every split with a share gets at least one patient
        counts[int(np.argmax(counts))] -= 1
    cuts = np.cumsum(counts)[:2]
    part = {}
    for rank, idx in enumerate(order):
        part[patients[idx]] = SPLITS[int(np.searchsorted(cuts, rank, side="right"))]
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for i in ids:
        out[part[get(i)]].append(i)
    return out


def _check_ratio(ratio: float) -> None:
    if not 0 < ratio <= 1:
        raise ValueError(f"label ratio must be in (0, 1], got {ratio}")


def semi_supervised(train: Sequence[str], label_ratio: float) -> dict[str, list[str]]:
    """The semi-supervised protocol on an ordered training list.

    Returns:
        ``{"unlabelled": first n - k, "labelled": last k}`` with ``k = max(1, round(n * r))``:
        pre-train on ``unlabelled``, fine-tune on ``labelled``.
    """
    _check_ratio(label_ratio)
    k = max(1, round(len(train) * label_ratio))
    return {"unlabelled": list(train[: len(train) - k]), "labelled": list(train[len(train) - k :])}


def transfer(target_train: Sequence[str], label_ratio: float) -> list[str]:
    """The transfer protocol's labelled part: the first ``max(1, round(n * r))`` samples of
    the target's ordered training list (the source is pre-trained on whole)."""
    _check_ratio(label_ratio)
    return list(target_train[: max(1, round(len(target_train) * label_ratio))])


def label_draw(
    train: Sequence[str],
    draw: int = 0,
    patient_of: Callable[[str], str] | Mapping[str, str] | None = None,
) -> list[str]:
    """The training list in the order of label draw ``draw`` (see the module docstring).

    Args:
        train: the ordered training split.
        draw: 0 keeps ``train`` as it is; ``d > 0`` shuffles the patients with seed ``d``
            and lists each patient's samples together, in their original order (a
            patient's candidates or images are drawn as a cluster).
        patient_of: the patient of each id (default: each id is its own patient).

    Returns:
        A permutation of ``train``; :func:`semi_supervised` / :func:`transfer` cut it.
    """
    if draw < 0:
        raise ValueError(f"label draw must be >= 0, got {draw}")
    if draw == 0:
        return list(train)
    get = patient_of.__getitem__ if isinstance(patient_of, Mapping) else patient_of or (lambda i: i)
    groups: dict[str, list[str]] = {}
    for i in train:
        groups.setdefault(get(i), []).append(i)
    patients = list(groups)
    order = np.random.default_rng([draw, 0x5EED]).permutation(len(patients))
    return [i for k in order for i in groups[patients[k]]]


def write_splits(folder: str | os.PathLike, splits: Mapping[str, Iterable[str]]) -> Path:
    """Write each split as ``<folder>/<name>.txt`` (one id a line), atomically; refuse
    overlapping splits. Returns the folder."""
    folder = Path(folder)
    lists = {name: list(ids) for name, ids in splits.items()}
    check_disjoint(lists, where=str(folder))
    for name, ids in lists.items():
        write_text_atomic(folder / f"{name}.txt", "".join(f"{i}\n" for i in ids))
    return folder


def read_splits(folder: str | os.PathLike, names: Sequence[str] = SPLITS) -> dict[str, list[str]]:
    """Read ``<folder>/<name>.txt`` for each name; errors name the file and the problem."""
    folder = Path(folder)
    out = {}
    for name in names:
        path = folder / f"{name}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"split file missing: {path}")
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not ids:
            raise ValueError(f"{path}: empty split")
        if len(set(ids)) != len(ids):
            raise ValueError(f"{path}: duplicate ids")
        out[name] = ids
    check_disjoint(out, where=str(folder))
    return out


def check_disjoint(splits: Mapping[str, Sequence[str]], where: str = "splits") -> None:
    """Raise ``ValueError`` naming the two splits and an id when any two overlap."""
    names = list(splits)
    for a_i, a in enumerate(names):
        seen = set(splits[a])
        for b in names[a_i + 1 :]:
            common = seen.intersection(splits[b])
            if common:
                raise ValueError(
                    f"{where}: splits {a!r} and {b!r} share {len(common)} ids, e.g. {sorted(common)[:3]}"
                )
