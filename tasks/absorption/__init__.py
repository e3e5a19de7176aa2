"""Task `absorption`: feature absorption (Chanin et al. 2024, "A is for Absorption"; SAEBench).

A parent concept (a first letter, a topic) with child tokens (words) is absorbed when the SAE's
latents for the parent fail to fire on a child and a child latent whose decoder carries the
parent direction fires instead. Protocol, per parent value of the chosen hierarchy
(hierarchy.py; gate.py says how it is chosen):

1. Ground truth (probe.py): a logistic probe on raw activations, fitted on the train words'
   tokens; a held-out token is positive when its decision value is > 0.
2. Main latents (ksparse.py): k-sparse probing on the SAE's latents (L1-probe ranking, then
   class-balanced probes on the top k = 1 … 10), with SAEBench's F1-jump rule (0.03), on the
   train words' tokens.
3. Absorption (metric.py): on the held-out words' tokens of the value that its probe calls
   positive, the full-absorption rate (main latents silent, one latent with cos(decoder, probe)
   ≥ 0.025 carries ≥ 40% of the probe projection) and the mean absorption fraction (the share
   of the probe projection the (≤ 3) absorbers with cos ≥ 0.1 carry instead of the main
   latents: partial absorption counts), averaged over values as SAEBench does. Lower is
   better. Values whose raw probe's held-out F1 is ≤ 0.6 are not scored (SAEBench's
   min_GT_probe_f1).
4. A parent latent first: absorption is defined against latents that carry the parent. A value
   whose main latents carry less than MIN_MAIN_SHARE of the probe projection has no parent
   latent, and counts as fully absorbed (rate 1) in the headline rates: no latent carries the
   parent there. `absorption_parent_latent_share` (higher is better) says how many values have
   one. SAEBench averages the raw rates of every value, so a random or shuffled dictionary,
   which has no parent latent, scores a perfect 0; that mean is kept as
   `absorption_saebench_*` (descriptive).

Selection on train, scoring held out: the probe, the main latents and their count are fitted
on the train words only; absorption is scored on words neither has seen (so a latent that
fires for one train word cannot pass for the parent's latent on the scored tokens).

Departures from SAEBench (sae_bench/evals/absorption, v0.6.0):
- the parent hierarchy is the toy world's (topic nouns → topic on the shipped v1 model; first
  letter on worlds with a spelling family), read in the world's own sentences rather than an
  in-context spelling prompt;
- the F1 of the jump rule is measured on the train words (SAEBench: on its test words);
- a latent's probe projection is z_i (d_i · p̂) rather than z_i cos(d_i, p̂) (the same for
  unit-norm decoders; scale-correct for the others), and the token's is (x − b_dec) · p̂
  rather than x · p̂ (what the latents have to account for; b_dec is not a latent);
- probes are sklearn logistic regressions (liblinear L1 with C = 1 / (0.01 n) to rank, as
  SAEBench's mean BCE + 0.01‖w‖₁; codes divided by one global scale) instead of Adam-trained;
- the word split is stratified by parent value (25% held out) and fixed, not a random 20%;
- added diagnostics: `absorption_specific_*` (only latents firing on under half of the value's
  train tokens may absorb: SAEBench's rules count a duplicate of the parent latent as an
  absorber), `absorption_main_share` (M / P) and `absorption_main_f1` (held-out F1 of the
  main latents). On the shipped model every built-in method's absorbers are duplicates of the
  parent latent (absorption_specific_* is 0 everywhere): read the fraction with that in mind.

Validity (gate.py): the chosen hierarchy's raw probe must have its mean held-out F1's 95% lower
end (resampling held-out words) above max(0.6, chance + 0.1), chance = F1 of always answering
positive; otherwise every cell is `uninformative` with the measured number. On the shipped
model at blocks.1.hook_resid_pre: topic 1.00 (lower end 1.00), continent 0.59, language 0.20,
country 0.03 (docs/absorption.md).
"""

from __future__ import annotations

import json

from saebench.errors import SaebenchError
from saebench.hookspecs import hookimpl
from saebench.metrics import finite
from saebench.specs import MetricInfo, ModelHandle, TaskSpec
from saebench_tasks.absorption import config
from saebench_tasks.absorption.gate import choose, validity
from saebench_tasks.absorption.hierarchy import candidates, safe_name
from saebench_tasks.absorption.plot import plot
from saebench_tasks.absorption.probe import passes, threshold
from saebench_tasks.absorption.score import SaeAbsorption, score_sae

__all__ = ["METRICS", "plot", "register_tasks", "run", "supports", "validity"]

OPTIONS = {"hierarchy": "measure this hierarchy (e.g. topic, first_letter, city_continent)"}

METRICS = {
    "absorption_fraction": MetricInfo(
        False,
        floor=0.02,
        headline=True,
        description="mean absorption fraction (full and partial), mean over parent values",
    ),
    "absorption_full_rate": MetricInfo(
        False,
        floor=0.02,
        headline=True,
        description="share of held-out child tokens fully absorbed, mean over parent values",
    ),
    "absorption_specific_fraction": MetricInfo(
        False,
        floor=0.02,
        description="absorption fraction with child-specific absorbers only (diagnostic)",
    ),
    "absorption_specific_full_rate": MetricInfo(
        False,
        floor=0.02,
        description="full-absorption rate with child-specific absorbers only (diagnostic)",
    ),
    # Per value, the raw rate (0 without a parent latent): shown, never compared or gated.
    "absorption_specific_*": MetricInfo(
        None, description="one parent value, child-specific absorbers only (raw rate)"
    ),
    "absorption_fraction_*": MetricInfo(None, description="one parent value (raw rate)"),
    "absorption_full_rate_*": MetricInfo(None, description="one parent value (raw rate)"),
    "absorption_n_main_latents*": MetricInfo(
        None, description="main latents chosen by the F1-jump rule (more than 1: split)"
    ),
    "absorption_saebench_*": MetricInfo(
        None, description="SAEBench's mean over every value (a random dictionary scores 0)"
    ),
    "absorption_parent_latent_share": MetricInfo(
        True,
        floor=0.05,
        headline=True,
        description=f"share of parent values whose main latents carry >= {config.MIN_MAIN_SHARE} "
        "of the probe projection (the rates average these values only)",
    ),
    "absorption_main_share": MetricInfo(
        True, floor=0.03, description="share of the probe projection the main latents carry"
    ),
    "absorption_main_share_*": MetricInfo(
        None, description="share of the probe projection the main latents carry, one value"
    ),
    "absorption_main_f1*": MetricInfo(
        None, description="held-out F1 of the main latents' k-sparse probe"
    ),
    "absorption_raw_probe_f1": MetricInfo(
        None, description="reference: raw-activation probe, held-out F1 (the gate)"
    ),
    "absorption_n_values": MetricInfo(None, description="parent values scored"),
    "absorption_n_tokens": MetricInfo(None, description="held-out true-positive tokens scored"),
}


def metrics_of(result: SaeAbsorption, raw_f1: float) -> dict[str, float]:
    """The cell's metrics: per value, and their unweighted mean over values (SAEBench)."""
    values = result.values
    if not values:
        raise SaebenchError(
            f"no parent value's raw probe has a held-out F1 above {config.MIN_PROBE_F1}"
        )
    metrics = {
        "absorption_raw_probe_f1": raw_f1,
        "absorption_n_values": float(len(values)),
        "absorption_n_tokens": float(sum(v.n_tokens for v in values)),
    }
    with_parent = [v for v in values if v.main_share >= config.MIN_MAIN_SHARE]
    metrics["absorption_parent_latent_share"] = len(with_parent) / len(values)
    rates = {
        "fraction": lambda v: v.fraction,
        "full_rate": lambda v: v.full_rate,
        "specific_fraction": lambda v: v.specific_fraction,
        "specific_full_rate": lambda v: v.specific_full_rate,
    }
    descriptive = {
        "n_main_latents": lambda v: float(v.n_main),
        "main_share": lambda v: v.main_share,
        "main_f1": lambda v: v.main_f1,
    }
    for field, get in (rates | descriptive).items():
        per_value = {safe_name(v.value): get(v) for v in values}
        for name, value in per_value.items():
            metrics[f"absorption_{field}_{name}"] = value
        metrics[f"absorption_{field}"] = sum(per_value.values()) / len(per_value)
        if field in rates:
            # SAEBench's own mean (every value) stays beside ours for comparison; ours counts a
            # value without a parent latent as fully absorbed: no latent carries the parent.
            metrics[f"absorption_saebench_{field}"] = metrics[f"absorption_{field}"]
            metrics[f"absorption_{field}"] = sum(
                get(v) if v.main_share >= config.MIN_MAIN_SHARE else 1.0 for v in values
            ) / len(values)
    return metrics


def save_details(ctx, name: str, result: SaeAbsorption) -> None:
    """Main latents and F1 curves per value, for inspection (artifacts/absorption.json)."""
    ctx.artifacts_dir.mkdir(parents=True, exist_ok=True)
    details = {
        "hierarchy": name,
        "skipped_values": list(result.skipped),
        "values": {
            v.value: {
                "main_latents": main.ids.tolist(),
                "k_sparse_f1": list(main.f1s),
                "n_tokens": v.n_tokens,
                "fraction": v.fraction,
                "full_rate": v.full_rate,
            }
            for v, main in zip(result.values, result.main)
        },
    }
    (ctx.artifacts_dir / "absorption.json").write_text(json.dumps(details, indent=2))


def run(ctx) -> dict:
    truth = choose(ctx).truth
    name = truth.tokens.hierarchy.name
    if not passes(truth):
        raise SaebenchError(
            f"absorption is uninformative at {ctx.hook}: the {name} probe's held-out F1 is "
            f"{truth.f1:.2f} (95% lower end {truth.f1_low:.2f}; needs > "
            f"{threshold(truth.chance):.2f}), so the parent concept is not linearly present for "
            f"unseen child words there"
        )
    result = score_sae(ctx.sae, truth, ctx.device)
    if ctx.artifacts_dir is not None:
        save_details(ctx, name, result)
    return {k: finite(k, v) for k, v in metrics_of(result, truth.f1).items()}


def supports(model: ModelHandle, options: dict[str, str]) -> str | None:
    world = getattr(model, "world", None)
    if world is None:
        return (
            f"{model.name} has no toy world: absorption needs words with known parent "
            "concepts (use --model toyworld)"
        )
    names = [h.name for h in candidates(world, config.N_TEXTS["smoke"])]
    if not names:
        return f"{model.name}'s world has no parent → child hierarchy to measure"
    if "hierarchy" in options and options["hierarchy"] not in names:
        return (
            f"absorption.hierarchy={options['hierarchy']!r}: this world offers {', '.join(names)}"
        )
    return None


@hookimpl
def register_tasks(register):
    register(
        TaskSpec(
            name="absorption",
            description="Feature absorption (Chanin et al. 2024): main latents by k-sparse "
            "probing, full and partial absorption of a parent concept on held-out child words",
            run=run,
            metrics=METRICS,
            supports=supports,
            plot=plot,
            options=OPTIONS,
            validity=validity,
        )
    )
