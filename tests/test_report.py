"""`saebench report`: the page of a smoke run is one self-contained, valid HTML file (every
script, style and image inline; no URL), with every section and per-latent dashboards; the
pieces it is built from (ground-truth precision/recall per latent, Hungarian matching, escaping,
the dashboard cache, SAE selection) are checked against hand computations."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from saebench.report.compare import captured_labels, compare_pair, match_latents
from saebench.report.groundtruth import LabelledExamples, label_latents, label_value
from saebench.report.markup import inline, json_text, markdown_lines, table

SECTIONS = ("config", "summary", "tasks", "cells", "training", "plots", "latents", "compare")
SMOKE_SIZE_LIMIT = 3_000_000  # bytes; docs/report.md states 5 MB for the default preset
URL = re.compile(r"(?:https?:|ftp:|file:)?//[\w.-]+", re.IGNORECASE)


def make_smoke_run(base: Path) -> Path:
    """A smoke run of two learned methods (and the baselines) on two tasks, made once per
    session; its end writes report.html (the runner's hook)."""
    import torch

    out = base / "report_smoke_run"
    done = out / "run.json"
    if done.exists() and json.loads(done.read_text()).get("status") == "complete":
        return out
    messages: list[str] = []
    # Two knobs and two seeds per method and baseline: L0 curves with intervals, so the
    # matched-L0 verdicts have something to say.
    sweeps = {"topk": [8.0, 16.0], "l1": [3.0, 6.0], "random": [8.0, 16.0], "pca": [8.0, 16.0]}
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # restored after: a later module's stored results need 2 threads
    try:
        run_report_smoke(out, sweeps, messages)
    finally:
        torch.set_num_threads(previous)
    (out / "run_messages.txt").write_text("\n".join(messages))
    return out


def run_report_smoke(out: Path, sweeps: dict, messages: list[str]) -> None:
    from saebench.runner import RunRequest, run

    run(
        RunRequest(
            methods=["topk", "l1"],
            tasks=["frontier", "sparse_probing"],
            preset="smoke",
            seeds=2,
            sweeps=sweeps,
            device="cpu",
            out=out,
            progress=False,
            command="saebench run --methods topk,l1 --tasks frontier,sparse_probing --preset "
            "smoke --seeds 2 --sweep topk=8,16 --sweep l1=3,6 --sweep random=8,16 "
            "--sweep pca=8,16",
        ),
        echo=messages.append,
    )


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    return make_smoke_run(tmp_path_factory.getbasetemp())


class PageParser(HTMLParser):
    """Every start tag with its attributes, the text, and the JSON data blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: dict[str, str] = {}
        self.inline_scripts: list[str] = []
        self._script: tuple[str | None, str | None] | None = None
        self._buffer: list[str] = []
        self.open = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            attributes = dict(attrs)
            self._script = (attributes.get("id"), attributes.get("type"))
            self._buffer = []

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            element_id, kind = self._script
            body = "".join(self._buffer)
            if kind == "application/json" and element_id:
                self.scripts[element_id] = body
            else:
                self.inline_scripts.append(body)
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            self._buffer.append(data)
        else:
            self.text.append(data)


def parse(path: Path) -> tuple[str, PageParser]:
    text = path.read_text(encoding="utf-8")
    parser = PageParser()
    parser.feed(text)
    parser.close()
    return text, parser


# --------------------------------------------------------------------------- the page


@pytest.mark.slow
def test_end_of_run_report_is_self_contained_html(smoke_run):
    page = smoke_run / "report.html"
    assert page.exists(), (smoke_run / "run_messages.txt").read_text()
    text, parser = parse(page)
    assert text.startswith("<!DOCTYPE html>")
    assert len(text.encode()) < SMOKE_SIZE_LIMIT
    tags = [tag for tag, _ in parser.tags]
    assert "link" not in tags and "iframe" not in tags and "object" not in tags
    for tag, attributes in parser.tags:
        if tag == "script":
            assert "src" not in attributes, attributes
        if tag == "img":
            assert (attributes.get("src") or "").startswith("data:image/"), tag
        href = attributes.get("href")
        if href is not None:
            assert href.startswith("#"), href
        for name, value in attributes.items():
            if name in ("src", "href", "action", "data", "poster", "srcset") and value:
                assert value.startswith(("#", "data:")), (tag, name, value[:80])
    # No URL anywhere, not even in text (images are data: URIs, which hold none).
    assert not URL.findall(re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", text))
    csp = [a for t, a in parser.tags if t == "meta" and a.get("http-equiv")]
    assert csp and "default-src 'none'" in (csp[0].get("content") or "")
    ids = {attributes.get("id") for _, attributes in parser.tags}
    for section in SECTIONS:
        assert section in ids, section
    assert parser.inline_scripts and all(s.strip() for s in parser.inline_scripts)
    assert text.count("<svg") >= 3  # frontier charts, training curves, density histograms
    messages = (smoke_run / "run_messages.txt").read_text()
    assert "report: wrote" in messages, messages
    # The matched-L0 verdicts, coloured (topk beats the random baseline on fvu at smoke).
    assert '<td class="good">' in text
    assert "vs <code>random</code>" in text


@pytest.mark.slow
def test_stored_calibration_equals_the_recomputed_one(smoke_run):
    from saebench.calibration import calibrate, comparison_table, separation_summary
    from saebench.report.data import load_run_data, stored_calibration
    from saebench.rundir import RunDir

    data = load_run_data(RunDir(smoke_run))
    stored = stored_calibration(data.run_dir, data.frame, data.tasks, data.baselines)
    fresh = calibrate(data.frame, data.tasks, data.baselines)
    assert stored is not None and fresh.comparisons
    assert separation_summary(stored) == separation_summary(fresh)
    assert comparison_table(stored).equals(comparison_table(fresh))


@pytest.mark.slow
def test_latent_dashboards_have_content(smoke_run):
    _, parser = parse(smoke_run / "report.html")
    meta = json.loads(parser.scripts["report-meta"])
    assert len(meta["saes"]) == 2  # auto: one per learned method (topk, l1), no baseline
    assert {s["label"].split("__")[0] for s in meta["saes"]} == {"topk", "l1"}
    for entry in meta["saes"]:
        data = json.loads(parser.scripts[entry["data"]])
        d_sae = len(data["density"])
        assert d_sae == 512  # smoke: expansion 4 × d_in 128
        assert len(data["hist"]) == len(data["ctx"]) == len(data["lt"]) == d_sae
        live = [i for i in range(d_sae) if data["density"][i] > 0]
        assert live
        first = data["ctx"][live[0]][0]
        seq, pos, activation, start, digits = first
        assert activation > 0 and start <= pos < start + len(digits)
        assert digits[pos - start] == "9"  # the peak is the top of the scale
        assert str(seq) in meta["seqs"] and all(
            str(t) in meta["tokens"] for t in meta["seqs"][str(seq)]
        )
        assert len(data["lt"][live[0]]) == 6 and data["lens_reason"] == ""
        truth = data["gt"]
        assert truth is not None and "country=france" in truth["names"]
        assert any(label >= 0 for label in truth["label"])
        assert all(0 <= p <= 1 for p in truth["precision"])
        # The other SAE's matching is there for the explorer.
        assert set(data["match"]) == {s["label"] for s in meta["saes"]} - {data["label"]}
    text = "".join(parser.text)
    assert "Only topk" in text or "Only l1" in text  # the comparison's captured values


@pytest.mark.slow
def test_second_build_reuses_the_cache_without_the_model(smoke_run, tmp_path, monkeypatch):
    import saebench.models
    from saebench.report import build_report

    def no_model(*args, **kwargs):
        raise AssertionError("the cached build must not load the model")

    monkeypatch.setattr(saebench.models, "resolve_model", no_model)
    result = build_report(smoke_run, tmp_path / "again.html", echo=lambda m: None)
    assert result.computed == [] and len(result.dashboards) == 2
    assert result.size_bytes == (tmp_path / "again.html").stat().st_size


@pytest.mark.slow
def test_failed_cells_are_listed_and_escaped(smoke_run, tmp_path):
    """Arbitrary text (a failure reason) reaches the page as text, never as markup."""
    from saebench.report import build_report
    from saebench.rundir import Cell, RunDir

    copy = tmp_path / "run"
    shutil.copytree(smoke_run, copy, ignore=shutil.ignore_patterns("saes"))
    hostile = "<script>alert('x')</script> & <img src=//evil.example/x.png>"
    RunDir(copy).write_cell(
        Cell("topk", "k", 99.0, 0, "frontier", "failed", reason=hostile, seconds=0.5)
    )
    result = build_report(copy, latents="none", images=False, echo=lambda m: None)
    text, parser = parse(result.path)
    assert hostile in "".join(parser.text)
    assert "<script>alert" not in text and "evil.example/x.png>" not in text
    assert not [a for t, a in parser.tags if t == "img"]
    assert "topk__99__seed0__frontier" in text


def test_cli_refuses_a_directory_that_is_no_run(tmp_path):
    from click.testing import CliRunner

    from saebench.cli import cli

    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code != 0
    assert "run.json" in result.output


@pytest.mark.slow
def test_cli_writes_the_page(smoke_run, tmp_path):
    from click.testing import CliRunner

    from saebench.cli import cli

    out = tmp_path / "page.html"
    result = CliRunner().invoke(
        cli, ["report", str(smoke_run), "--out", str(out), "--latents", "none", "--no-images"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and out.exists()
    bad = CliRunner().invoke(cli, ["report", str(smoke_run), "--latents", "nope__1__seed0"])
    assert bad.exit_code != 0 and "not an SAE of this run" in bad.output


# --------------------------------------------------------------------------- pieces


def test_ground_truth_precision_recall_by_hand():
    """Four train and four held-out examples, two labels of one variable, three latents."""
    train = np.array([True] * 4 + [False] * 4)
    # "v=a" on examples 0, 1, 4, 5; "v=b" on 2, 3, 6; example 7 has neither (another family):
    # a latent firing there fires on a negative of both labels.
    positive = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 0], [1, 0], [0, 1], [0, 0]], bool)
    examples = LabelledExamples(
        texts=tuple("abcdefgh"),
        families=("f",) * 7 + ("g",),
        names=("v=a", "v=b"),
        positive=positive,
        train=train,
    )
    fires = np.array(
        [
            # latent 0 fires on the a's of train, and on 4 (a), 6 (b), 7 (neither) held out;
            # latent 1 on everything; latent 2 never on train.
            [1, 1, 0],
            [1, 1, 0],
            [0, 1, 0],
            [0, 1, 0],
            [1, 1, 1],
            [0, 1, 0],
            [1, 1, 0],
            [1, 1, 0],
        ],
        bool,
    )
    result = label_latents(fires, examples)
    # Latent 0: train F1 for a = 2*2/(2+2) = 1 -> label a. Held out it fires on 3 examples,
    # one of them an a: precision 1/3; a's held out: 4, 5 -> recall 1/2; F1 = 2/(3+2) = 0.4.
    assert result.label[0] == 0
    assert result.precision[0] == pytest.approx(1 / 3)
    assert result.recall[0] == pytest.approx(0.5)
    assert result.f1[0] == pytest.approx(0.4)
    # Latent 1: train F1 for a = 2*2/(4+2) = 2/3 = for b: the first (a) wins the tie. Held out:
    # 2 of its 4 firings are a's (precision 1/2), both a's (recall 1), F1 = 4/(4+2) = 2/3.
    assert result.label[1] == 0
    assert result.precision[1] == pytest.approx(0.5)
    assert result.recall[1] == pytest.approx(1.0)
    assert result.f1[1] == pytest.approx(2 / 3)
    # Latent 2 never fires on train: no label, zeros.
    assert result.label[2] == -1 and result.f1[2] == 0 and result.precision[2] == 0
    # Per label, the train-picked latent: a -> latent 0 (held-out F1 0.4); b -> latent 1
    # (train F1 2/3; held out: 1 hit of 4 firings, 1 positive: F1 = 2/(4+1) = 0.4).
    assert result.label_latent.tolist() == [0, 1]
    assert result.label_f1 == pytest.approx([0.4, 0.4])


def test_label_values_from_the_worlds_label_shapes():
    entities = {"paris": {"city": "paris", "country": "france", "continent": "europe"}}
    days = ["monday", "tuesday"]
    assert label_value({"topic": "food"}, "topic", ["food", "music"], {}) == "food"
    assert label_value({"topic": "other"}, "topic", ["food"], {}) is None  # not declared
    assert label_value({"attribute": "country", "value": "france"}, "country", ["france"], {})
    assert label_value({"kind": "day", "start": 1}, "day", days, {}) == "tuesday"
    assert label_value({"kind": "month", "start": 1}, "day", days, {}) is None
    fact = {"entity": "paris", "attribute": "continent", "value": "europe"}
    assert label_value(fact, "country", ["france", "spain"], entities) == "france"
    assert label_value({"offset": 3}, "offset", [1, 2, 3], {}) == "3"


def test_world_examples_label_the_toy_world():
    from saebench.report.groundtruth import MIN_POSITIVES, world_examples
    from saebench.toyworld import load_world

    examples = world_examples(load_world(), 300)
    assert examples is not None
    assert "country=france" in examples.names and "topic=food" in examples.names
    column = examples.names.index("country=france")
    for half in (examples.train, ~examples.train):
        assert ((examples.positive & half[:, None]).sum(0) >= MIN_POSITIVES).all()
    france = {f for f, p in zip(examples.families, examples.positive[:, column]) if p}
    assert france == {"facts"}  # every fact example about a French city, whatever it asks


@pytest.mark.parametrize("shape", [(5, 5), (4, 6), (6, 4)])
def test_hungarian_matching_equals_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    a, b = rng.standard_normal((shape[0], 3)), rng.standard_normal((shape[1], 3))
    matching = match_latents(a, b)
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)
    cosine = unit(a) @ unit(b).T
    best = -np.inf
    small, large = min(shape), max(shape)
    for chosen in itertools.permutations(range(large), small):
        total = (
            sum(cosine[i, j] for i, j in enumerate(chosen))
            if shape[0] <= shape[1]
            else sum(cosine[j, i] for i, j in enumerate(chosen))
        )
        best = max(best, total)
    matched = matching.partner >= 0
    assert matched.sum() == small
    assert len(set(matching.partner[matched].tolist())) == small  # one-to-one
    assert np.nansum(matching.cosine) == pytest.approx(best)
    assert np.allclose(
        matching.cosine[matched], cosine[matched.nonzero()[0], matching.partner[matched]]
    )
    inverse = matching.inverse(shape[1])
    for i in np.flatnonzero(matched):
        assert inverse.partner[matching.partner[i]] == i


def test_captured_values_split_by_threshold():
    names = ("x=1", "x=2", "x=3", "x=4")
    captured = captured_labels(
        names, np.array([0.9, 0.2, 0.8, 0.1]), np.array([0.3, 0.7, 0.85, 0.0])
    )
    assert [n for n, *_ in captured.only_a] == ["x=1"]
    assert [n for n, *_ in captured.only_b] == ["x=2"]
    assert captured.both == ("x=3",) and captured.neither == 1
    pair = compare_pair(
        *_keys(), np.eye(3), np.eye(3)[::-1], (list(names), [0.9] * 4), (list(names), [0.0] * 4)
    )
    assert pair.matching.mean_cosine == pytest.approx(1.0)
    assert pair.captured is not None and len(pair.captured.only_a) == 4
    assert compare_pair(*_keys(), np.eye(3), np.eye(3), None, None).captured is None


def _keys():
    from saebench.rundir import SaeKey

    return SaeKey("a", 1.0, 0), SaeKey("b", 2.0, 0)


def test_markup_escapes_everything():
    import pandas as pd

    assert "<" not in json_text({"t": "</script><!-- & >"})
    assert json.loads(json_text({"t": "</script>", "n": float("nan")})) == {
        "t": "</script>",
        "n": None,
    }
    assert inline("**<b>** `x<y`") == "<strong>&lt;b&gt;</strong> <code>x&lt;y</code>"
    html = markdown_lines(["## heading", "- item <i>", "> note & more", "plain"])
    assert "<li>item &lt;i&gt;</li>" in html and "&amp; more" in html and "heading" not in html
    rendered = table(
        pd.DataFrame({"verdict": ["+0.1 [0.05, 0.2] better"], "x": ["<td>"]}), verdicts=True
    )
    assert 'class="good"' in rendered and "&lt;td&gt;" in rendered


def test_charts_carry_hover_text_and_escape_it():
    from saebench.report.charts import Point, Series, scatter_chart

    svg = scatter_chart(
        [
            Series(
                "m<1>",
                "#000",
                [Point(4, 0.5, "topk k=4 seed 0 <x>"), Point(16, 0.7, "b")],
                [(4, 0.5), (16, 0.7)],
            )
        ],
        title="fvu vs L0",
        x_label="L0",
        y_label="fvu",
    )
    assert "<title>topk k=4 seed 0 &lt;x&gt;</title>" in svg and "m&lt;1&gt;" in svg
    assert svg.count("<circle") == 2 and "<polyline" in svg


def test_axis_ticks_cover_the_data():
    from saebench.report.charts import make_axis, nice_ticks

    for low, high in ((0, 106), (0.4, 1.03), (-3, -1), (5, 5)):
        ticks = nice_ticks(low, high)
        assert ticks[0] <= low and ticks[-1] >= high
    counts = make_axis([0.0, 3.0, 98.0], 0, 100, None)
    assert counts.low == 0 and counts.high >= 98  # non-negative data: no axis below zero
    assert make_axis([4.0, 64.0], 0, 100, 2).ticks == [4, 8, 16, 32, 64]


def test_choose_saes_one_per_method_near_the_median_l0():
    import pandas as pd

    from saebench.report.data import RunData, choose_saes
    from saebench.rundir import SaeKey

    saved = [
        SaeKey(m, k, s)
        for m, ks in {"topk": [8, 16, 32], "l1": [1, 2, 4]}.items()
        for k in ks
        for s in (0, 1)
    ]
    saved += [SaeKey("random", 16, 0)]
    l0 = {
        ("topk", 8): 8,
        ("topk", 16): 16,
        ("topk", 32): 32,
        ("l1", 1): 40,
        ("l1", 2): 20,
        ("l1", 4): 10,
    }
    frame = pd.DataFrame(
        [
            {
                "method": m,
                "knob": float(k),
                "seed": s,
                "task": "frontier",
                "metric": "l0",
                "value": v,
            }
            for (m, k), v in l0.items()
            for s in (0, 1)
        ]
    )
    data = RunData.__new__(RunData)
    data.saved, data.frame, data.baselines = saved, frame, ["random"]
    chosen = choose_saes(data, "auto")
    # Median of {8, 16, 32, 40, 20, 10} (upper middle) is 20: topk 16 and l1 2, seed 0.
    assert chosen == [SaeKey("topk", 16.0, 0), SaeKey("l1", 2.0, 0)]
    assert choose_saes(data, "none") == []
    assert len(choose_saes(data, "all")) == len(saved)
    assert choose_saes(data, "topk:32:1,l1__4__seed0") == [
        SaeKey("topk", 32.0, 1),
        SaeKey("l1", 4.0, 0),
    ]
    assert choose_saes(data, "auto", max_saes=1) == [SaeKey("topk", 16.0, 0)]


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")  # restored at the module's end
def test_a_failing_report_never_loses_the_run(tmp_path, monkeypatch):
    import saebench.report
    from saebench.runner import RunRequest, run

    def broken(*args, **kwargs):
        raise RuntimeError("report exploded")

    monkeypatch.setattr(saebench.report, "end_of_run_report", broken)
    messages: list[str] = []
    out = run(
        RunRequest(
            methods=["topk"],
            tasks=["frontier"],
            preset="smoke",
            baselines=False,
            device="cpu",
            out=tmp_path / "run",
            progress=False,
        ),
        echo=messages.append,
    )
    assert (out / "results.csv").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert not (out / "report.html").exists()
    warning = [m for m in messages if "report: WARNING" in m]
    assert warning and "report exploded" in warning[0] and "saebench report" in warning[0]


@pytest.mark.slow
def test_end_of_run_modes(smoke_run, tmp_path, monkeypatch):
    from saebench.errors import ConfigError
    from saebench.report import end_of_run_report
    from saebench.report.build import END_OF_RUN_ENV
    from saebench.rundir import RunDir

    copy = tmp_path / "run"
    shutil.copytree(smoke_run, copy, ignore=shutil.ignore_patterns("saes", "report.html"))
    run_dir = RunDir(copy)
    monkeypatch.setenv(END_OF_RUN_ENV, "off")
    assert end_of_run_report(run_dir, None, None, "cpu", print) is None
    assert not (copy / "report.html").exists()
    monkeypatch.setenv(END_OF_RUN_ENV, "tables")  # no dashboards: needs neither model nor SAEs
    result = end_of_run_report(run_dir, None, None, "cpu", lambda m: None)
    assert result is not None and result.dashboards == [] and (copy / "report.html").exists()
    monkeypatch.setenv(END_OF_RUN_ENV, "everything")
    with pytest.raises(ConfigError, match="full, tables, off"):
        end_of_run_report(run_dir, None, None, "cpu", print)


class ReluSAE:
    """A stand-in SAE whose latents are the inputs' positive parts (d_sae = d_in)."""

    def __init__(self, d: int):
        import torch

        self.d_in = self.d_sae = d
        self.W_dec = torch.eye(d)

    def encode(self, x):
        import torch

        return torch.relu(x)


def test_dashboards_by_hand_across_batches(monkeypatch):
    """Density, maxima, histograms and the top contexts, with the eval tokens split over
    several encode batches (the running top-k must merge them)."""
    import torch

    from saebench.report import latents
    from saebench.report.latents import EvalData, Inputs, Settings, compute_dashboards
    from saebench.rundir import SaeKey

    monkeypatch.setattr(latents, "FEATURE_BUDGET", 64 * 2)  # 64 tokens per batch
    n_seqs, width = 10, 30
    mask = np.ones((n_seqs, width), bool)
    mask[:, 0] = False  # BOS: not in the activations
    n_real = int(mask.sum())  # 290
    acts = torch.zeros(n_real, 2)
    acts[:, 1] = -1.0  # latent 1 never fires
    rows, columns = np.nonzero(mask)
    peak_row = int(np.flatnonzero((rows == 7) & (columns == 12))[0])  # late: a later batch
    acts[peak_row, 0] = 4.0
    acts[peak_row + 1, 0] = 2.0  # the next token, same window: never a second context
    second = int(np.flatnonzero((rows == 2) & (columns == 1))[0])
    acts[second, 0] = 1.0
    tokens = np.arange(n_seqs * width).reshape(n_seqs, width) % 50
    inputs = Inputs(
        eval=EvalData(tokens=tokens, mask=mask, acts=acts, key="k"),
        token_text=lambda t: f"t{t}",
        device="cpu",
        unembed=torch.eye(2, 5),
        unembed_reason="",
        special_ids=frozenset({0}),
        examples=None,
        example_acts=None,
        gt_reason="no world",
    )
    settings = Settings(top_contexts=4, before=3, after=1, hist_bins=4, lens_tokens=2)
    record = compute_dashboards(ReluSAE(2), SaeKey("relu", 1.0, 0), inputs, settings, {})
    assert record.density == pytest.approx([3 / n_real, 0.0], rel=1e-3)
    assert record.max == [4.0, 0.0] and record.mean == pytest.approx([7 / 3, 0.0], rel=1e-3)
    # Bins of (0, 4]: 1 -> bin 0, 2 -> bin 1, 4 -> bin 3.
    assert record.hist == [[1, 1, 0, 1], [0, 0, 0, 0]]
    first, other = record.contexts[0]
    assert first == [7, 12, 4.0, 9, "00095"]  # window 9..13; the peak 9, the next token 5
    # Row 2's token 1: window 0..4, position 0 is BOS ('-'), its own activation 1/4 of the top.
    assert other == [2, 1, 1.0, 0, "-3000"]
    assert record.contexts[1] == []
    assert set(record.sequences) == {"7", "2"} and record.tokens[str(tokens[7, 12])]
    # Logit lens of e0 through eye(2, 5): logit 1 for token 0 (special: left out), 0 for the rest.
    assert [i for i, _ in record.lens_top[0]] != [0] and 0 not in [i for i, _ in record.lens_top[0]]
    assert record.gt_reason == "no world" and record.ground_truth is None


def test_a_stored_table_without_a_one_knob_methods_rows_is_recomputed(tmp_path):
    # A `--sweep topk=8` run written before one-knob methods were compared left comparisons.csv
    # empty: reading it back would claim the baseline's range misses topk's L0.
    import pandas as pd

    from saebench.calibration import COMPARISON_COLUMNS, calibrate
    from saebench.report.data import stored_calibration
    from saebench.results import cells_to_frame
    from saebench.rundir import Cell, RunDir
    from saebench.specs import MetricInfo, TaskSpec

    tasks = {
        "frontier": TaskSpec(
            name="frontier",
            description="",
            run=lambda ctx: {},
            metrics={
                "l0": MetricInfo(None, headline=True),
                "fvu": MetricInfo(False, headline=True),
            },
        )
    }
    cells = [
        Cell(method, "k", k, seed, "frontier", "ok", None, {"l0": k, "fvu": fvu + 0.01 * seed}, 0.1)
        for seed in range(3)
        for method, k, fvu in (("topk", 8.0, 0.1), ("random", 4.0, 0.8), ("random", 16.0, 0.6))
    ]
    frame = cells_to_frame(cells, "m", "h")
    run_dir = RunDir(tmp_path / "run")
    run_dir.comparisons_csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(columns=COMPARISON_COLUMNS).to_csv(run_dir.comparisons_csv, index=False)
    assert stored_calibration(run_dir, frame, tasks, ["random"]) is None
    fresh = calibrate(frame, tasks, ["random"])
    fresh.frame().to_csv(run_dir.comparisons_csv, index=False)
    stored = stored_calibration(run_dir, frame, tasks, ["random"])
    assert stored is not None and stored.one_knob == ("topk",) and len(stored.comparisons) == 1
