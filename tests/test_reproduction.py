"""Smoke tests of the reproduction harness on tiny configurations."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_winfair.reproduction import Settings, main, run_benchmark, task_metrics
from sklearn_winfair.reproduction._data import ratio_sizes, stratified_parts
from sklearn_winfair.reproduction._methods import main_methods, select_methods
from sklearn_winfair.reproduction._scenarios import SCENARIOS, Copy, progress_units
from sklearn_winfair.reproduction._tuning import Grid

TINY = dict(seeds=1, epochs=1, pretrain_epochs=1, expgrad_max_iter=3,
            progress=False, verbose=False)
TINY_GRID = Grid((1e-2,), (1, 2))
MAIN_NAMES = [m.name for m in main_methods()]


def _check_outputs(result, out, expected_files):
    for name in expected_files:
        path = out / name
        assert path.is_file(), name
        assert path.stat().st_size > 0, name
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == len(result.runs)
    assert {"experiment", "config", "method", "seed", "err", "dp_gap",
            "eo_gap", "n_params", "fit_seconds"} <= set(runs.columns)
    assert runs[["err", "dp_gap", "eo_gap"]].notna().all().all()
    return runs


def test_adult_paper_tiny(tmp_path):
    result = run_benchmark("adult", out=tmp_path, n_rows=1500, plots=True,
                           grid=TINY_GRID, ours_b=True, **TINY)
    runs = _check_outputs(result, tmp_path, [
        "runs.csv", "table2.md", "table3.md", "table4.md", "fig4.md",
        "fig5.md", "hyperparameters.md", "summary.md", "pareto.png",
        "alpha_ablation.png", "fisher_importance.png", "pca_head_inputs.png"])
    assert set(runs["experiment"]) == {"main", "table2", "table4", "alpha",
                                       "ours_b"}
    main_runs = runs[runs["experiment"] == "main"].set_index("method")
    # the paper's parameter counts: OURS 46, Retrain (whole MLP) 742, TL 42
    assert main_runs.loc["OURS", "n_params"] == 46
    assert main_runs.loc["Retrain+EO λ=0.5", "n_params"] == 742
    assert main_runs.loc["TL", "n_params"] == 42
    # every tuned method chose a point of the grid
    tuned = runs.dropna(subset=["lr"])
    assert set(tuned["lr"]) <= set(TINY_GRID.lrs)
    assert set(tuned["epochs"].astype(int)) <= set(TINY_GRID.epochs)
    table3 = (tmp_path / "table3.md").read_text(encoding="utf-8")
    assert "15.829 ± 0.340 (-0.336)" in table3  # the paper's OURS Err
    assert "| 46 | 46 |" in table3 and "| 742 | 742 |" in table3
    assert {"MLP-3", "MLP-4", "MLP-5"} <= set(
        runs.loc[runs["experiment"] == "table4", "config"])
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "published values lie inside our mean ± 2 std" in summary
    # one row per fit step, plus the alpha=0.5 row copied from OURS
    assert len(runs) == progress_units(SCENARIOS["adult"], result.settings) + 1
    assert "Zhang and Feng Zhou" in summary


def test_adult_age_shift_tiny(tmp_path):
    result = run_benchmark("adult-age-shift", out=tmp_path, n_rows=800, plots=True,
                           ranks_b=(1, 2), ranks_c=(1, 2), **TINY)
    runs = _check_outputs(result, tmp_path, [
        "runs.csv", "table2.md", "table3.md", "fig4.md", "rank_sweep.md",
        "summary.md", "pareto.png", "alpha_ablation.png",
        "fisher_importance.png", "pca_head_inputs.png"])
    table3 = (tmp_path / "table3.md").read_text(encoding="utf-8")
    main_runs = set(runs.loc[runs["experiment"] == "main", "method"])
    for name in MAIN_NAMES:
        assert f"| {name} |" in table3, name
        assert name in main_runs, name
    assert set(runs["experiment"]) == {"main", "rank_sweep_b", "alpha",
                                       "table2", "rank_sweep_c"}
    sweep = (tmp_path / "rank_sweep.md").read_text(encoding="utf-8")
    assert "config b" in sweep and "config c" in sweep
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "TPR gap + FPR gap" in summary and "## Findings" in summary
    # whole-model retraining trains every parameter, head-only far fewer
    params = runs[runs["experiment"] == "main"].set_index("method")["n_params"]
    assert params["Retrain+DP whole λ=0.5"] > params["Retrain+DP head λ=0.5"]
    # one row per fit step, plus 4 copies (alpha=0.5 and 3 plain table2 rows)
    assert len(runs) == progress_units(SCENARIOS["adult-age-shift"],
                                       result.settings) + 4


# Tiny German subsamples hold a handful of women with bad credit: the
# estimator rightly warns that their Fisher importance rests on few rows.
_SMALL_GERMAN = pytest.mark.filterwarnings(
    "ignore::sklearn_winfair.exceptions.SmallGroupWarning")


@_SMALL_GERMAN
def test_german_tiny(tmp_path):
    run_benchmark("german", out=tmp_path, n_rows=400, plots=False, ranks_b=(2,),
                  **TINY)
    runs = pd.read_csv(tmp_path / "runs.csv")
    table = (tmp_path / "german.md").read_text(encoding="utf-8")
    for name in MAIN_NAMES:
        assert f"| {name} |" in table, name
        assert name in set(runs["method"]), name
    assert not list(tmp_path.glob("*.png"))


def test_images_tiny(tmp_path):
    result = run_benchmark("images", out=tmp_path, plots=False,
                           n_images=(200, 200, 80, 120), grid=TINY_GRID,
                           ranks_b=(1,), **TINY)
    runs = _check_outputs(result, tmp_path, ["runs.csv", "images.md",
                                             "summary.md"])
    table = (tmp_path / "images.md").read_text(encoding="utf-8")
    for name in ("Pretrained (no FT)", "TL", "f+SVD", "FWSVD", "OURS",
                 "ThrOpt EO (OURS)", "ExpGrad DP"):
        assert f"| {name} |" in table, name
    assert "CONSTRUCTED" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert set(runs.loc[runs["experiment"] == "rank_sweep_b", "rank"]) == {1}
    # head 32->32->2 at rank 4: (32*4 + 4*32 + 32) + (32*2 + 2*2 + 2)
    ours = runs[(runs["experiment"] == "main") & (runs["method"] == "OURS")]
    assert int(ours["n_params"].iloc[0]) == 288 + 70


@_SMALL_GERMAN
def test_cli_runs_and_prints_tables(tmp_path, capsys):
    status = main(["german", "--seeds", "1", "--epochs", "1", "--n-rows", "300",
                   "--methods", "TL,OURS", "--out", str(tmp_path), "--no-plots",
                   "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "German credit" in printed and "| OURS |" in printed
    assert (tmp_path / "german.md").is_file()


@_SMALL_GERMAN
def test_methods_filter(tmp_path):
    result = run_benchmark("german", out=tmp_path, n_rows=400, plots=False,
                           methods="TL,OURS", ranks_b=(2,), **TINY)
    main_runs = result.runs[result.runs["experiment"] == "main"]
    assert list(main_runs["method"]) == ["TL", "OURS"]


@pytest.mark.parametrize("argv", [["--help"], ["adult", "--help"],
                                  ["adult-age-shift", "--help"],
                                  ["images", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "winfair-bench" in capsys.readouterr().out


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset must be one of"):
        run_benchmark("celeba", **TINY)


def test_quick_defaults():
    quick = Settings.defaults("adult", quick=True)
    full = Settings.defaults("adult")
    assert (quick.seeds, full.seeds) == (3, 10)
    assert quick.batch_size >= 256
    assert Settings.defaults("adult", quick=True, seeds=5).seeds == 5


def test_progress_totals_equal_the_former_hand_counts():
    """The totals computed from the step lists equal the counts once typed in."""
    n_main = len(main_methods())
    adult = Settings.defaults("adult", quick=True)
    assert progress_units(SCENARIOS["adult"], adult) == 40
    adult.ours_b = True
    assert progress_units(SCENARIOS["adult"], adult) == 46
    shift = Settings.defaults("adult-age-shift")
    assert progress_units(SCENARIOS["adult-age-shift"], shift) == (
        n_main + 1 + 3 * 4 + 5 + 6 * 3 + 1 + 3 * 3)
    german = Settings.defaults("german", methods="TL,OURS")
    assert progress_units(SCENARIOS["german"], german) == 2 + 1 + 3 * 4
    images = Settings.defaults("images")
    assert progress_units(SCENARIOS["images"], images) == 11 + 3 * 2


def test_copy_steps_are_not_progress_units():
    steps = SCENARIOS["adult-age-shift"].steps(Settings.defaults("adult-age-shift"))
    copies = [s for s in steps if isinstance(s, Copy)]
    assert [s.method for s in copies] == ["OURS alpha=0.5", "Pretrained (no FT)",
                                          "TL", "OURS"]
    assert sum(s.units for s in copies) == 0


def test_snapshot_callback_is_copied_and_read_back_from_the_net():
    """The estimator deep-copies callbacks; the snapshots come from its copy."""
    import copy

    from sklearn_winfair import FairLowRankFineTuner
    from sklearn_winfair.reproduction._pretrain import PAPER_HEAD, build_paper_mlp
    from sklearn_winfair.reproduction._tuning import (
        _SNAPSHOTS,
        _Snapshots,
        _snapshots_of,
    )

    given = _Snapshots((1, 2))
    assert copy.deepcopy(given) is not given
    rng = np.random.RandomState(0)
    X = rng.randn(80, 13).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    s = np.where(rng.rand(80) < 0.5, "F", "M")
    est = FairLowRankFineTuner(build_paper_mlp(13), head=PAPER_HEAD, rank=2,
                               solver="adam", max_epochs=2, lr=1e-2,
                               batch_size=40, random_state=0,
                               callbacks=[(_SNAPSHOTS, given)])
    est.fit(X, y, sensitive_features=s)
    assert not hasattr(given, "states_")  # the instance passed in is untouched
    states = _snapshots_of(est)
    assert sorted(states) == [1, 2]
    final = est.net_.module_.state_dict()
    for key, value in states[2].items():
        np.testing.assert_array_equal(value.numpy(), final[key].numpy())


def test_ratio_sizes_keeps_table1_ratio():
    sizes = ratio_sizes(18089)
    assert sum(sizes) == 18089
    assert sizes[0] / sizes[2] == pytest.approx(12287 / 10315, rel=1e-3)


def test_select_methods_patterns():
    names = [m.name for m in select_methods(main_methods(), "thropt*")]
    assert names == ["ThrOpt DP (TL)", "ThrOpt EO (TL)", "ThrOpt DP (OURS)",
                     "ThrOpt EO (OURS)"]


def test_task_metrics_multiclass_is_max_over_classes():
    import numpy as np

    from sklearn_winfair.reproduction._data import Split, Task

    y = np.array([0, 1, 2, 0, 1, 2])
    s = np.array(["a", "a", "a", "b", "b", "b"])
    split = Split(np.zeros((6, 1), np.float32), y, s)
    task = Task("t", split, split, split, split, classes=["x", "y", "z"],
                pre_classes=["x", "y", "z"])
    pred = np.array([0, 0, 0, 1, 1, 1])
    m = task_metrics(task, pred)
    assert m["dp_gap"] == pytest.approx(1.0)


# ------------------------------------------------------------------ paper
PAPER_MD = Path(__file__).resolve().parents[2] / "shared" / "PAPER.md"


def _paper_md_rows(title):
    """Rows of the markdown table following ``title`` in PAPER.md."""
    text = PAPER_MD.read_text(encoding="utf-8")
    block = text.split(title, 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in block.splitlines()
            if line.startswith("|") and not line.startswith("|---")][1:]


def _nums(cell):
    return [float(x) for x in re.findall(r"[-+]?\d+\.\d+", cell)]


@pytest.mark.skipif(not PAPER_MD.is_file(), reason="PAPER.md not beside the repo")
def test_paper_numbers_match_paper_md():
    from sklearn_winfair.reproduction._paper import (
        PAPER_TABLE2,
        PAPER_TABLE3,
        PAPER_TABLE4,
    )

    for row in _paper_md_rows("## Table 3"):
        method, lam = row[0], None if row[1] == "-" else float(row[1])
        ref = PAPER_TABLE3[(method, lam)]
        for cell, key in zip(row[2:5], ("err", "eo_gap", "dp_gap"), strict=True):
            assert _nums(cell)[:2] == list(ref[key]), (method, lam, key)
    n2 = 0
    for row in _paper_md_rows("## Table 2"):
        con = "EO" if row[0].startswith("Equalized") else "DP"
        ref = PAPER_TABLE2[(con, float(row[1]))]
        assert _nums(row[2])[0] == ref["err_pre"][0]
        assert _nums(row[3])[:2] == list(ref["err_ft"])
        assert _nums(row[4])[0] == ref["bias_pre"][0]
        assert _nums(row[5])[:2] == list(ref["bias_ft"])
        n2 += 1
    assert n2 == 6
    for row in _paper_md_rows("## Table 4"):
        ref = PAPER_TABLE4[(row[0], row[1])]
        for cell, key in zip(row[2:5], ("err", "eo_gap", "dp_gap"), strict=True):
            assert _nums(cell) == list(ref[key])


def test_paper_numbers_spot_values():
    from sklearn_winfair.reproduction._paper import (
        CITATION,
        PAPER_PARAMS,
        PAPER_TABLE3,
    )

    assert PAPER_TABLE3[("OURS", None)]["err"] == (15.829, 0.340)
    assert PAPER_PARAMS == {"OURS": 46, "Retrain": 742}
    assert "Yixuan Zhang and Feng Zhou" in CITATION and "2403.00625" in CITATION


def test_paper_mlp_and_ours_parameter_counts():
    from sklearn_winfair import FairLowRankFineTuner
    from sklearn_winfair.reproduction._pretrain import (
        PAPER_HEAD,
        build_paper_mlp,
        n_params,
    )

    model = build_paper_mlp(13)
    assert n_params(model) == 742
    rng = np.random.RandomState(0)
    X = rng.randn(120, 13).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    s = np.where(rng.rand(120) < 0.5, "F", "M")
    est = FairLowRankFineTuner(model, head=PAPER_HEAD, rank=2, max_epochs=1,
                               lr=1e-2, batch_size=64, random_state=0)
    est.fit(X, y, sensitive_features=s)
    assert est.n_trainable_params_ == 46
    for depth in (3, 4, 5):
        deep = build_paper_mlp(13, hidden_layers=depth)
        assert n_params(deep) == 742 + (depth - 2) * 420


def test_stratified_parts_ratios():
    y = np.r_[np.zeros(700, int), np.ones(300, int)]
    s = np.tile(["F", "M"], 500)
    strata = np.char.add(y.astype(str), s)
    pre, (tr, va, te) = stratified_parts(strata, seed=3)
    assert len(pre) == 600 and len(tr) + len(va) + len(te) == 400
    assert [len(tr), len(va), len(te)] == ratio_sizes(400)
    everything = np.sort(np.r_[pre, tr, va, te])
    assert np.array_equal(everything, np.arange(1000))  # a partition
    for part in (pre, tr, te):
        assert y[part].mean() == pytest.approx(0.3, abs=0.02)
    # another seed, another split
    pre2, _ = stratified_parts(strata, seed=4)
    assert not np.array_equal(pre, pre2)


def test_adult_paper_task_columns():
    from sklearn_winfair.reproduction._data import make_adult_paper_task

    task = make_adult_paper_task(0, n_rows=2000)
    assert task.pre.X.shape[1] == 13  # 14 raw columns minus sex
    assert len(task.pre) == 1200
    assert abs(task.pre.X.mean(axis=0)).max() < 1e-4  # standardized on pre


def test_pareto_front_toy():
    from sklearn_winfair.reproduction._stats import inside_2std, pareto_front

    x = [0.10, 0.20, 0.05, 0.30, 0.20, 0.15]
    y = [20.0, 15.0, 25.0, 14.0, 16.0, 15.0]
    # (0.20, 16) is dominated by (0.20, 15); (0.20, 15) by (0.15, 15)
    assert pareto_front(x, y) == [2, 0, 5, 3]
    assert inside_2std(16.0, 15.5, 0.25) and not inside_2std(16.1, 15.5, 0.25)


def test_lbfgs_tuner_is_fitted_once_without_a_grid():
    """With the default solver (L-BFGS) a tuned method is one fit: no lr or epochs."""
    from sklearn_winfair.reproduction._data import Split, Task
    from sklearn_winfair.reproduction._methods import Context
    from sklearn_winfair.reproduction._pretrain import PAPER_HEAD, build_paper_mlp
    from sklearn_winfair.reproduction._tuning import tune_tuner

    rng = np.random.RandomState(0)

    def part(n):
        X = rng.randn(n, 13).astype(np.float32)
        return Split(X, (X[:, 0] > 0).astype(int), np.where(rng.rand(n) < 0.5, "F", "M"))

    task = Task("t", part(10), part(200), part(100), part(100),
                classes=["0", "1"], pre_classes=["0", "1"])
    ctx = Context(task, build_paper_mlp(13), seed=0, batch_size=32)
    choice = tune_tuner(ctx, Grid((0.05,), (1, 2)), head=PAPER_HEAD, rank=2)
    assert np.isnan(choice.lr) and np.isnan(choice.epochs)
    assert choice.estimator.solver_ == "lbfgs"


def test_tuning_checkpoint_equals_separate_fit():
    """The snapshot of epoch 1 in a 2-epoch run predicts as a 1-epoch fit."""
    from sklearn_winfair import FairLowRankFineTuner
    from sklearn_winfair.reproduction._data import Split, Task
    from sklearn_winfair.reproduction._methods import Context
    from sklearn_winfair.reproduction._pretrain import PAPER_HEAD, build_paper_mlp
    from sklearn_winfair.reproduction._tuning import tune_tuner

    rng = np.random.RandomState(0)

    def part(n):
        X = rng.randn(n, 13).astype(np.float32)
        return Split(X, (X[:, 0] + 0.5 * rng.randn(n) > 0).astype(int),
                     np.where(rng.rand(n) < 0.5, "F", "M"))

    task = Task("t", part(10), part(200), part(100), part(100),
                classes=["0", "1"], pre_classes=["0", "1"])
    ctx = Context(task, build_paper_mlp(13), seed=0, batch_size=32)
    grid = Grid((0.05,), (1, 2))
    choice = tune_tuner(ctx, grid, head=PAPER_HEAD, rank=2, solver="adam")
    single = {}
    for e in grid.epochs:
        est = FairLowRankFineTuner(ctx.backbone, head=PAPER_HEAD, rank=2,
                                   solver="adam", max_epochs=e, lr=0.05,
                                   batch_size=32, random_state=0)
        est.fit(task.train.X, task.train.y, sensitive_features=task.train.s)
        single[e] = est
    from sklearn_winfair import weighted_f1_error

    errs = {e: weighted_f1_error(task.val.y, est.predict(task.val.X))
            for e, est in single.items()}
    best = min(grid.epochs, key=lambda e: (errs[e], e))
    assert choice.epochs == best
    assert choice.val_err == pytest.approx(errs[best])
    np.testing.assert_array_equal(choice.y_pred,
                                  single[best].predict(task.test.X))


def test_shapes_task_and_resnet():
    import torch

    from sklearn_winfair.reproduction._resnet import build_resnet
    from sklearn_winfair.reproduction._shapes import make_shapes, make_shapes_task

    task = make_shapes_task(0, sizes=(400, 400, 50, 50))
    assert task.train.X.shape == (400, 3, 32, 32)
    assert task.train.X.dtype == np.uint8
    # the group shortcut: warm with y=1 in pre-training, reversed afterwards
    pre_warm = task.pre.s == "warm"
    new_warm = task.train.s == "warm"
    assert task.pre.y[pre_warm].mean() > 0.65
    assert task.train.y[new_warm].mean() < 0.45
    # warm backgrounds are redder than cool ones
    X = make_shapes(np.zeros(200, int), np.arange(200) < 100, seed=1)
    red_minus_blue = X[:, 0].mean(axis=(1, 2)) - X[:, 2].mean(axis=(1, 2))
    assert red_minus_blue[:100].min() > red_minus_blue[100:].max()
    model = build_resnet()
    out = model(torch.from_numpy(task.test.X[:4].astype(np.float32) / 255))
    assert tuple(out.shape) == (4, 2)
    assert model.get_submodule("0")(torch.zeros(2, 3, 32, 32)).shape == (2, 32)


def test_results_index_tool_reads_each_summary(tmp_path):
    """tools/results_index.py (repository tooling, not in the wheel) indexes folders."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / "results_index.py"
    spec = importlib.util.spec_from_file_location("results_index", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    (tmp_path / "german").mkdir()
    (tmp_path / "german" / "summary.md").write_text(
        "# winfair-bench german: summary\n\n- mode: full; seeds: 10; wall time: "
        "1234.5 s; code: commit 0123456789abcdef\n", encoding="utf-8")
    (tmp_path / "empty").mkdir()  # no summary.md: not indexed
    assert tool.main([str(tmp_path)]) == 0
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "| [`german/`](german/summary.md) | `winfair-bench german` | full | " \
           "1,234 s | 0123456 |" in text
    assert "empty/" not in text
    # the installed package no longer carries the tool
    package = path.parents[1] / "sklearn_winfair"
    assert not [p for p in package.rglob("*.py")
                if "def results_index" in p.read_text(encoding="utf-8")]


def test_threshold_without_its_base_says_what_to_run_first():
    from sklearn_winfair.reproduction._methods import Context, threshold

    ctx = Context(task=None, backbone=None, seed=0)
    with pytest.raises(ValueError, match="which has not run on this context"):
        threshold("OURS", "DP").fit(ctx)
