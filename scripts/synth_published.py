#!/usr/bin/env python
"""The `synthetic` benchmark at SynthSAEBench-16k's published size, on a GPU, with the published
table beside ours (docs/synthetic.md).

    python scripts/synth_published.py probe                    # ~1-2 min: sizes the run
    python scripts/synth_published.py run --out DIR [options]  # the sweep, resumable

`probe` builds the 16,384 × 768 stream, times a batch of the stream, training steps of each
method and one exact Hungarian MCC at width 4,096, and prints what a run with the given options
would cost, so a short GPU loan is spent on a run that fits. `run` is `saebench synthetic
--preset published` with the budget options, then the comparison at the paper's reporting
points L0 = 25 and 20 (written to DIR/published.md).

The paper trains 200M samples per SAE (195k steps); a lent GPU of 15 minutes cannot, so the
default here is 20M samples and one seed, and the comparison says so. Rerun with the same --out
to resume (finished SAEs are skipped), e.g. to add seeds or methods on a later loan.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

# F1, MCC, uniqueness, explained variance at L0 = 25 and 20 (SynthSAEBench, Chanin &
# Garriga-Alonso 2026, table "Raw results for SynthSAEBench-16k"; means of their seeds).
PUBLISHED = {
    25: {
        "batchtopk": (0.7316, 0.7574, 0.9837, 0.7923),
        "matryoshka": (0.8793, 0.7927, 0.9987, 0.7792),
        "l1": (0.5562, 0.6039, 0.8976, 0.7654),
        "jumprelu": (0.7317, 0.7527, 0.9885, 0.7951),
    },
    20: {
        "batchtopk": (0.8183, 0.7526, 0.9760, 0.7889),
        "matryoshka": (0.8601, 0.7455, 0.9874, 0.7699),
        "l1": (0.5777, 0.5834, 0.8528, 0.7501),
        "jumprelu": (0.8241, 0.7434, 0.9781, 0.7906),
    },
}
METRICS = ("f1", "mcc", "uniqueness", "explained_variance")
DEFAULT_METHODS = "matryoshka,batchtopk,jumprelu,l1"


def probe(args) -> None:
    from saebench import plugins
    from saebench.synth.generator import build_stream, measure_firing
    from saebench.synth.metrics import mcc
    from saebench.synth.presets import get_synth_preset
    from saebench.synth.source import StreamSource
    from saebench.training import TrainConfig, train_group

    device = torch.device(args.device)
    preset = get_synth_preset(args.preset)
    started = time.time()
    stream = build_stream(preset.stream, device)
    print(f"stream built in {time.time() - started:.1f}s on {device}")
    firing = measure_firing(stream, min(200_000, preset.firing_samples), preset.d_sae, seed=1)
    print(
        f"true L0 {firing.true_l0:.2f} (published preset; paper ≈ 34), top {preset.d_sae:,}: "
        f"{firing.true_l0_top:.2f} (≈ 25)"
    )
    g = torch.Generator(device=device).manual_seed(0)
    stream.sample_with(1024, g)
    _sync(device)
    t = time.time()
    for _ in range(20):
        stream.sample_with(1024, g)
    _sync(device)
    batch_s = (time.time() - t) / 20
    print(f"one batch of 1,024 samples: {batch_s * 1e3:.1f} ms")
    plugins.load_plugins()
    steps = 200
    source = StreamSource(stream, steps * preset.batch_size)
    step_s = {}
    for name in args.methods.split(","):
        method = plugins.get_method(name)
        knob = round(firing.true_l0_top) if method.knob_is_integer else method.sweeps["default"][0]
        cfg = TrainConfig(
            d_sae=preset.d_sae, total_tokens=steps * preset.batch_size, lr=preset.lr, progress=False
        )
        t = time.time()
        train_group(method, [(knob, 0)], source, cfg, device)
        _sync(device)
        step_s[name] = (time.time() - t) / steps
        print(f"{name}: {step_s[name] * 1e3:.1f} ms per step (one SAE, batch and data included)")
    t = time.time()
    noisy = stream.directions[: preset.d_sae] + 0.05 * torch.randn(
        preset.d_sae, stream.d, device=device
    )
    value = mcc(noisy, stream.directions)
    mcc_s = time.time() - t
    print(
        f"Hungarian MCC at {preset.d_sae:,} × {stream.n_features:,}: {mcc_s:.1f}s "
        f"(value {value:.3f} for a noisy copy of the true directions)"
    )
    steps_run = args.train_samples // preset.batch_size
    per_sae = {n: s * steps_run + mcc_s for n, s in step_s.items()}
    knobs = 4
    total = sum(per_sae.values()) * knobs * args.seeds
    print(
        f"estimate for --train-samples {args.train_samples:,} --seeds {args.seeds}: about "
        f"{total / 60:.0f} min for {knobs} knobs per method (more if the knob search needs rounds)"
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args) -> None:
    from saebench.fileio import write_text
    from saebench.synth.bench import REPORT_FILE, BenchPlan, run_bench
    from saebench.synth.presets import get_synth_preset
    from saebench.synth.report import markdown_report

    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    preset = get_synth_preset(args.preset).with_overrides(
        train_samples=args.train_samples, eval_samples=args.eval_samples
    )
    sweeps = {}
    for item in args.sweep or []:
        name, _, values = item.partition("=")
        sweeps[name] = [float(v) for v in values.split(",")]
    plan = BenchPlan(
        methods=names,
        preset=preset,
        seeds=list(range(args.seeds)),
        out=args.out,
        device=args.device,
        sweeps=sweeps,
        rounds=args.rounds,
    )
    result = run_bench(plan)
    write_text(
        args.out / REPORT_FILE, markdown_report(result.rows, result.card, names, result.seconds)
    )
    comparison = compare(result.rows, names, preset.train_samples)
    write_text(args.out / "published.md", comparison)
    print(comparison)


def compare(rows, names, train_samples: int) -> str:
    from saebench.synth.report import format_interval, value_at

    lines = [
        "# Ours vs SynthSAEBench-16k (published)",
        "",
        f"Ours: {train_samples:,} samples per SAE (the paper: 200,000,000), saebench's method "
        "recipes and training engine; values interpolated in log L0 (— where a sweep does not "
        "bracket the L0).",
        "",
    ]
    for l0, published in PUBLISHED.items():
        lines += [
            f"## L0 = {l0}",
            "",
            "| method | F1 ours | F1 paper | MCC ours | MCC paper | uniq. ours | uniq. paper | EV ours | EV paper |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name in names:
            ours = [format_interval(value_at(rows, name, m, l0), 3) for m in METRICS]
            paper = published.get(name)
            theirs = [f"{v:.3f}" for v in paper] if paper else ["—"] * 4
            cells = [c for pair in zip(ours, theirs) for c in pair]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["probe", "run"])
    parser.add_argument("--out", type=Path, default=Path("results/synthetic-published"))
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--train-samples", type=int, default=20_000_000)
    parser.add_argument("--eval-samples", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sweep", action="append", help="METHOD=v1,v2 (exact knobs, no search)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--preset", default="published", help="published (default); smoke/cpu for a dry run on CPU"
    )
    args = parser.parse_args()
    if args.command == "probe":
        probe(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
