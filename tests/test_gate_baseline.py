"""The baseline file format (Baseline.from_json's checks) and the seed aggregation (fast)."""

from __future__ import annotations

import copy
import json
import math
import random
import statistics
from pathlib import Path

import pandas as pd
import pytest

from saebench.errors import ConfigError
from saebench.gate import FORMAT_VERSION, Baseline, BaselineEntry, load_baseline, seed_stats
from saebench.results import COLUMNS

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "baselines" / "toyworld-smoke.json"
ENTRY = {
    "model": "toyworld",
    "hook": "blocks.1.hook_resid_pre",
    "method": "topk",
    "knob": "16",
    "task": "frontier",
    "metric": "fvu",
    "mean": 0.31,
    "std": 0.01,
    "n_seeds": 3,
    "values": {"0": 0.30, "1": 0.31, "2": 0.32},
    "higher_is_better": False,
    "floor": 0.01,
}
VALID = {
    "format": "saebench-baseline",
    "format_version": FORMAT_VERSION,
    "created_at": "2026-01-01T00:00:00+00:00",
    "created_from": "/tmp/base",
    "command": "saebench run ...",
    "config": {"model": "toyworld", "seeds": [0, 1, 2]},
    "versions": {"saebench": "0.1.0"},
    "device": "cpu",
    "entries": [ENTRY, dict(ENTRY, metric="l0", higher_is_better=None, floor=0.0)],
}


def edited(**changes):
    """VALID with top-level fields changed (None removes one)."""
    data = copy.deepcopy(VALID)
    for name, value in changes.items():
        if value is None:
            del data[name]
        else:
            data[name] = value
    return data


def with_entry(**changes):
    """VALID whose first entry has fields changed (None removes one)."""
    entry = {k: v for k, v in {**ENTRY, **changes}.items() if v is not None}
    return edited(entries=[entry])


def test_valid_baseline_round_trips():
    baseline = Baseline.from_json(VALID, "b.json")
    assert baseline.format_version == FORMAT_VERSION and baseline.device == "cpu"
    entry = baseline.entries[0]
    assert isinstance(entry, BaselineEntry)
    assert (entry.knob, entry.knob_label, entry.values[2]) == (16.0, "16", 0.32)
    assert entry.label == "topk knob=16 frontier/fvu" and entry.gated
    assert not baseline.entries[1].gated and len(baseline.gated_entries) == 1
    assert baseline.to_json() == VALID
    assert Baseline.from_json(baseline.to_json(), "b.json") == baseline


def test_the_committed_baseline_loads_and_round_trips():
    baseline = load_baseline(COMMITTED)
    assert len(baseline.entries) > 0 and baseline.seeds == list(range(8))
    assert baseline.to_json() == json.loads(COMMITTED.read_text())


@pytest.mark.parametrize(
    "data, message",
    [
        ([1, 2], 'not a saebench baseline (missing "format": "saebench-baseline")'),
        (edited(format="other"), "not a saebench baseline"),
        (edited(format_version=2), "format version 2, this saebench reads version 1"),
        (edited(format_version=None), "format version None"),
        (edited(config=None), "no config block or no entries"),
        (edited(entries=[]), "no config block or no entries"),
        (edited(versions=["saebench"]), "versions=['saebench'], which must be a JSON object"),
        (edited(device=3), "device=3, which must be a string or null"),
        (edited(torch_threads=0), "torch_threads=0, which must be a whole number ≥ 1"),
        (edited(cpu_numerics="avx2"), "cpu_numerics='avx2', which must be a JSON object"),
    ],
)
def test_bad_file_names_the_file_the_field_and_the_fix(data, message):
    with pytest.raises(ConfigError) as error:
        Baseline.from_json(data, "results/baselines/b.json")
    text = str(error.value)
    assert message in text and text.startswith("results/baselines/b.json")
    assert "saebench baseline create RUN_DIR --out results/baselines/b.json" in text


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"mean": None}, "entry 0 lacks ['mean']"),
        ({"mean": None, "floor": None}, "entry 0 lacks ['floor', 'mean']"),
        ({"mean": "0.31"}, "mean='0.31', which must be a finite number"),
        ({"mean": float("nan")}, "mean=nan, which must be a finite number"),
        ({"std": -0.1}, "std=-0.1, which must be a number ≥ 0"),
        ({"n_seeds": "three"}, "n_seeds='three', which must be a whole number ≥ 1"),
        ({"n_seeds": True}, "n_seeds=True, which must be a whole number ≥ 1"),
        ({"knob": "sixteen"}, "knob='sixteen', which must be a number or a number as text"),
        ({"higher_is_better": "yes"}, "higher_is_better='yes', which must be true"),
        ({"metric": ""}, "metric='', which must be a non-empty string"),
        ({"values": [0.3]}, "values=[0.3], which must be an object {seed: value}"),
        ({"values": {"zero": 0.3}}, "which must be an object {seed: value}"),
    ],
)
def test_bad_entry_names_the_entry_and_the_field(changes, message):
    with pytest.raises(ConfigError) as error:
        Baseline.from_json(with_entry(**changes), "b.json")
    text = str(error.value)
    assert text.startswith("b.json: entry 0") and message in text
    assert "it is corrupt: recreate it with `saebench baseline create" in text


def test_entry_that_is_not_an_object():
    with pytest.raises(ConfigError, match=r"entry 1 is str, not an object with the fields"):
        Baseline.from_json(edited(entries=[ENTRY, "fvu"]), "b.json")


def test_repeated_entry_is_rejected():
    with pytest.raises(ConfigError, match=r"entry 1 \(topk knob=16 frontier/fvu\) repeats entry 0"):
        Baseline.from_json(edited(entries=[ENTRY, dict(ENTRY, knob=16.0)]), "b.json")


def test_knob_as_a_number_and_no_seed_values_are_accepted():
    entry = Baseline.from_json(with_entry(knob=0.001, values=None), "b.json").entries[0]
    assert (entry.knob_label, entry.values) == ("0.001", {})


def test_load_baseline_validates_the_file(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(with_entry(floor=None)))
    with pytest.raises(ConfigError, match=rf"{path}: entry 0 lacks \['floor'\]"):
        load_baseline(path)


# --------------------------------------------------------------------------- aggregation


def test_seed_stats_match_a_brute_force_mean_and_sample_std():
    rng = random.Random(0)
    rows, expected = [], {}
    for method, knob in (("topk", 16), ("topk", 32.0), ("l1", 0.001)):
        for metric in ("fvu", "l0"):
            seeds = range(rng.choice([1, 3, 5]))
            values = [rng.gauss(0.5, 0.1) for _ in seeds]
            rows += [
                ("m", "h", method, knob, s, "frontier", metric, v) for s, v in zip(seeds, values)
            ]
            label = str(knob) if method == "l1" else str(int(knob))
            expected[("m", "h", method, label, "frontier", metric)] = values
    stats = seed_stats(pd.DataFrame(rows, columns=COLUMNS).sample(frac=1, random_state=0))
    assert set(stats) == set(expected)
    for key, values in expected.items():
        got = stats[key]
        assert got.n == len(values)
        assert got.mean == pytest.approx(statistics.fmean(values), abs=1e-12)
        want_std = statistics.stdev(values) if len(values) > 1 else 0.0
        assert got.std == pytest.approx(want_std, abs=1e-12)
        assert got.values == dict(enumerate(values))


def test_seed_stats_merge_knob_spellings_and_count_a_seed_once():
    rows = [
        ("m", "h", "topk", 16, 0, "frontier", "fvu", 0.1),
        ("m", "h", "topk", 16.0, 1, "frontier", "fvu", 0.3),
        ("m", "h", "topk", 16.0, 1, "frontier", "fvu", 0.2),  # a rewritten seed: the last wins
    ]
    (stats,) = seed_stats(pd.DataFrame(rows, columns=COLUMNS)).values()
    assert (stats.n, stats.values) == (2, {0: 0.1, 1: 0.2})
    assert stats.mean == pytest.approx(0.15)
    assert seed_stats(pd.DataFrame(columns=COLUMNS)) == {}


def test_seed_stats_leave_out_non_finite_values():
    rows = [("m", "h", "topk", 16, s, "frontier", "fvu", v) for s, v in enumerate([0.1, math.nan])]
    rows.append(("m", "h", "topk", 16, 0, "frontier", "mse", math.inf))
    (key,) = seed_stats(pd.DataFrame(rows, columns=COLUMNS))  # mse has no finite value at all
    assert key[-1] == "fvu"
