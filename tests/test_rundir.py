"""RunDir owns the run layout: paths, typed cells, atomic writes, what a run holds."""

import json

import pytest

from saebench.fileio import write_json
from saebench.rundir import Cell, RunDir, SaeKey, knob_label


def test_knob_label_is_one_spelling_for_ints_and_floats():
    assert [knob_label(v) for v in (16, 16.0, 0.001, 1.3, 2.5e-4)] == [
        "16",
        "16",
        "0.001",
        "1.3",
        "0.00025",
    ]


def test_paths_follow_the_documented_layout(tmp_path):
    run_dir, sae = RunDir(tmp_path), SaeKey("topk", 16, 2)
    assert run_dir.cell_path(sae, "ioi") == tmp_path / "cells" / "topk__16__seed2__ioi.json"
    assert run_dir.sae_dir(sae) == tmp_path / "saes" / "topk" / "16" / "seed2"
    assert run_dir.artifacts_dir(sae, "frontier") == run_dir.sae_dir(sae) / "artifacts/frontier"
    assert run_dir.plot_path("x.png") == tmp_path / "plots" / "x.png"
    assert run_dir.run_json == tmp_path / "run.json"


def test_cells_round_trip_and_are_read_sorted(tmp_path):
    run_dir = RunDir(tmp_path)
    ok = Cell("topk", "k", 16, 0, "frontier", "ok", metrics={"fvu": 0.1}, seconds=1.23456)
    bad = Cell("l1", "l1_coefficient", 0.5, 1, "ioi", "failed", reason="boom")
    for cell in (ok, bad):
        run_dir.write_cell(cell)
    on_disk = json.loads(run_dir.cell_path(ok.sae, "frontier").read_text())
    assert on_disk["id"] == "topk__16__seed0__frontier" and on_disk["seconds"] == 1.235
    assert [c.id for c in run_dir.read_cells()] == ["l1__0.5__seed1__ioi", ok.id]
    assert run_dir.read_cell(ok.sae, "frontier").metrics == {"fvu": 0.1}
    assert run_dir.read_cell(ok.sae, "ioi") is None
    assert not [p for p in run_dir.cells_dir.iterdir() if p.name.startswith(".")]  # no temp left


def test_a_cell_with_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        Cell("topk", "k", 16, 0, "frontier", "maybe")


def test_saved_saes_and_train_logs(tmp_path):
    run_dir = RunDir(tmp_path)
    for sae in (SaeKey("topk", 32, 0), SaeKey("topk", 8, 0), SaeKey("l1", 0.5, 1)):
        run_dir.sae_dir(sae).mkdir(parents=True)
        (run_dir.sae_dir(sae) / "cfg.json").write_text("{}")
        write_json(run_dir.train_log_path(sae), {"seconds": 1.0})
    (tmp_path / "saes" / "topk" / "not-a-knob" / "seed0").mkdir(parents=True)
    (tmp_path / "saes" / "topk" / "not-a-knob" / "seed0" / "cfg.json").write_text("{}")
    assert [key for key, _ in run_dir.saved_saes()] == [
        SaeKey("l1", 0.5, 1),
        SaeKey("topk", 8.0, 0),
        SaeKey("topk", 32.0, 0),
    ]
    assert run_dir.has_sae(SaeKey("topk", 8, 0)) and not run_dir.has_sae(SaeKey("topk", 4, 0))
    assert set(run_dir.train_logs()) == {
        "saes/l1/0.5/seed1",
        "saes/topk/8/seed0",
        "saes/topk/32/seed0",
    }


def test_read_run_json_names_the_directory_when_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="saebench run directory"):
        RunDir(tmp_path).read_run_json()


def test_the_sae_config_name_agrees_with_the_saved_format():
    from saebench import rundir, saved_format

    assert rundir.SAE_CONFIG == saved_format.CONFIG
