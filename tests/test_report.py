"""The report: cells beside the paper's with deltas, and the paper's orderings checked."""

import pandas as pd
import pytest

from pcrl_lib.paths import PUBLISHED_DIR
from pcrl_lib.report import ordering_checks, seed_spread, seed_stats, side_by_side, write_html
from pcrl_lib.tables import regenerate


def _rec(task, protocol, ratio, method, mean, seed=0, variant=""):
    return {"task": task, "protocol": protocol, "label_ratio": ratio, "method": method,
            "variant": variant, "seed": seed, "metrics": {"mean": mean}}  # fmt: skip


def test_side_by_side_deltas_and_not_run_cells():
    recs = [_rec("luna", "semi", 0.1, "PCRLv2", 0.9), _rec("luna", "semi", 0.1, "TS", 0.7)]
    name = "table5_luna_semi_supervised_auroc"
    ours, _ = regenerate(name, recs)
    paper = pd.read_csv(PUBLISHED_DIR / f"{name}.csv", dtype=str, keep_default_na=False)
    both = side_by_side(name, ours, paper)
    assert len(both) == 7 * 4
    row = both[(both["row"] == "PCRLv2") & (both["column"] == "10%")].iloc[0]
    assert row["paper"] == "85.5" and row["ours"] == "90.0" and row["delta"] == 4.5
    assert both[(both["row"] == "MG")]["delta"].isna().all()


def test_ordering_checks_compare_cell_means():
    recs = [_rec("luna", "semi", 0.1, "TS", v, s) for s, v in enumerate((0.60, 0.62, 0.64))]
    recs += [_rec("luna", "semi", 0.1, "PCRLv1", 0.66)]
    recs += [_rec("luna", "semi", 0.1, "PCRLv2", v, s) for s, v in enumerate((0.58, 0.64, 0.70))]
    checks = ordering_checks(recs)
    t5 = checks[checks["setting"] == "table5 10%"].set_index("check")["holds"]
    assert not t5["PCRLv2 > PCRLv1"]  # 64.0 vs 66.0
    assert t5["PCRLv1 > TS"]  # 66.0 vs 62.0
    assert checks[checks["setting"] == "table5 20%"]["holds"].isna().all()
    assert set(checks["check"]) == {"PCRLv2 > PCRLv1", "PCRLv1 > TS"}


def test_html_page_is_written_whole(tmp_path):
    path = write_html(tmp_path / "r.html", "title <x>", [("a", "<p>b</p>")])
    text = path.read_text()
    assert text.startswith("<!doctype html>") and text.endswith("</html>")
    assert "title &lt;x&gt;" in text and "<p>b</p>" in text


def test_seed_stats_and_spread_by_hand():
    assert seed_stats([1.0, 3.0, float("nan")]) == (2.0, 1.0, 2)  # population std; NaN dropped
    assert seed_stats([float("nan")]) is None
    assert seed_spread((60.0, 1.0, 3), (55.0, 0.5, 3)) == 1.5


def test_table_html_shows_text_once_and_cells_with_their_error():
    from html.parser import HTMLParser

    from pcrl_lib.report import cells_html, parse_se

    recs = [
        {
            **_rec("luna", "semi", 0.1, "TS", v, s),
            "metrics": {"mean": v, "mean_ci": [v - 0.02, v + 0.02]},
        }
        for s, v in enumerate((0.60, 0.64))
    ]
    name = "table5_luna_semi_supervised_auroc"
    ours, spread = regenerate(name, recs)
    assert (spread["method"] == "").all()  # row keys carry no spread
    cells = []

    class Cells(HTMLParser):
        def handle_data(self, data):
            cells.append(data.strip())

    Cells().feed(cells_html(name, ours, spread))
    assert "TS" in cells and "TS TS" not in " ".join(cells)
    ts = spread[ours["method"] == "TS"]["10%"].iloc[0]
    # SE = sqrt(mean(se_test^2) + var_runs / n) = sqrt((4 / 3.92)^2 + 8 / 2) = 2.245 -> "±2.2"
    assert parse_se(ts) == pytest.approx(2.2) and "n=2" in ts
    assert parse_se("not run") is None
    # the six methods without a run are not printed as rows of "not run"; they are counted
    page = cells_html(name, ours, spread)
    assert page.count("<tr>") == 2 and "6 rows not run at this profile (not shown)." in page


def test_comparison_figure_has_a_panel_per_column_and_both_markers():
    from pcrl_lib.report import comparison_figure

    name = "table5_luna_semi_supervised_auroc"
    recs = [_rec("luna", "semi", 0.1, "PCRLv2", 0.9)]
    ours, spread = regenerate(name, recs)
    paper = pd.read_csv(PUBLISHED_DIR / f"{name}.csv", dtype=str, keep_default_na=False)
    fig = comparison_figure(name, ours, spread, paper)
    assert [ax.get_title() for ax in fig.axes] == ["10%", "20%", "30%", "40%"]
    first = fig.axes[0]
    paper_x = first.lines[0].get_xdata()
    assert paper_x[list(paper["method"]).index("PCRLv2")] == 85.5


def test_verdict_rows_are_coloured_and_orderings_counted():
    from pcrl_lib.report import VERDICT_COLOURS, orderings_html, verdicts_html

    verdicts = pd.DataFrame(
        [{"table": "t", "setting": "s", "check": "c", "estimate": 1.0, "verdict": "gain"},
         {"table": "t", "setting": "s", "check": "d", "estimate": None, "verdict": "not run"}]
    )  # fmt: skip
    page = verdicts_html(verdicts)
    assert VERDICT_COLOURS["gain"] in page and page.count("<tr") == 2  # header + the run check
    assert "Not run at this profile: 1 check - t (1)." in page
    checks = pd.DataFrame(
        [{"check": "A > B", "setting": "x", "holds": True, "detail": "2 vs 1"},
         {"check": "A > B", "setting": "y", "holds": None, "detail": "not run"}]
    )  # fmt: skip
    text = orderings_html(checks)
    assert "1 hold of 1 checked (1 not run)" in text and "not run</td>" not in text
