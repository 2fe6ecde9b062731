"""``prepare(dataset, raw, out, **options)``: one entry point for every dataset, used by
``python -m pcrl_lib prepare`` and by notebook 00.

================== ======================================== ===================================
dataset            raw folder holds                          writes under ``out``
================== ======================================== ===================================
luna               subset*/*.mhd, candidates_V2.csv,         volumes/, candidates/
                   annotations.csv
lits               volume-N.nii, segmentation-N.nii          one dataset
brats              <subject>/<subject>_{t1,t1ce,t2,flair,    one dataset
                   seg}.nii.gz
nih                Data_Entry_2017.csv, images/*.png         one dataset
chexpert           train.csv, valid.csv, the images          one dataset
medmnist           <name>.npz (``--name chestmnist`` ...)    one dataset
synthetic-luna     (nothing: generated)                      volumes/, candidates/
synthetic-lits     (nothing)                                 one dataset
synthetic-brats    (nothing)                                 one dataset
synthetic-nih      (nothing)                                 one dataset
synthetic-chexpert (nothing)                                 one dataset
================== ======================================== ===================================
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pcrl_lib.data.sources.ct import (
    prepare_lits,
    prepare_luna,
    prepare_synthetic_lits,
    prepare_synthetic_luna,
)
from pcrl_lib.data.sources.medmnist import prepare_medmnist
from pcrl_lib.data.sources.mri import prepare_brats, prepare_synthetic_brats
from pcrl_lib.data.sources.xray import prepare_chexpert, prepare_nih, prepare_synthetic_xray


def _synthetic_nih(out, **kw):
    return prepare_synthetic_xray(out, domain="nih", **{"seed": 0, **kw})


def _synthetic_chexpert(out, **kw):
    return prepare_synthetic_xray(out, domain="chexpert", **{"seed": 1, **kw})


_synthetic_nih.__doc__ = prepare_synthetic_xray.__doc__
_synthetic_chexpert.__doc__ = prepare_synthetic_xray.__doc__

REAL: dict[str, Callable[..., list[Path]]] = {
    "luna": prepare_luna,
    "lits": prepare_lits,
    "brats": prepare_brats,
    "nih": prepare_nih,
    "chexpert": prepare_chexpert,
    "medmnist": prepare_medmnist,
}
SYNTHETIC: dict[str, Callable[..., list[Path]]] = {
    "synthetic-luna": prepare_synthetic_luna,
    "synthetic-lits": prepare_synthetic_lits,
    "synthetic-brats": prepare_synthetic_brats,
    "synthetic-nih": _synthetic_nih,
    "synthetic-chexpert": _synthetic_chexpert,
}
DATASETS = {**REAL, **SYNTHETIC}


def options_of(dataset: str) -> dict[str, Any]:
    """The options ``dataset`` accepts with their defaults (beyond ``raw`` and ``out``)."""
    fn = DATASETS[dataset]
    target = prepare_synthetic_xray if fn in (_synthetic_nih, _synthetic_chexpert) else fn
    skip = {"raw", "out", "domain"}
    return {k: p.default for k, p in inspect.signature(target).parameters.items() if k not in skip}


def prepare(
    dataset: str, out: str | os.PathLike, raw: str | os.PathLike | None = None, **options: Any
) -> list[Path]:
    """Prepare ``dataset`` into ``out``; returns the prepared folders (one, or two for LUNA).

    Real datasets need ``raw`` (their downloaded folder, in the published layout); synthetic
    ones are generated and take no ``raw``. Unknown options stop with the accepted list.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    allowed = options_of(dataset)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"prepare {dataset}: unknown option(s) {unknown}; accepted: {sorted(allowed)}"
        )
    if dataset in REAL:
        if raw is None:
            raise ValueError(f"prepare {dataset}: --raw DIR (the downloaded dataset) is required")
        if not Path(raw).is_dir():
            raise FileNotFoundError(f"prepare {dataset}: raw folder {raw} does not exist")
        return DATASETS[dataset](raw, out, **options)
    if raw is not None:
        raise ValueError(f"prepare {dataset}: synthetic data is generated; drop --raw")
    return DATASETS[dataset](out, **options)
