"""Task `ioi`: SAEs against supervised IOI dictionaries (Makelov, Lange & Nanda 2024).

Position: the final prompt token (where the IO name is predicted), at layer ctx.hook.
Supervised dictionary (the reference), fitted on split="train" prompts: u_{i,v} = E[a | attr_i=v]
− E[a] for i ∈ {IO, S, Pos (ABBA/BABA)}; â = E[a] + Σ_i u_{i,v_i}. Scored on split="heldout"
prompts (name pairs never seen together in training; the toy world has no disjoint name set, so
every name occurs in training, just not in that pair; the paper holds names out). Only prompts
the clean model answers correctly (argmax = IO) are scored. For a real tokenizer a name is its
first token of " name".

(a) Approximation (how much of the IOI computation the reconstruction carries; not control or
    interpretability). Sufficiency: LD = logit(IO) − logit(S); replace a by â;
    (mean LD_rec − mean LD_meanabl) / (mean LD_clean − mean LD_meanabl)  (→ 1 good).
    Necessity: replace a by a − â + E[â]; same ratio (→ 0 good).
(b) Sparse controllability: counterfactual prompt with the IO and S names exchanged (IO = A → B,
    S = B → A; a name absent from the prompt cannot be copied by the model's name movers; the
    paper changes one attribute at a time: not yet here, see issue 15). Supervised edit
    a − u_{IO,A} + u_{IO,B} − u_{S,B} + u_{S,A}; SAE edit: the k latents whose exchange best
    matches the code difference (largest |z' − z| · ‖W_dec row‖), copied from the
    counterfactual's code, with the SAE error term kept. Edit accuracy: share where the edited
    run's argmax equals the counterfactual run's argmax, as a curve over k = 1, 2, 4, …,
    MAX_EDIT_K (a fixed grid, so seeds and dictionaries report the same points; it is flat past
    2·L0, since an edit between two codes of L0 latents changes at most 2·L0 of them), and k50, the first k of the curve whose accuracy is halfway from what
    erasing alone achieves (ioi_ablation_edit_acc) to the whole-activation patch (the ceiling):
    0.5 would sit below the erase floor on the toy model (0.67); a curve that never gets there
    records twice its end (ioi_sae_edit_reaches_half = 0), so the cell still counts. The calibration layer compares the curve with random
    at the same L0. The latents are picked per prompt from the two codes, never from the edited
    outcome, so there is no selection to hold out.
(c) Interpretability: "latent > 0" as a predicate for each IO name, S name and order value; the
    best latent per value is chosen by MCC on training prompts and its MCC measured on held-out
    ones (an always-on latent scores 0, where F1 gave it 2/3 at base rate ½; F1, precision and
    recall are kept as descriptive numbers). An attribute not linearly decodable from the raw
    activations at the site is absent there (gate ioi_present_*) and its MCC is not scored.

Chance (MetricInfo.chance): 0.5 for the clean accuracy (a guess between the two names in the
prompt), 0 for MCC. The edit accuracies declare
none: their floor is what erasing alone achieves, measured at the hook and reported beside them
as ioi_ablation_edit_acc (0.67 on the toy model), not a constant.
SAE-independent references, reported with every cell: ioi_residual_patch_edit_acc, the whole
final-token activation replaced by the counterfactual's (the ceiling of any edit at this site),
and ioi_ablation_edit_acc, the activation replaced by its training mean (an edit that only
erases; on the toy model it already gives the counterfactual's answer in most prompts).

Validity gates (`validity`, SAE-independent, once per model and hook): the lower end of a 95%
percentile bootstrap over held-out prompts (saebench.stats.bootstrap_interval) must exceed
chance + GATE_MARGIN, where chance = max(rate at which the clean run already gives the
counterfactual's answer, rate with the activation mean-ablated), measured at the hook.
- ioi_residual_patch_edit_acc governs the task: if patching the whole activation cannot flip
  the answer beyond chance, no SAE edit can, and the information the task reads is not at the
  final token at this hook; every cell is `uninformative`.
- ioi_supervised_edit_acc governs the SAE edit metrics: if the supervised IO/S directions cannot
  flip it, the k-latent edits have no reference to be compared with.
- ioi_present_{io,s,pos}: a logistic-regression probe on the raw final-token activations
  (train prompts) must decode the attribute on held-out prompts beyond the majority rate by
  PRESENCE_MARGIN (95% lower end); governs that attribute's MCC and the mean.
A model that does not do IOI (too few usable prompts) closes the first gate instead of raising;
`run` called directly still refuses it.
"""

from __future__ import annotations

import torch

from saebench.hookspecs import hookimpl
from saebench.metrics import finite
from saebench.specs import MetricInfo, ModelHandle, TaskSpec
from saebench_tasks.ioi.config import MAX_EDIT_K, NAME_GUESS  # noqa: F401  (re-exported)
from saebench_tasks.ioi.prepare import _ratio, gate, prepare, validity
from saebench_tasks.ioi.scoring import (
    edit_curve_ks,
    interpretability,
    sparse_edit,
)

__all__ = [
    "METRICS",
    "edit_curve_ks",
    "gate",
    "interpretability",
    "prepare",
    "register_tasks",
    "run",
    "sparse_edit",
    "supports",
    "validity",
]

METRICS = {
    "ioi_model_accuracy": MetricInfo(
        None, description="clean accuracy on held-out IOI prompts", chance=NAME_GUESS
    ),
    # Approximation metrics (how much of the IOI computation the reconstruction carries), not
    # control or interpretability.
    "ioi_sae_sufficiency": MetricInfo(True, floor=0.05, description="approximation"),
    "ioi_sae_necessity": MetricInfo(False, floor=0.05, description="approximation"),
    "ioi_supervised_sufficiency": MetricInfo(None, description="approximation"),
    "ioi_supervised_necessity": MetricInfo(None, description="approximation"),
    "ioi_sae_edit_acc_k*": MetricInfo(
        True, floor=0.05, description="read against ioi_ablation_edit_acc (erasing alone)"
    ),
    "ioi_sae_edit_k50": MetricInfo(
        False,
        floor=0.5,
        description="first k of the curve halfway from erasing to the whole patch "
        "(twice the curve's end when none is)",
    ),
    "ioi_sae_edit_reaches_half": MetricInfo(
        None, description="1 if some k of the curve gets halfway from erasing to the whole patch"
    ),
    "ioi_supervised_edit_acc": MetricInfo(None),
    "ioi_residual_patch_edit_acc": MetricInfo(
        None, description="whole activation from the counterfactual"
    ),
    "ioi_ablation_edit_acc": MetricInfo(
        None, description="mean-ablated activation: the edit accuracy of erasing"
    ),
    "ioi_sae_edit_magnitude_k*": MetricInfo(None, description="‖removed part‖ / ‖reconstruction‖"),
    # Interpretability: MCC of "latent > 0" as a predicate (an always-on latent scores 0).
    "ioi_mcc_*": MetricInfo(True, floor=0.03, chance=0.0),
    "ioi_raw_probe_acc_*": MetricInfo(None, description="linear probe on raw activations"),
    "ioi_f1_*": MetricInfo(None, description="descriptive: F1 rewards always-on latents"),
    "ioi_precision_*": MetricInfo(None),
    "ioi_recall_*": MetricInfo(None),
}


@torch.no_grad()
def run(ctx) -> dict:
    prep = prepare(ctx)
    sae, acts = ctx.sae, prep["acts"]
    metrics = dict(prep["metrics"])
    ld_sup, ld_sup_nec = prep["ld_supervised"]
    metrics["ioi_supervised_sufficiency"] = _ratio(ld_sup, prep["ld_clean"], prep["ld_mean"])
    metrics["ioi_supervised_necessity"] = _ratio(ld_sup_nec, prep["ld_clean"], prep["ld_mean"])
    sae_acts = acts.to(ctx.device)
    reconstruction = sae(sae_acts)
    mean_reconstruction = sae(prep["train_acts"].to(ctx.device)).mean(0)
    ld_rec = prep["logit_diff"](prep["run_with"](reconstruction))
    ld_nec = prep["logit_diff"](prep["run_with"](sae_acts - reconstruction + mean_reconstruction))
    metrics["ioi_sae_sufficiency"] = _ratio(ld_rec, prep["ld_clean"], prep["ld_mean"])
    metrics["ioi_sae_necessity"] = _ratio(ld_nec, prep["ld_clean"], prep["ld_mean"])
    cf_acts = prep["cf_acts"].to(ctx.device)
    codes = sae.encode(sae_acts), sae.encode(cf_acts)  # once for every k
    # Halfway from what erasing alone achieves to the whole-activation patch (the ceiling).
    floor, ceiling = (metrics[k] for k in ("ioi_ablation_edit_acc", "ioi_residual_patch_edit_acc"))
    threshold = floor + 0.5 * max(ceiling - floor, 0.0)
    ks = edit_curve_ks(codes[0].shape[-1])
    k50 = None
    for k in ks:
        edited, magnitude = sparse_edit(sae, sae_acts, cf_acts, k, codes)
        logits = prep["run_with"](edited)
        accuracy = (logits.argmax(-1) == prep["cf_target"]).double().mean().item()
        metrics[f"ioi_sae_edit_acc_k{k}"] = accuracy
        metrics[f"ioi_sae_edit_magnitude_k{k}"] = magnitude.double().mean().item()
        if k50 is None and accuracy >= threshold and ceiling > floor:
            k50 = k
    metrics["ioi_sae_edit_reaches_half"] = float(k50 is not None)
    # Not reached within the curve: censored at twice its end, so the cell still counts (as
    # worse than any SAE that reaches it) in matched-L0 comparisons.
    metrics["ioi_sae_edit_k50"] = float(k50 if k50 is not None else 2 * ks[-1])
    metrics.update(
        interpretability(
            prep["train"],
            sae.encode(prep["train_acts"].to(ctx.device)),
            prep["evaluation"],
            codes[0],
        )
    )
    return {name: finite(name, value) for name, value in metrics.items()}


def supports(model: ModelHandle, options: dict[str, str]) -> str | None:
    if getattr(model, "world", None) is None:
        return (
            f"{model.name} has no toy world: the ioi task needs labelled IOI prompts "
            "(use --model toyworld)"
        )
    if not model.is_causal_lm:
        return f"{model.name} is not a causal language model"
    return None


@hookimpl
def register_tasks(register):
    register(
        TaskSpec(
            name="ioi",
            description="IOI supervised dictionaries vs the SAE: sufficiency/necessity, sparse "
            "edits, best-latent F1 (Makelov et al. 2024)",
            run=run,
            metrics=METRICS,
            supports=supports,
            validity=validity,
        )
    )
