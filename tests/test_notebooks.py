"""Every sequenced notebook executes at the smoke profile (papermill, under pytest), every
figure and table file appears, and each regenerated table has the published one's columns
and row keys."""

import pandas as pd
import pytest

from pcrl_lib.paths import NOTEBOOKS_DIR, PUBLISHED_DIR
from pcrl_lib.reproduce import run_reproduction, sequenced_notebooks
from pcrl_lib.tables import NOT_RUN, cell_query

FIGURES = (
    "data_samples", "fig5_subcrop", "pretrain_losses", "fig6_restoration_mse",
    "fig8a_cam", "fig9_cam_failures", "fig8b_brats_et", "fig8c_lits_liver",
    "pretrain_budget", "pretrain_budget_drift",
)  # fmt: skip


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    mp = pytest.MonkeyPatch()
    mp.setenv("PCRL_RESULTS", str(root / "results"))
    runs = run_reproduction("smoke", root / "data", root / "results", NOTEBOOKS_DIR, "python3")
    yield root, runs
    mp.undo()


@pytest.mark.slow
def test_every_notebook_runs_at_smoke(smoke):
    root, runs = smoke
    assert [r.source for r in runs] == sequenced_notebooks()
    assert all(r.output.exists() for r in runs)
    out = root / "results" / "smoke"
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000, name
    assert "synthetic-luna-candidates" in (out / "tables" / "datasets.csv").read_text()
    assert (out / "tables" / "nsunet_pyramid.csv").is_file()
    assert (out / "tables" / "pretraining_runs.csv").is_file()
    assert (root / "data" / "smoke" / "synthetic-brats" / "prepare.json").is_file()
    html = (out / "report.html").read_text()
    assert "table8_luna_to_lits_transfer_dice" in html and "data:image/png;base64" in html


@pytest.mark.slow
def test_every_paper_table_is_regenerated_with_its_rows_and_columns(smoke):
    root, _ = smoke
    tables = root / "results" / "smoke" / "tables"
    for csv in sorted(PUBLISHED_DIR.glob("table*.csv")):
        paper = pd.read_csv(csv, dtype=str, keep_default_na=False)
        ours = pd.read_csv(tables / csv.name, dtype=str, keep_default_na=False)
        assert list(ours.columns) == list(paper.columns), csv.name
        keys = [c for c in paper.columns if cell_query(csv.stem, paper.iloc[0], c) is None]
        assert ours[keys].equals(paper[keys]), csv.name
        assert (tables / f"{csv.stem}.md").is_file()
        assert (tables / f"comparison_{csv.name}").is_file()
        # smoke runs the lowest ratio of every table: some cells hold numbers
        values = [ours.at[i, c] for i in ours.index for c in ours.columns if c not in keys]
        assert any(v not in (NOT_RUN, "fail", "undefined") for v in values), csv.name


@pytest.mark.slow
def test_verdicts_rest_on_every_pretraining_run_and_label_draw_of_the_plan(smoke):
    from pcrl_lib.grid import SEEDS
    from pcrl_lib.verdicts import COLUMNS, NOT_RUN, report_checks

    root, _ = smoke
    out = root / "results" / "smoke"
    verdicts = pd.read_csv(out / "tables" / "verdicts.csv")
    assert tuple(verdicts.columns) == COLUMNS and len(verdicts) == len(report_checks())
    plan = SEEDS["smoke"]
    vs_ts = verdicts[verdicts["check"] == "PCRLv2 - TS"]
    assert len(vs_ts) == 5 and (vs_ts["verdict"] != NOT_RUN).all()
    assert (vs_ts["pretrain_seeds"] == plan.pretrain_seeds).all()
    assert (vs_ts["label_draws"] == plan.label_draws).all()
    assert (vs_ts["ci_low"] <= vs_ts["estimate"]).all()
    assert (vs_ts["estimate"] <= vs_ts["ci_high"]).all()
    assert "Verdicts" in (out / "report.html").read_text()
    # every pre-training run is probed (at smoke a few labelled images often hold a single
    # class: the probe's AUROC is then NaN, never dropped), random initialisations beside
    runs = pd.read_csv(out / "tables" / "pretraining_runs.csv")
    assert {"probe_auroc", "probe_sd", "drift_median"} <= set(runs.columns)
    assert runs["status"].eq("random init").sum() == 3


@pytest.mark.slow
def test_the_budget_miniature_measures_every_snapshot_and_the_headline_uses_its_zoo(smoke):
    from pcrl_lib.budget import GAIN_COLUMNS, PLANS
    from pcrl_lib.headline import HEADLINE_METHODS, HEADLINE_TABLES
    from pcrl_lib.zoo import verify_zoo

    root, _ = smoke
    out = root / "results" / "smoke"
    plan = PLANS["smoke"]
    rows = pd.read_csv(out / "tables" / "pretrain_budget.csv")
    runs = len(plan.methods) * len(plan.sources) * len(plan.seeds)
    assert len(rows) == runs * len(plan.budgets)
    assert sorted(rows["steps"].unique()) == list(plan.budgets)
    gains = pd.read_csv(out / "tables" / "pretrain_budget_gains.csv")
    assert tuple(gains.columns) == GAIN_COLUMNS
    assert set(gains["measure"]) == {"probe", "finetune", "finetune_step0"}
    # at step 0 the fine-tuning starts from TS's very weights: the pairing's check
    start = gains[(gains["steps"] == 0) & (gains["measure"] == "finetune")]
    assert (start["estimate"] == 0).all()
    # one machine measured TS and every run: TS and the runs' step 0 are the same reference
    key = ["method", "source", "steps"]
    ts, step0 = (
        gains[gains["measure"] == m].set_index(key) for m in ("finetune", "finetune_step0")
    )
    assert step0["estimate"].to_dict() == ts["estimate"].to_dict()
    assert len(verify_zoo(out / "zoo")) == len(plan.methods) * len(plan.sources)
    headline = pd.read_csv(out / "tables" / "headline.csv")
    assert len(headline) == len(HEADLINE_TABLES) * len(HEADLINE_METHODS)
    assert (headline["verdict"] != "not run").all()


@pytest.mark.slow
def test_the_smoke_report_resolves_every_image_repeats_no_cell_and_shows_every_table(smoke):
    import base64
    from html.parser import HTMLParser

    root, _ = smoke
    page = (root / "results" / "smoke" / "report.html").read_text()

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.images, self.cells, self.sections, self._in = [], [], [], None

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.images.append(dict(attrs)["src"])
                if self.sections:
                    self.sections[-1][1] += 1
            self._in = tag if tag in ("td", "h2") else self._in

        def handle_endtag(self, tag):
            self._in = None if tag == self._in else self._in

        def handle_data(self, data):
            if self._in == "td" and data.strip():
                self.cells.append(data.strip())
            if self._in == "h2":
                self.sections.append([data.strip(), 0])

    parsed = Page()
    parsed.feed(page)
    assert parsed.images
    for src in parsed.images:  # embedded, so the page stands alone
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    repeated = [c for c in parsed.cells if len(c.split()) % 2 == 0 and len(c.split()) > 1
                and c.split()[: len(c.split()) // 2] == c.split()[len(c.split()) // 2 :]]  # fmt: skip
    assert not repeated, repeated[:5]
    images_by_section = dict(parsed.sections)
    for csv in sorted(PUBLISHED_DIR.glob("table*.csv")):
        assert images_by_section.get(csv.stem, 0) >= 1, csv.stem  # each table with its figure
    assert [s for s, _ in parsed.sections][:2] == [
        "At a glance",
        "Verdicts (paired differences, 95 % intervals)",
    ]


@pytest.mark.slow
def test_the_table_beyond_the_paper_has_every_cell_at_smoke(smoke):
    root, _ = smoke
    table = pd.read_csv(root / "results" / "smoke" / "tables" / "beyond_local_ssl.csv")
    assert len(table) == 18  # 3 cells x 6 methods
    assert table["mean"].notna().all() and (table["verdict"] != "not run").all()
    gains = table[table["method"] != "TS"]
    assert gains[["estimate", "ci_low", "ci_high"]].notna().all().all()
    assert (gains["ci_low"] <= gains["estimate"]).all() and (
        gains["estimate"] <= gains["ci_high"]
    ).all()
    assert "beyond_local_ssl" in (root / "results" / "smoke" / "report.html").read_text()
