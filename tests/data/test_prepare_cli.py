"""``python -m pcrl_lib prepare``: options, listing, errors a newcomer can act on."""

from pcrl_lib.cli import main
from pcrl_lib.data.prepared import PreparedDataset


def test_prepare_synthetic_with_options(tmp_path, capsys):
    out = tmp_path / "nih"
    assert (
        main(
            [
                "prepare",
                "synthetic-nih",
                "--out",
                str(out),
                "--option",
                "n=12",
                "--option",
                "size=32",
            ]
        )
        == 0
    )
    assert f"prepared {out}" in capsys.readouterr().out
    data = PreparedDataset(out)
    assert len(data.manifest) == 12 and data.info["params"]["size"] == 32


def test_prepare_list_and_errors(tmp_path, capsys):
    assert main(["prepare", "--list"]) == 0
    listing = capsys.readouterr().out
    assert (
        "luna" in listing
        and "negatives_per_positive=10" in listing
        and "synthetic-brats" in listing
    )
    assert main(["prepare", "lits", "--out", str(tmp_path)]) == 2
    assert "--raw DIR" in capsys.readouterr().err
    assert main(["prepare", "synthetic-nih", "--out", str(tmp_path), "--option", "colour=1"]) == 2
    assert "unknown option(s) ['colour']" in capsys.readouterr().err
