"""Build RUN/report.html: read the run, compute (or reuse) the chosen SAEs' latent dashboards,
match their latents pairwise, embed the plots, write the page atomically."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saebench.errors import ConfigError
from saebench.fileio import write_text
from saebench.report.compare import MAX_MATCH, PairComparison, compare_pair
from saebench.report.data import DEFAULT_MAX_SAES, RunData, choose_saes, load_run_data
from saebench.report.images import embedded_plots
from saebench.report.latents import (
    Dashboards,
    Inputs,
    Settings,
    build_inputs,
    compute_dashboards,
    fingerprint,
    read_cached,
    write_cached,
)
from saebench.report.page import PageInputs, render_page
from saebench.rundir import RunDir, SaeKey

REPORT_NAME = "report.html"  # RUN/report.html unless --out says otherwise
MAX_PAIRS = 6  # comparisons shown: every pair of the first dashboards, at most this many
# The size the page should stay under for the default preset (docs/report.md has measurements).
SIZE_LIMIT_BYTES = 5_000_000

# At the end of `saebench run`: "full" (default: the page with the chosen SAEs' dashboards),
# "tables" (the page without dashboards: no SAE encode, no model forward), "off" (no page).
END_OF_RUN_ENV = "SAEBENCH_REPORT"
END_OF_RUN_MODES = ("full", "tables", "off")

Echo = Callable[[str], None]


@dataclass
class ReportResult:
    """What one build wrote and how long it took."""

    path: Path
    size_bytes: int
    seconds: float
    dashboards: list[str] = field(default_factory=list)  # SAE labels with dashboards
    computed: list[str] = field(default_factory=list)  # of those, computed in this build
    notes: list[str] = field(default_factory=list)  # what was skipped and why
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step

    def summary(self) -> str:
        cached = len(self.dashboards) - len(self.computed)
        return (
            f"wrote {self.path} ({self.size_bytes / 1e6:.2f} MB, {self.seconds:.1f} s; latent "
            f"dashboards for {len(self.dashboards)} SAE(s): {len(self.computed)} computed, "
            f"{cached} cached)"
        )


def report_path(run_dir: RunDir) -> Path:
    return run_dir.root / REPORT_NAME


class _Sources:
    """The model and eval activations, loaded on first need (a cached build never loads them)."""

    def __init__(self, data: RunData, model, store, device, cache_dir, echo: Echo):
        self.data, self.model, self.store = data, model, store
        self.device, self.cache_dir, self.echo = device, cache_dir, echo
        self._inputs: Inputs | None = None
        self.load_seconds = 0.0  # loading the model, the activations and the world's examples

    def harvest_key(self) -> str:
        """The run's recorded harvest (its eval set): what a cached record is keyed by."""
        recorded = (self.data.run.get("harvest") or {}).get("key")
        if recorded:
            return str(recorded)
        return str(self.store.info.get("key", "")) if self.store is not None else ""

    def mismatch(self) -> str:
        """A note when the store used is not the run's (the model or data changed since)."""
        if self.store is None:
            return ""
        used = str(self.store.info.get("key", ""))
        if used and used != self.harvest_key():
            return (
                f"The eval activations were harvested again (key {used}), not the run's "
                f"({self.harvest_key()}): the model's weights or data changed after the run, so "
                "these dashboards describe the SAEs on today's model, not the run's."
            )
        return ""

    def inputs(self, settings: Settings) -> Inputs:
        if self._inputs is None:
            started = time.time()
            from saebench.harvest import harvest
            from saebench.models import resolve_device, resolve_model

            config = self.data.config
            device = resolve_device(self.device) if isinstance(self.device, str) else self.device
            if self.model is None:
                self.echo("  report: loading the model for the latent dashboards")
                self.model = resolve_model(
                    config.get("model_argument") or config["model"], device, config.get("dataset")
                )
            if self.store is None:
                self.store = harvest(
                    self.model,
                    config["hook"],
                    config["n_train_tokens"],
                    config["n_eval_tokens"],
                    seed=0,
                    cache_dir=Path(self.cache_dir) if self.cache_dir else None,
                    device=device,
                    dataset=config.get("dataset"),
                    echo=self.echo,
                )
            self._inputs = build_inputs(
                self.model, self.store, config["hook"], settings, device, self.harvest_key()
            )
            self.load_seconds = time.time() - started
        return self._inputs


def dashboards_for(
    data: RunData, keys: list[SaeKey], sources: _Sources, echo: Echo
) -> tuple[list[Dashboards], list[str], list[str]]:
    """(records, labels computed now, notes): cached records reused, the others computed."""
    from saebench.saved_format import load_sae

    settings = Settings.for_preset(data.config.get("preset"))
    records, computed, notes = [], [], []
    for key in keys:
        directory = data.run_dir.sae_dir(key)
        expected = fingerprint(sources.harvest_key(), directory, settings)
        record = read_cached(data.run_dir, key, expected)
        if record is None:
            try:
                inputs = sources.inputs(settings)
                sae = load_sae(directory, inputs.device).eval()
                record = compute_dashboards(sae, key, inputs, settings, expected)
            except Exception as error:  # noqa: BLE001 — one SAE's dashboards never stop the page
                notes.append(f"no dashboards for {key.label}: {type(error).__name__}: {error}")
                echo(f"  report: {notes[-1]}")
                continue
            if sources.mismatch():
                record.extra["harvest_used"] = str(sources.store.info.get("key", ""))
            write_cached(data.run_dir, record)
            computed.append(key.label)
        records.append(record)
    if any(r.extra.get("harvest_used") for r in records):
        notes.append(
            sources.mismatch()
            or "Some dashboards were computed on activations harvested again after the run "
            "(the model or data had changed): they describe the SAEs on that model."
        )
    return records, computed, notes


def comparisons_for(
    data: RunData, records: list[Dashboards]
) -> tuple[list[PairComparison], list[str]]:
    """Every pair of the dashboards' SAEs (first MAX_PAIRS), matched on their decoders, and
    notes on the pairs left out."""
    from saebench.saved_format import load_sae

    pairs = list(itertools.combinations(records, 2))[:MAX_PAIRS]
    notes = [
        f"{a.sae} vs {b.sae} not matched: {max(a.d_sae, b.d_sae)} latents is above the "
        f"{MAX_MATCH} the Hungarian assignment is run on (its cost grows as n³)"
        for a, b in pairs
        if max(a.d_sae, b.d_sae) > MAX_MATCH
    ]
    pairs = [(a, b) for a, b in pairs if max(a.d_sae, b.d_sae) <= MAX_MATCH]
    decoders = {}
    for record in {r.sae: r for pair in pairs for r in pair}.values():
        sae = load_sae(data.run_dir.sae_dir(record.key), "cpu")
        decoders[record.sae] = sae.W_dec.detach().float().numpy()

    def truth(r: Dashboards) -> tuple[list[str], list[float]] | None:
        t = r.ground_truth
        return None if t is None else (t.names, t.label_f1)

    out = [
        compare_pair(a.key, b.key, decoders[a.sae], decoders[b.sae], truth(a), truth(b))
        for a, b in pairs
    ]
    return out, notes


def knob_names(data: RunData) -> dict[str, str]:
    """method -> its knob's name ("k", "l1_coefficient"), for labels; from the registry."""
    from saebench import plugins

    methods = plugins.get_methods()
    return {name: spec.knob for name, spec in methods.items()}


def build_report(
    run_dir: str | Path | RunDir,
    out: str | Path | None = None,
    *,
    latents: str = "auto",
    max_saes: int = DEFAULT_MAX_SAES,
    model: Any = None,
    store: Any = None,
    device: Any = "cpu",
    cache_dir: str | Path | None = None,
    images: bool = True,
    echo: Echo = print,
) -> ReportResult:
    """Write the report of `run_dir` (default RUN/report.html) and say what it holds.

    `model`/`store`: the run's loaded ModelHandle and HarvestedStore (the end of a run passes
    them); otherwise they are loaded only when a dashboard is not cached. `latents`: which SAEs
    get dashboards (saebench.report.data.choose_saes)."""
    started = time.time()
    root = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not root.exists():
        raise ConfigError(f"{root.root} has no run.json: pass a run directory `saebench run` wrote")
    timings: dict[str, float] = {}
    data = load_run_data(root)
    keys = choose_saes(data, latents, max_saes)
    sources = _Sources(data, model, store, device, cache_dir, echo)
    timings["read run"] = time.time() - started
    records, computed, notes = dashboards_for(data, keys, sources, echo)
    timings["model and activations"] = sources.load_seconds
    timings["dashboards"] = time.time() - started - sum(timings.values())
    if not keys:
        notes.append(
            "No latent dashboards: "
            + ("none asked for (--latents none)." if latents == "none" else "no SAE is saved.")
        )
    names = knob_names(data)
    comparisons, compare_notes = comparisons_for(data, records)
    timings["comparisons"] = time.time() - started - sum(timings.values())
    plots = embedded_plots(root) if images else []
    timings["images"] = time.time() - started - sum(timings.values())
    page_inputs = PageInputs(
        dashboards=records,
        comparisons=comparisons,
        compare_notes=compare_notes,
        plots=plots,
        latent_status=(
            f"{len(records)} SAE(s) with dashboards ({len(computed)} computed in this build, "
            f"{len(records) - len(computed)} read from the cache); other SAEs: "
            "`saebench report RUN --latents all` or a list."
        ),
        latent_notes=notes,
        knob_names=names,
        started=started,
    )
    text = render_page(data, page_inputs)
    path = Path(out) if out is not None else report_path(root)
    write_text(path, text)
    timings["page"] = time.time() - started - sum(timings.values())
    return ReportResult(
        path=path,
        size_bytes=len(text.encode("utf-8")),
        seconds=time.time() - started,
        dashboards=[r.sae for r in records],
        computed=computed,
        notes=notes,
        timings={k: round(v, 2) for k, v in timings.items()},
    )


def end_of_run_report(run_dir: RunDir, model, store, device, echo: Echo) -> ReportResult | None:
    """The runner's last step: the report from the loaded model and store (no second load).
    SAEBENCH_REPORT picks how much (END_OF_RUN_MODES); None when it is off."""
    mode = os.environ.get(END_OF_RUN_ENV, "full").strip().lower() or "full"
    if mode not in END_OF_RUN_MODES:
        raise ConfigError(
            f"{END_OF_RUN_ENV}={mode!r} is not one of {', '.join(END_OF_RUN_MODES)}; set one "
            f"of them or unset {END_OF_RUN_ENV}"
        )
    if mode == "off":
        return None
    return build_report(
        run_dir,
        latents="auto" if mode == "full" else "none",
        model=model,
        store=store,
        device=device,
        echo=echo,
    )
