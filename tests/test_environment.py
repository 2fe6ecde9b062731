"""The conda environment and the pip lock name the same versions."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = re.match(r"^\s*(?:-\s*)?([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def test_environment_yml_matches_lock():
    lock = _pins((ROOT / "requirements.lock").read_text().splitlines())
    env = _pins((ROOT / "environment.yml").read_text().splitlines())
    assert env, "environment.yml pins nothing"
    mismatched = {n: (v, lock.get(n)) for n, v in env.items() if lock.get(n) != v}
    assert not mismatched, f"environment.yml vs requirements.lock (env, lock): {mismatched}"


def test_lock_pins_the_tested_stack():
    lock = _pins((ROOT / "requirements.lock").read_text().splitlines())
    assert lock["torch"] == "2.14.1"
    assert lock["torchvision"] == "0.29.1"
    for name in [
        "torchio",
        "papermill",
        "nbval",
        "jupyterlab",
        "ipykernel",
        "matplotlib",
        "pandas",
        "scikit-learn",
        "grad-cam",
        "simpleitk",
        "nibabel",
        "tqdm",
        "pytest",
        "ruff",
    ]:
        assert name in lock, f"{name} is not pinned in requirements.lock"


def test_every_direct_dependency_is_pinned_in_environment_yml():
    text = (ROOT / "pyproject.toml").read_text()
    deps = re.findall(r'^\s*"([A-Za-z0-9_.\-]+)(?:\[.*\])?[<>=!~]', text, flags=re.M)
    env = _pins((ROOT / "environment.yml").read_text().splitlines())
    missing = sorted({_norm(d) for d in deps} - set(env) - {"wheel", "setuptools"})
    assert not missing, f"pyproject dependencies without a pin in environment.yml: {missing}"
