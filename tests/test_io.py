import json

import pytest

from pcrl_lib.io import atomic_path, read_json, write_json_atomic


def test_write_json_atomic_roundtrip(tmp_path):
    path = write_json_atomic(tmp_path / "a" / "r.json", {"b": 1, "a": [1.5]})
    assert json.loads(path.read_text()) == {"a": [1.5], "b": 1}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "r.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0o600


def test_gzip_json_is_deterministic_and_its_errors_name_the_file(tmp_path):
    obj = {"b": [1, 2, 3] * 100, "a": None}
    first = write_json_atomic(tmp_path / "r.json.gz", obj).read_bytes()
    assert read_json(tmp_path / "r.json.gz") == obj
    assert write_json_atomic(tmp_path / "r.json.gz", obj).read_bytes() == first  # no time stamp
    assert len(first) < len(json.dumps(obj)) / 5  # compressed
    assert read_json(write_json_atomic(tmp_path / "p.json", obj)) == obj  # plain JSON too
    (tmp_path / "bad.json.gz").write_bytes(first[:20])  # truncated
    with pytest.raises(ValueError, match=r"bad.json.gz: not readable JSON"):
        read_json(tmp_path / "bad.json.gz")
