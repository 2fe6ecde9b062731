import json

import pytest
import torch

from pcrl_lib.budget import COMMITTED_RECORDS, PLANS, record_path, run_name, study_dir
from pcrl_lib.cli import main
from pcrl_lib.io import read_json, write_json_atomic
from pcrl_lib.methods.registry import get_method
from pcrl_lib.models.checkpoints import load_encoder
from pcrl_lib.zoo import (
    MANIFEST,
    MAX_BYTES,
    ZOO_DIR,
    ZooEntry,
    ZooError,
    add_run_to_zoo,
    build_zoo,
    read_manifest,
    sha256,
    verify_zoo,
    zoo_checkpoint,
    zoo_entries,
)

STEPS = 10


def _encoder(seed):
    torch.manual_seed(seed)
    return get_method("MG", 3).build(3, 1, 3, 0.125).encoder


def _fake_study(results, entries):
    """Snapshots after STEPS steps, logs and probe records where the study keeps them."""
    base = study_dir("demo", results)
    for e in entries:
        run_dir = base / "pretrain" / run_name(e.source, e.method, e.seed)
        run_dir.mkdir(parents=True)
        state = {f"encoder.{k}": v for k, v in _encoder(e.seed).state_dict().items()}
        torch.save({"model": state, "step": STEPS}, run_dir / f"step_{STEPS:06d}.pt")
        lines = [{"kind": "step", "global_step": g, "loss": 1.0 / g} for g in range(1, STEPS + 1)]
        lines.append({"kind": "epoch", "steps": STEPS, "seconds": 5.0})
        (run_dir / "log.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
        probe = {
            "task": "luna",
            "label_ratio": 0.1,
            "split": "test",
            "draws": [0],
            "auroc": [61.0],
            "mean": 61.0,
        }
        write_json_atomic(
            record_path(base / "records", e.source, e.method, e.seed, STEPS), {"probe": probe}
        )


ENTRIES = [ZooEntry("luna", "MG", 0), ZooEntry("luna", "MG", 1)]


def test_the_default_set_ships_every_3d_seed_and_what_fits_in_2d():
    entries = zoo_entries()
    assert sum(e.source == "luna" for e in entries) == 9  # 3 methods x 3 seeds
    assert [(e.method, e.seed) for e in entries if e.source == "nih"] == [("PCRLv2", 0)]
    # measured fp16 sizes: 4.43 MB per 3D encoder, 22.37 MB per 2D one
    assert 9 * 4.43e6 + 22.37e6 <= MAX_BYTES < 9 * 4.43e6 + 2 * 22.37e6
    every = zoo_entries(methods_2d=None)
    assert {e.method for e in every if e.source == "nih"} == {"PCRLv2", "MG", "SimSiam"}


def test_build_exports_fp16_encoders_with_hashes_and_curves(tmp_path):
    _fake_study(tmp_path, ENTRIES)
    zoo = tmp_path / "zoo"
    manifest = build_zoo(STEPS, {}, ENTRIES, results=tmp_path, out=zoo)
    assert [e["file"] for e in manifest["entries"]] == ["luna_MG_p0.pt", "luna_MG_p1.pt"]
    entry = manifest["entries"][0]
    assert entry["sha256"] == sha256(zoo / "luna_MG_p0.pt") and entry["dtype"] == "fp16"
    assert entry["probe"]["mean"] == 61.0 and entry["pretrain_wall_s"] == 5.0
    assert entry["loss_curve"][-1] == [STEPS, 0.1] and entry["settings"]["optimizer"] == "adamw"
    assert read_manifest(zoo)["steps"] == STEPS and len(verify_zoo(zoo)) == 2
    state = torch.load(zoo / "luna_MG_p0.pt", weights_only=True)["model"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    # the fp16 file loads into a fresh encoder: the seed's weights up to fp16 rounding
    fresh = _encoder(5)
    load_encoder(fresh, zoo_checkpoint("luna", "MG", 0, zoo))
    want = _encoder(0).state_dict()
    got = fresh.state_dict()
    key = next(k for k, v in want.items() if v.dim() >= 2)
    assert torch.allclose(got[key], want[key], atol=1e-3)
    assert not list(zoo.glob(".*.new"))  # no staged leftovers


def test_a_changed_or_missing_file_is_named(tmp_path):
    _fake_study(tmp_path, ENTRIES)
    zoo = tmp_path / "zoo"
    build_zoo(STEPS, {}, ENTRIES, results=tmp_path, out=zoo)
    path = zoo / "luna_MG_p1.pt"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="luna_MG_p1.pt: SHA-256"):
        verify_zoo(zoo)
    with pytest.raises(ZooError, match="luna_MG_p1.pt"):
        zoo_checkpoint("luna", "MG", 1, zoo)
    path.unlink()
    with pytest.raises(ZooError, match="luna_MG_p1.pt: listed in the zoo's manifest but missing"):
        verify_zoo(zoo)
    with pytest.raises(ZooError, match="no encoder for SimSiam"):
        zoo_checkpoint("luna", "SimSiam", 0, zoo)


def test_a_zoo_over_its_size_is_refused_before_anything_is_written(tmp_path):
    _fake_study(tmp_path, ENTRIES)
    zoo = tmp_path / "zoo"
    with pytest.raises(ZooError, match="over the zoo's"):
        build_zoo(STEPS, {}, ENTRIES, results=tmp_path, out=zoo, max_bytes=1000)
    assert not (zoo / MANIFEST).exists() and not list(zoo.iterdir())


def test_the_study_adds_its_runs_one_by_one(tmp_path):
    _fake_study(tmp_path, ENTRIES + [ZooEntry("luna", "SimSiam", 0)])
    zoo, base = tmp_path / "zoo", study_dir("demo", tmp_path)
    build_zoo(STEPS, {}, ENTRIES[:1], results=tmp_path, out=zoo)
    first = sha256(zoo / "luna_MG_p0.pt")

    def add(method, seed, **kw):
        run_dir = base / "pretrain" / run_name("luna", method, seed)
        return add_run_to_zoo("luna", method, seed, run_dir, base / "records", out=zoo, **kw)

    manifest = add("MG", 1, steps=STEPS, entries=tuple(ENTRIES))
    assert [e["file"] for e in manifest["entries"]] == ["luna_MG_p0.pt", "luna_MG_p1.pt"]
    assert manifest["entries"][1]["probe"]["mean"] == 61.0
    assert sha256(zoo / "luna_MG_p0.pt") == first and len(verify_zoo(zoo)) == 2  # kept
    assert add("SimSiam", 0, steps=STEPS, entries=tuple(ENTRIES)) is None  # not shipped
    assert not (zoo / "luna_SimSiam_p0.pt").exists()
    # again: replaced, not listed twice
    assert len(add("MG", 1, steps=STEPS, entries=tuple(ENTRIES))["entries"]) == 2
    with pytest.raises(ZooError, match=f"after {STEPS} steps, not demo after 20"):
        add("MG", 1, steps=20, entries=tuple(ENTRIES))  # no step-20 snapshot is even read
    one_file = (zoo / "luna_MG_p0.pt").stat().st_size
    with pytest.raises(ZooError, match="over the zoo's"):
        add("MG", 1, steps=STEPS, entries=tuple(ENTRIES), max_bytes=int(1.5 * one_file))
    assert len(verify_zoo(zoo)) == 2 and not list(zoo.glob(".*"))  # nothing changed


def test_bad_manifests_and_cli_errors(tmp_path, capsys):
    with pytest.raises(ZooError, match="no zoo manifest"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text("{broken")
    with pytest.raises(ZooError, match="not a zoo manifest"):
        read_manifest(tmp_path)
    assert main(["zoo", "build"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_the_shipped_zoo_matches_its_hashes_and_the_studys_records():
    manifest = read_manifest(ZOO_DIR)
    assert manifest["profile"] == "demo" and manifest["steps"] == PLANS["demo"].budgets[-1]
    entries = verify_zoo(ZOO_DIR)
    assert entries and sum(e["bytes"] for e in entries) <= MAX_BYTES
    for e in entries:  # every shipped encoder is a measured snapshot of the committed study
        record = read_json(
            record_path(COMMITTED_RECORDS, e["source"], e["method"], e["seed"], manifest["steps"])
        )
        assert record["probe"]["mean"] == e["probe"]["mean"], e["file"]
