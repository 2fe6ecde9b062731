"""What each reproduction profile runs on - the one place where small profiles scale the
paper down.

- ``smoke``: tiny synthetic data; every notebook runs in minutes; numbers are meaningless.
- ``demo``: synthetic data large enough that the tables' orderings can show on a CPU.
- ``paper``: the real datasets (prepared beforehand with ``python -m pcrl_lib prepare``).

Data folders live under the data root (``$PCRL_DATA_ROOT``, see :mod:`pcrl_lib.paths`):
``<data_root>/<profile>/<dataset>`` for synthetic profiles, ``<data_root>/<dataset>`` for the
real data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pcrl_lib.data.prepare import prepare
from pcrl_lib.paths import PROFILES, data_root

# Each table's source and target datasets, by role.
ROLES = ("luna", "lits", "brats", "nih", "chexpert")

DATA: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "smoke": {
        "luna": ("synthetic-luna", {"n": 6, "shape": (64, 64, 40), "spacing": (1.5, 1.5, 2.0)}),
        "lits": (
            "synthetic-lits",
            {"n": 5, "shape": (64, 64, 40), "spacing": (2.0, 2.0, 2.5), "margin": 4},
        ),
        "brats": ("synthetic-brats", {"n": 5, "shape": (40, 40, 32)}),
        "nih": ("synthetic-nih", {"n": 60, "size": 32}),
        "chexpert": ("synthetic-chexpert", {"n": 40, "size": 32}),
    },
    "demo": {
        "luna": ("synthetic-luna", {"n": 60, "shape": (96, 96, 64), "spacing": (1.5, 1.5, 2.0)}),
        "lits": (
            "synthetic-lits",
            {"n": 30, "shape": (96, 96, 64), "spacing": (2.0, 2.0, 2.5), "margin": 8},
        ),
        "brats": ("synthetic-brats", {"n": 30, "shape": (64, 64, 56)}),
        "nih": ("synthetic-nih", {"n": 2000, "size": 64}),
        "chexpert": ("synthetic-chexpert", {"n": 2000, "size": 64}),
    },
    "paper": {role: (role, {}) for role in ROLES},
}


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")


def dataset_dir(profile: str, role: str, root: str | os.PathLike | None = None) -> Path:
    """Where the prepared data of ``role`` (``luna``, ``lits``, ...) lives for ``profile``."""
    _check_profile(profile)
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    base = data_root(root)
    return base / role if profile == "paper" else base / profile / DATA[profile][role][0]


def _matches(folder: Path, options: dict[str, Any]) -> bool:
    info_path = folder / "prepare.json"
    if not info_path.is_file():
        return False
    params = json.loads(info_path.read_text()).get("params", {})
    want = json.loads(json.dumps(options))  # tuples -> lists, as stored
    return all(params.get(k) == v for k, v in want.items())


def ensure_data(
    profile: str, root: str | os.PathLike | None = None, roles: tuple[str, ...] = ROLES
) -> dict[str, Path]:
    """Make the profile's datasets ready and return ``role -> folder``.

    Synthetic profiles generate what is missing (or was made with other options) and reuse
    the rest; ``paper`` only checks that each real dataset was prepared and says how to
    prepare it when not.
    """
    _check_profile(profile)
    out = {}
    for role in roles:
        name, options = DATA[profile][role]
        folder = dataset_dir(profile, role, root)
        if profile == "paper":
            if (
                not (folder / "prepare.json").is_file()
                and not (folder / "volumes" / "prepare.json").is_file()
            ):
                raise FileNotFoundError(
                    f"{folder}: the {role} dataset is not prepared; run "
                    f"`python -m pcrl_lib prepare {name} --raw <downloaded {role}> --out {folder}`"
                )
        else:
            check = folder / "volumes" if role == "luna" else folder
            if not _matches(check, options):
                prepare(name, folder, **options)
        out[role] = folder
    return out
