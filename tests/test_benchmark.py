"""Smoke tests of the benchmark harness on tiny configurations (no paper numbers)."""

import pandas as pd
import pytest

from sklearn_winfair.benchmark import Settings, main, run_benchmark, task_metrics
from sklearn_winfair.benchmark._data import ratio_sizes
from sklearn_winfair.benchmark._methods import main_methods, select_methods

TINY = dict(seeds=1, epochs=1, pretrain_epochs=1, expgrad_max_iter=3,
            progress=False, verbose=False)
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


def test_adult_tiny(tmp_path):
    result = run_benchmark("adult", out=tmp_path, n_rows=800, plots=True,
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
    result = run_benchmark("images", out=tmp_path, n_rows=300, plots=False,
                           **TINY)
    runs = _check_outputs(result, tmp_path, ["runs.csv", "images.md",
                                             "summary.md"])
    table = (tmp_path / "images.md").read_text(encoding="utf-8")
    for name in ("Pretrained (no FT)", "TL", "f+SVD", "FWSVD", "OURS"):
        assert f"| {name} |" in table, name
    assert "CONSTRUCTED" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert set(runs.loc[runs["experiment"] == "rank_sweep_b", "rank"].dropna()) \
        == {1, 2, 4, 8}


def test_cli_runs_and_prints_tables(tmp_path, capsys):
    status = main(["german", "--seeds", "1", "--epochs", "1", "--n-rows", "300",
                   "--methods", "TL,OURS", "--out", str(tmp_path), "--no-plots",
                   "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "German credit" in printed and "| OURS |" in printed
    assert (tmp_path / "german.md").is_file()


def test_methods_filter(tmp_path):
    result = run_benchmark("german", out=tmp_path, n_rows=400, plots=False,
                           methods="TL,OURS", ranks_b=(2,), **TINY)
    main_runs = result.runs[result.runs["experiment"] == "main"]
    assert list(main_runs["method"]) == ["TL", "OURS"]


@pytest.mark.parametrize("argv", [["--help"], ["adult", "--help"],
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

    from sklearn_winfair.benchmark._data import Split, Task

    y = np.array([0, 1, 2, 0, 1, 2])
    s = np.array(["a", "a", "a", "b", "b", "b"])
    split = Split(np.zeros((6, 1), np.float32), y, s)
    task = Task("t", split, split, split, split, classes=["x", "y", "z"],
                pre_classes=["x", "y", "z"])
    pred = np.array([0, 0, 0, 1, 1, 1])
    m = task_metrics(task, pred)
    assert m["dp_gap"] == pytest.approx(1.0)
