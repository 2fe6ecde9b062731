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


# options that count things (>= 1) and options that must not be negative (>= 0)
_AT_LEAST_ONE = {"n", "crop", "size", "max_nodules"}
_NOT_NEGATIVE = {"margin", "negatives_per_positive", "extra_mimics", "seed"}
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _choices(dataset: str, key: str) -> tuple | None:
    from pcrl_lib.data.sources.medmnist import MEDMNIST
    from pcrl_lib.data.sources.xray import UNCERTAIN_POLICIES

    known = {
        ("nih", "split"): ("paper", "official"),
        ("chexpert", "uncertain"): tuple(UNCERTAIN_POLICIES),
        ("medmnist", "name"): tuple(MEDMNIST),
    }
    return known.get((dataset, key))


def validate_options(dataset: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``dataset``'s defaults before any work, and typed like
    them: booleans (``True``/``False``, or the strings true/false/1/0/yes/no), integers,
    numbers, sequences of the default's length; counts >= 1, margins and seeds >= 0,
    ``fractions`` >= 0 summing to 1.

    Raises:
        ValueError: naming the option, the value and what it must be.
    """
    defaults = options_of(dataset)
    out = {}
    for key, value in options.items():
        default = defaults[key]
        where = f"prepare {dataset}: option {key}={value!r}"
        if isinstance(default, bool):
            if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
                value = value.lower() in _TRUE
            if not isinstance(value, bool):
                raise ValueError(f"{where} must be true or false")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{where} must be an integer")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where} must be a number")
            value = float(value)
        elif isinstance(default, (tuple, list)):
            if not isinstance(value, (tuple, list)) or len(value) != len(default):
                raise ValueError(f"{where} must be a list of {len(default)} numbers")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise ValueError(f"{where} must be a list of {len(default)} numbers")
            value = tuple(value)
            if any(v <= 0 for v in value) and key != "fractions":
                raise ValueError(f"{where}: every value must be > 0")
        elif (
            default is None
            and (key in _AT_LEAST_ONE or key in _NOT_NEGATIVE)
            and (isinstance(value, bool) or not isinstance(value, int))
        ):
            raise ValueError(f"{where} must be an integer")
        choices = _choices(dataset, key)
        if choices is not None and value not in choices:
            raise ValueError(f"{where} must be one of {list(choices)}")
        if key in _AT_LEAST_ONE and value < 1:
            raise ValueError(f"{where} must be >= 1")
        if key in _NOT_NEGATIVE and value < 0:
            raise ValueError(f"{where} must be >= 0")
        if key == "fractions" and (min(value) < 0 or abs(sum(value) - 1) > 1e-6):
            raise ValueError(f"{where}: three fractions >= 0 that sum to 1")
        out[key] = value
    return out


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
    options = validate_options(dataset, options)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"prepare {dataset}: --out {out} is a file, not a folder")
    if dataset in REAL:
        if raw is None:
            raise ValueError(f"prepare {dataset}: --raw DIR (the downloaded dataset) is required")
        if not Path(raw).is_dir():
            raise FileNotFoundError(f"prepare {dataset}: raw folder {raw} does not exist")
        return _staged(out, lambda stage: DATASETS[dataset](raw, stage, **options))
    if raw is not None:
        raise ValueError(f"prepare {dataset}: synthetic data is generated; drop --raw")
    return _staged(out, lambda stage: DATASETS[dataset](stage, **options))


def _staged(out: Path, build: Callable[[Path], list[Path]]) -> list[Path]:
    """Run ``build`` into a temporary folder next to ``out`` and swap it in on success: a
    failed preparation leaves a previous ``out`` as it was, a successful one leaves no file
    of the previous one behind."""
    import shutil

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.preparing-{os.getpid()}"
    old = out.parent / f".{out.name}.replaced-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        roots = build(stage)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        out.rename(old)
    stage.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return [out / Path(r).relative_to(stage) for r in roots]
