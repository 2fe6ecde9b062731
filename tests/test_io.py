import json

import pytest

from pcrl_lib.io import atomic_path, write_json_atomic


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
