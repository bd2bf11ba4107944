"""Smoke tests of ``winfair-bench adapters`` (the adapter study) on tiny sizes."""

import sys

import numpy as np
import pandas as pd
import pytest

from sklearn_winfair.reproduction import main
from sklearn_winfair.reproduction._adapter_study import (
    run_adapter_study,
    study_settings,
)
from sklearn_winfair.reproduction._tokens import (
    P_NEW,
    make_token_sequences,
    make_token_task,
)

COLUMNS = {"setting", "seed", "method", "penalty", "rank", "err", "dp_gap",
           "eo_gap", "n_params", "fit_seconds", "truncation_error"}
TINY = dict(seeds=1, epochs=1, pretrain_epochs=1, sizes=(300, 200, 200),
            n_rows=2000, ranks=(4,), progress=False, verbose=False)


def test_adapter_study_tiny_every_setting(tmp_path):
    """All four settings run end to end and write every file with its columns.

    One seed, one epoch, 300 / 200 / 200 images and sequences, 2000 Adult
    rows, three methods with and without the EO penalty: runs.csv has one
    row per setting x (pre-trained + 2 penalties x 3 methods), the metrics
    are finite, the adapters' rows carry the rank and a truncation error,
    and each setting's table names the paired OURS - PiSSA contrast.
    """
    runs = run_adapter_study("all", out=tmp_path, methods="TL,PiSSA,OURS",
                             penalty="equalized_odds", **TINY)
    names = ["images", "text", "age-shift", "paper-mlp"]
    files = ["runs.csv", "summary.md", "adapters_err_eo.png"]
    files += [f"{n}.md" for n in names] + [f"{n}_all_ranks.md" for n in names]
    for name in files:
        assert (tmp_path / name).stat().st_size > 0, name
    written = pd.read_csv(tmp_path / "runs.csv")
    assert COLUMNS <= set(written.columns)
    assert len(written) == len(runs) == 4 * (1 + 2 * 3)
    assert list(written["setting"].unique()) == names
    assert written[["err", "dp_gap", "eo_gap"]].notna().all().all()
    assert set(written["method"]) == {"pre-trained", "TL", "PiSSA", "OURS"}
    assert set(written["penalty"]) == {"none", "equalized_odds"}
    adapters = written[written["method"].isin(["PiSSA", "OURS"])]
    assert (adapters["rank"] == 4).all()
    assert adapters["truncation_error"].between(0, 1).all()
    assert (written.loc[written["method"] == "TL", "rank"] == 0).all()
    for n in names:
        table = (tmp_path / f"{n}.md").read_text(encoding="utf-8")
        assert "| OURS - PiSSA |" in table and "| OURS+EO - TL+EO |" in table
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "code: commit" in summary and "![adapters_err_eo]" in summary


def test_adapters_cli_writes_the_folder(tmp_path, capsys):
    """``winfair-bench adapters`` parses its options and runs one setting.

    The paper-MLP setting on 1500 Adult rows, one seed, one epoch, TL and
    OURS without a penalty: the CLI returns 0, writes runs.csv with the four
    OURS ranks and prints the setting's table.
    """
    code = main(["adapters", "--setting", "paper-mlp", "--seeds", "1",
                 "--epochs", "1", "--n-rows", "1500", "--methods", "TL,OURS",
                 "--penalty", "none", "--out", str(tmp_path), "--no-plots",
                 "--no-progress"])
    assert code == 0
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert sorted(runs.loc[runs["method"] == "OURS", "rank"]) == [1, 2, 3, 4]
    assert set(runs["penalty"]) == {"none"}
    assert not (tmp_path / "adapters_err_eo.png").exists()
    assert "| OURS - TL |" in capsys.readouterr().out


def test_text_setting_without_transformers_names_the_extra(tmp_path,
                                                           monkeypatch):
    """Without transformers the text setting stops before any fit and says
    what to install (the extra and the package)."""
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"sklearn-winfair\[tests\].*"
                       r"pip install transformers"):
        run_adapter_study("text", out=tmp_path, **TINY)
    assert not (tmp_path / "runs.csv").exists()


def test_token_task_reverses_the_group_shortcut():
    """The new task's group token follows P(g=3 | y) = 0.3 / 0.7 and its
    content leans to P_NEW with probability 0.6 / 0.4; the draws repeat."""
    (X, y, s), _ = make_token_task(0, 20_000, 10)
    g3 = s == "g3"
    assert abs(g3[y == 1].mean() - 0.3) < 0.02
    assert abs(g3[y == 0].mean() - 0.7) < 0.02
    assert set(np.unique(X["input_ids"][:, 1])) == {2, 3}
    assert ((X["input_ids"][:, 1] == 3) == g3).all()
    positive = np.isin(X["input_ids"][:, 2:], P_NEW).mean(axis=1)
    assert abs(positive[y == 1].mean() - 0.6) < 0.01
    assert abs(positive[y == 0].mean() - 0.4) < 0.01
    again = make_token_task(0, 20_000, 10)[0][0]["input_ids"]
    assert (again == X["input_ids"]).all()
    first = make_token_sequences(5, P_NEW, {1: 0.3, 0: 0.7},
                                 np.random.RandomState(1))[0]
    assert first.shape == (5, 16) and (first[:, 0] == 1).all()


def test_study_settings_rejects_an_unknown_setting():
    """An unknown setting name is refused with the list of valid ones."""
    with pytest.raises(ValueError, match="paper-mlp"):
        study_settings("audio")


def test_zero_seeds_is_refused_before_any_folder_is_written(tmp_path):
    """--seeds 0 used to write the folder, then fail on an empty runs table."""
    out = tmp_path / "adapters"
    with pytest.raises(ValueError, match="seeds must be a positive int, got 0"):
        run_adapter_study("paper-mlp", seeds=0, out=out, progress=False)
    assert not out.exists()
