"""The `synthetic` benchmark: sweep methods on the stream, score every SAE, resume a rerun.

For each method (names come from the caller; nothing here knows a built-in): knobs are swept
around the stream's true L0 (targets = preset.l0_factors × true L0), each (knob, seed) is trained
by the shared engine on the stream itself, scored on held-out samples (`evaluate_sae`), and
written as one row of OUT/rows.csv at once (atomic rewrite), so a rerun with the same OUT skips
every finished row.

Knob search (`plan_knobs`), generic in the method: round 0 guesses (an integer knob is taken to
be the L0 it asks for, as top-k style knobs are: round(target); any other knob starts from the
method's own "default" sweep, on the first seed only, since those values are exploration).
Rounds 1..R then propose, for every target no point is within TARGET_TOLERANCE of, the knob
interpolated (or extrapolated from the two nearest points) linearly in log knob against log L0,
clamped to the method's bounds, and train it on every seed. A `--sweep` given for a method
replaces the search: exactly those knobs, every seed, one round.

Seeds set each SAE's initialisation; every SAE of a method trains on the same batches
(the engine's data_seed) and every SAE is scored on the same held-out samples.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from saebench.errors import ConfigError
from saebench.fileio import write_json, write_text
from saebench.synth.absorption import AbsorptionAccumulator, AbsorptionResult
from saebench.synth.generator import (
    FiringSummary,
    SynthBatch,
    SynthStream,
    build_stream,
    derived_seed,
    measure_firing,
)
from saebench.synth.metrics import MetricAccumulator, SynthMetrics
from saebench.synth.presets import SynthPreset
from saebench.synth.source import StreamSource, finite_store

ROWS_FILE, SETTINGS_FILE, STREAM_FILE, REPORT_FILE = (
    "rows.csv",
    "bench.json",
    "stream.json",
    "results.md",
)
TARGET_TOLERANCE = 0.15  # a target L0 is met by a point within ±15% of it
FLAT_LOG_L0 = 0.05  # two points closer than this in log L0 give no slope
MAX_LOG_STEP = math.log(10)  # a proposal moves at most 10× from the nearest knob
DEFAULT_ROUNDS = 2
EVAL_SEED, FIRING_SEED = "synth-eval", "synth-firing"


@dataclass(frozen=True)
class BenchRow:
    """One trained SAE's scores (NaN metrics and an `error` when it failed)."""

    method: str
    knob: float
    seed: int
    round: int
    l0: float
    mcc: float
    uniqueness: float
    precision: float
    recall: float
    f1: float
    explained_variance: float
    shrinkage: float
    dead_latents: int
    dead_fraction: float
    absorption_full: float
    absorption_partial: float
    absorbed_fraction: float
    absorption_edges: int
    train_fvu: float
    train_seconds: float
    train_samples: int
    eval_samples: int
    error: str = ""

    @property
    def key(self) -> tuple[str, float, int]:
        return (self.method, float(self.knob), int(self.seed))

    @property
    def ok(self) -> bool:
        return not self.error


ROW_FIELDS = [f.name for f in fields(BenchRow)]
_INT_FIELDS = {"seed", "round", "dead_latents", "absorption_edges", "train_samples", "eval_samples"}


def rows_to_csv(rows: Sequence[BenchRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return buffer.getvalue()


def rows_from_csv(text: str) -> list[BenchRow]:
    rows = []
    for record in csv.DictReader(io.StringIO(text)):
        values: dict[str, Any] = {}
        for name in ROW_FIELDS:
            raw = record.get(name, "")
            if name in ("method", "error"):
                values[name] = raw or ""
            elif name in _INT_FIELDS:
                values[name] = int(float(raw)) if raw not in ("", "nan") else 0
            else:
                values[name] = float(raw) if raw != "" else math.nan
        rows.append(BenchRow(**values))
    return rows


@dataclass(frozen=True)
class StreamCard:
    """What a run records about its stream: the preset, the config and the measured sparsity."""

    preset: str
    config: dict
    firing: dict  # FiringSummary.to_json(): true_l0, true_l0_se, width, true_l0_top, n_samples

    @property
    def true_l0(self) -> float:
        return float(self.firing["true_l0"])

    @property
    def true_l0_top(self) -> float:
        return float(self.firing["true_l0_top"])


class BenchDir:
    """OUT/: bench.json (the settings a rerun must match), stream.json, rows.csv, results.md."""

    def __init__(self, out: Path):
        self.out = Path(out)

    def check_settings(self, settings: dict) -> None:
        """Refuse to mix runs: a rerun resumes only with the settings it started with."""
        path = self.out / SETTINGS_FILE
        if path.exists():
            before = json.loads(path.read_text())
            if before != json.loads(json.dumps(settings)):
                changed = sorted(
                    k for k in set(before) | set(settings) if before.get(k) != settings.get(k)
                )
                raise ConfigError(
                    f"{self.out} holds a synthetic run with other settings ({', '.join(changed)} "
                    "differ); rerun with the same options to resume it, or pass a new --out"
                )
        else:
            write_json(path, settings)

    def load_rows(self) -> list[BenchRow]:
        path = self.out / ROWS_FILE
        return rows_from_csv(path.read_text()) if path.exists() else []

    def save_rows(self, rows: Sequence[BenchRow]) -> None:
        ordered = sorted(rows, key=lambda r: (r.method, r.knob, r.seed))
        write_text(self.out / ROWS_FILE, rows_to_csv(ordered))

    def load_card(self, preset: SynthPreset) -> StreamCard | None:
        path = self.out / STREAM_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        if data.get("config") != json.loads(json.dumps(preset.stream.to_json())):
            return None
        return StreamCard(data["preset"], data["config"], data["firing"])

    def save_card(self, card: StreamCard) -> None:
        write_json(self.out / STREAM_FILE, asdict(card))


class HeldOut:
    """The held-out samples every SAE of a run is scored on: drawn with one seed, in batches,
    kept in memory when they fit (features × samples <= CACHE_ELEMENTS), else redrawn for each
    SAE (the same samples: the generator is reseeded)."""

    CACHE_ELEMENTS = 2**28  # 1 GiB of float32 feature activations

    def __init__(self, stream: SynthStream, n_samples: int, seed: int, batch: int = 4096):
        self.stream, self.n_samples, self.seed, self.batch = stream, n_samples, seed, batch
        fits = n_samples * stream.n_features <= self.CACHE_ELEMENTS
        self.cached: list[SynthBatch] | None = list(self._draw()) if fits else None

    def _draw(self) -> Iterator[SynthBatch]:
        generator = torch.Generator(device=self.stream.device).manual_seed(self.seed % 2**63)
        done = 0
        while done < self.n_samples:
            size = min(self.batch, self.n_samples - done)
            yield self.stream.sample_with(size, generator)
            done += size

    def batches(self) -> Iterator[SynthBatch]:
        return iter(self.cached) if self.cached is not None else self._draw()


@torch.no_grad()
def evaluate_sae(sae, held_out: HeldOut) -> tuple[SynthMetrics, AbsorptionResult]:
    """Every metric and the absorption of `sae` on the held-out samples."""
    stream = held_out.stream
    sae = sae.to(stream.device).eval()
    decoder = sae.W_dec.detach()
    metrics = MetricAccumulator(decoder, stream.directions)
    absorbed = AbsorptionAccumulator(decoder, stream.directions, stream.hierarchy)
    for sample in held_out.batches():
        latents = sae.encode(sample.acts)
        metrics.add(sample.acts, sae.decode(latents), latents, sample.features)
        absorbed.add(latents, sample.features)
    return metrics.result(), absorbed.result()


def _points(rows: Sequence[BenchRow], method: str) -> list[tuple[float, float]]:
    """(knob, mean L0 over seeds) of a method's finished rows, by knob."""
    by_knob: dict[float, list[float]] = {}
    for row in rows:
        if row.method == method and row.ok and math.isfinite(row.l0):
            by_knob.setdefault(float(row.knob), []).append(row.l0)
    return sorted((k, sum(v) / len(v)) for k, v in by_knob.items())


def _clamp_knob(method, value: float) -> float:
    if method.knob_min is not None:
        value = max(value, float(method.knob_min))
    if method.knob_max is not None:
        value = min(value, float(method.knob_max))
    if method.knob_is_integer:
        value = float(max(1, round(value)))
    return value


def _knob_for(points: list[tuple[float, float]], target: float) -> float | None:
    """The knob interpolated linearly in (log L0, log knob) between the two points nearest the
    target in log L0 (extrapolated when it is outside, at most MAX_LOG_STEP from the nearest
    point); None when the points cannot tell (fewer than two, or L0 flat in the knob)."""
    usable = [(k, l0) for k, l0 in points if k > 0 and l0 > 0]
    if len(usable) < 2:
        return None
    log_t = math.log(target)
    nearest = sorted(usable, key=lambda p: abs(math.log(p[1]) - log_t))
    (k1, l1), (k2, l2) = (
        nearest[0],
        next(
            (p for p in nearest[1:] if not math.isclose(math.log(p[1]), math.log(nearest[0][1]))),
            (None, None),
        ),
    )
    if k2 is None or l2 is None or abs(math.log(l2 / l1)) < FLAT_LOG_L0:
        return None  # L0 did not move with the knob: the points cannot say where to go
    slope = (math.log(k2) - math.log(k1)) / (math.log(l2) - math.log(l1))
    step = max(-MAX_LOG_STEP, min(MAX_LOG_STEP, slope * (log_t - math.log(l1))))
    return math.exp(math.log(k1) + step)


def _meets(l0: float, target: float, tolerance: float = TARGET_TOLERANCE) -> bool:
    return l0 > 0 and abs(math.log(l0 / target)) <= math.log(1 + tolerance)


def meeting_targets(points: list[tuple[float, float]], targets: Sequence[float]) -> list[float]:
    """The knobs whose mean L0 is within the tolerance of some target."""
    return [k for k, l0 in points if any(_meets(l0, t) for t in targets)]


def plan_knobs(
    method, targets: Sequence[float], points: list[tuple[float, float]], tolerance: float
) -> list[float]:
    """Knobs to train next for the targets not yet met (see the module docstring)."""
    if not points:
        if method.knob_is_integer:
            guesses = [_clamp_knob(method, t) for t in targets]
        else:
            guesses = [float(k) for k in method.sweeps.get("default") or []]
            if not guesses:
                raise ConfigError(
                    f"{method.name} has no 'default' sweep to start its knob search from; pass "
                    f"--sweep {method.name}=v1,v2,..."
                )
        return sorted(set(guesses))
    trained = {k for k, _ in points}
    proposals = set()
    for target in targets:
        if any(_meets(l0, target, tolerance) for _, l0 in points):
            continue
        knob = _knob_for(points, target)
        if knob is None or not math.isfinite(knob):
            continue
        knob = _clamp_knob(method, float(f"{knob:.4g}"))
        if knob not in trained:
            proposals.add(knob)
    return sorted(proposals)


@dataclass(frozen=True)
class BenchPlan:
    """What one `run_bench` call does."""

    methods: list[str]
    preset: SynthPreset
    seeds: list[int]
    out: Path
    device: str = "cpu"
    sweeps: dict[str, list[float]] | None = None  # method -> exact knobs (no search)
    rounds: int = DEFAULT_ROUNDS

    def settings(self) -> dict:
        """What a resumed run must share with the first one (not the method list or the seeds:
        a rerun may add either, and finished rows are skipped). The device type is included:
        CPU and CUDA generators draw different samples from the same seed."""
        return {
            "preset": self.preset.to_json(),
            "rounds": self.rounds,
            "device": str(self.device).split(":")[0],
        }


@dataclass(frozen=True)
class BenchResult:
    card: StreamCard
    rows: list[BenchRow]
    trained: int  # SAEs trained by this call (the rest were resumed)
    seconds: float


def prepare_stream(plan: BenchPlan, bench_dir: BenchDir, echo) -> tuple[SynthStream, StreamCard]:
    started = time.time()
    stream = build_stream(plan.preset.stream, plan.device)
    card = bench_dir.load_card(plan.preset)
    if card is None:
        firing: FiringSummary = measure_firing(
            stream,
            plan.preset.firing_samples,
            plan.preset.d_sae,
            derived_seed(FIRING_SEED, plan.preset.stream.seed),
        )
        card = StreamCard(plan.preset.name, plan.preset.stream.to_json(), firing.to_json())
        bench_dir.save_card(card)
    echo(
        f"stream: {stream.n_features:,} features in {stream.d} dims, true L0 {card.true_l0:.2f} "
        f"(top {plan.preset.d_sae:,} features: {card.true_l0_top:.2f}), "
        f"built in {time.time() - started:.0f}s"
    )
    return stream, card


def run_bench(plan: BenchPlan, echo: Callable[[str], None] = print) -> BenchResult:
    """Train and score every method of the plan (resuming OUT), write rows.csv."""
    from saebench import plugins
    from saebench.training import TrainConfig, train_group

    plugins.load_plugins()
    methods = [plugins.get_method(name) for name in plan.methods]
    for name, knobs in (plan.sweeps or {}).items():
        if name not in plan.methods:
            raise ConfigError(f"--sweep {name}=... names a method not in --methods; add it there")
        for knob in knobs:
            try:
                plugins.get_method(name).check_knob(knob)
            except ValueError as error:  # check_knob's message names the fix
                raise ConfigError(str(error)) from None
    started = time.time()
    bench_dir = BenchDir(plan.out)
    bench_dir.check_settings(plan.settings())
    stream, card = prepare_stream(plan, bench_dir, echo)
    preset = plan.preset
    targets = [f * card.true_l0 for f in preset.l0_factors]
    source: Any = (
        finite_store(stream, preset.store_samples)
        if preset.store_samples
        else StreamSource(stream, preset.train_samples)
    )
    cfg = TrainConfig(
        d_sae=preset.d_sae,
        total_tokens=preset.train_samples,
        batch_size=preset.batch_size,
        lr=preset.lr,
        dead_window_tokens=preset.dead_window,
        progress=False,
    )
    rows = bench_dir.load_rows()
    done = {row.key for row in rows if row.ok}
    rows = [row for row in rows if row.ok]  # failed rows are retried
    held_out = HeldOut(
        stream, preset.eval_samples, derived_seed(EVAL_SEED, preset.stream.seed), preset.eval_batch
    )
    trained = 0
    for method in methods:
        given = (plan.sweeps or {}).get(method.name)
        max_rounds = 1 if given is not None else 1 + plan.rounds
        for round_ in range(max_rounds):
            if given is not None:
                knobs = [method.check_knob(k) for k in given]
            else:
                # Only earlier rounds' rows: a resumed run proposes exactly what the first did.
                earlier = _points([row for row in rows if row.round < round_], method.name)
                knobs = plan_knobs(method, targets, earlier, TARGET_TOLERANCE)
                if round_ > 0:
                    # Exploration points (first seed only) that already meet a target are
                    # trained on the other seeds too, so every seed's curve reaches it.
                    knobs = sorted(set(knobs) | set(meeting_targets(earlier, targets)))
            if not knobs:
                break
            explore = given is None and round_ == 0 and not method.knob_is_integer
            seeds = plan.seeds[:1] if explore else plan.seeds
            members = [
                (k, s) for k in knobs for s in seeds if (method.name, float(k), s) not in done
            ]
            if not members:
                continue  # resumed: this round is finished
            echo(
                f"{method.name} round {round_}: {method.knob}="
                f"{','.join(f'{k:g}' for k in knobs)} × {len(seeds)} seed(s)"
            )
            t0 = time.time()
            for member in train_group(method, members, source, cfg, plan.device):
                row = _score(method.name, member, round_, held_out, time.time() - t0)
                rows.append(row)
                done.add(row.key)
                trained += 1
                bench_dir.save_rows(rows)
                echo(
                    f"  {method.knob}={row.knob:g} seed {row.seed}: L0 {row.l0:.2f} "
                    f"F1 {row.f1:.3f} MCC {row.mcc:.3f} EV {row.explained_variance:.3f}"
                    + (f" FAILED: {row.error}" if row.error else "")
                )
    return BenchResult(card, rows, trained, time.time() - started)


def _score(method: str, member, round_: int, held_out: HeldOut, seconds: float) -> BenchRow:
    nan = math.nan
    if member.error is not None:
        blank: dict[str, Any] = {
            name: (0 if name in _INT_FIELDS else nan)
            for name in ROW_FIELDS
            if name not in ("method", "knob", "seed", "round", "error")
        }
        blank["train_seconds"] = seconds
        return BenchRow(
            method=method,
            knob=float(member.knob),
            seed=int(member.seed),
            round=round_,
            error=f"{type(member.error).__name__}: {member.error}",
            **blank,
        )
    metrics, absorbed = evaluate_sae(member.sae, held_out)
    return BenchRow(
        method=method,
        knob=float(member.knob),
        seed=int(member.seed),
        round=round_,
        l0=metrics.l0,
        mcc=metrics.mcc,
        uniqueness=metrics.uniqueness,
        precision=metrics.precision,
        recall=metrics.recall,
        f1=metrics.f1,
        explained_variance=metrics.explained_variance,
        shrinkage=metrics.shrinkage,
        dead_latents=metrics.dead_latents,
        dead_fraction=metrics.dead_fraction,
        absorption_full=absorbed.full,
        absorption_partial=absorbed.partial,
        absorbed_fraction=absorbed.absorbed_fraction,
        absorption_edges=absorbed.n_edges,
        train_fvu=float(member.log.get("fvu") or nan),
        train_seconds=float(member.log.get("seconds") or seconds),
        train_samples=int(member.log.get("tokens_seen") or 0),
        eval_samples=metrics.n_samples,
    )
