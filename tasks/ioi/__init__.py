"""Task `ioi`: SAEs against supervised IOI dictionaries (Makelov, Lange & Nanda 2024).

Position: the final prompt token (where the IO name is predicted), at layer ctx.hook.
Supervised dictionary (the reference), fitted on split="train" prompts: the additive model
â = c + Σ_i u_{i,v_i} for i ∈ {IO, S, Pos (ABBA/BABA)}, fitted jointly by least squares on the
one-hot design (the paper's alternative to the class means u_{i,v} = E[a | attr_i=v] − E[a];
with a few training prompts per name, a class mean of IO = A also carries the S names those
prompts happened to have, and an IO-only edit built from it moves S too). Scored on split="heldout"
prompts (name pairs never seen together in training; the toy world has no disjoint name set, so
every name occurs in training, just not in that pair; the paper holds names out). Only prompts
the clean model answers correctly (argmax = IO) are scored. For a real tokenizer a name is its
first token of " name".

(a) Approximation (how much of the IOI computation the reconstruction carries; not control or
    interpretability). Sufficiency: LD = logit(IO) − logit(S); replace a by â;
    (mean LD_rec − mean LD_meanabl) / (mean LD_clean − mean LD_meanabl)  (→ 1 good).
    Necessity: replace a by a − â + E[â]; same ratio (→ 0 good).
(b) Sparse controllability, one attribute at a time (tasks/ioi/counterfactuals.py): for each of
    IO (IO → a third name), S (S → the IO's name; in a two-name prompt IO then becomes the other
    name) and Pos (the first clause's order flipped) a counterfactual prompt and the answer an
    edit of that attribute alone should give on the base prompt (IO: the new name; S and Pos:
    the base's S name). Supervised edit: a − u_{attr,v} + u_{attr,v'}. SAE edit: the k latents
    whose exchange best matches the code difference (largest |z' − z| · ‖W_dec row‖), copied
    from the counterfactual's code, with the SAE error term kept. Edit accuracy (share of
    prompts whose edited argmax is the target), per attribute, as a curve over k = 1, 2, 4, …,
    MAX_EDIT_K (a fixed grid, so seeds and dictionaries report the same points; it is flat past
    2·L0, since an edit between two codes of L0 latents changes at most 2·L0 of them), and k50,
    the first k of the curve whose accuracy is halfway from what erasing alone achieves
    (ioi_<attr>_ablation_edit_acc) to the whole-activation patch (the ceiling); a curve that
    never gets there records twice its end (ioi_<attr>_sae_edit_reaches_half = 0), so the cell
    still counts. The calibration layer compares the curve with random at the same L0. The
    latents are picked per prompt from the two codes, never from the edited outcome, so there
    is no selection to hold out. Only prompts whose base and three counterfactuals the clean
    model answers as expected are scored (ioi_prompts_scored).
(c) Interpretability: "latent > 0" as a predicate for each IO name, S name and order value; the
    best latent per value is chosen by MCC on training prompts and its MCC measured on held-out
    ones (an always-on latent scores 0, where F1 gave it 2/3 at base rate ½; F1, precision and
    recall are kept as descriptive numbers). An attribute not linearly decodable from the raw
    activations at the site is absent there (gate ioi_present_*) and its MCC is not scored.

Chance (MetricInfo.chance): 0.5 for the clean accuracy (a guess between the two names in the
prompt), 0 for MCC. The edit accuracies declare none: their floor is what erasing alone
achieves, measured at the hook and reported beside them as ioi_<attr>_ablation_edit_acc.
SAE-independent references, per attribute, reported with every cell:
ioi_<attr>_residual_patch_edit_acc, the whole final-token activation replaced by the
counterfactual's (the ceiling of any edit at this site), ioi_<attr>_supervised_edit_acc and
ioi_<attr>_ablation_edit_acc, the activation replaced by its training mean.

Validity gates (`validity`, SAE-independent, once per model and hook): the lower end of a 95%
percentile bootstrap over held-out prompts (saebench.stats.bootstrap_interval) must exceed
chance + GATE_MARGIN, where chance = max(rate at which the clean run already gives the target,
rate with the activation mean-ablated), measured at the hook.
- ioi_<attr>_residual_patch_edit_acc governs that attribute's metrics: if patching the whole
  activation from its counterfactual cannot move the answer to the target, the attribute is not
  causal at the final token at this hook (reported absent, not scored).
- ioi_residual_patch_edit_acc, the best of the three, governs the task: if none passes, every
  cell is `uninformative` at this hook.
- ioi_<attr>_supervised_edit_acc governs that attribute's SAE edit metrics: without a working
  supervised edit the k-latent edits have no reference.
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
    edit_curve,
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
    "ioi_prompts_scored": MetricInfo(
        None, description="held-out prompts whose base and three counterfactuals the model gets"
    ),
    # One-attribute sparse control, per attribute (io, s, pos; see counterfactuals.py).
    "ioi_*_sae_edit_acc_k*": MetricInfo(
        True, floor=0.05, description="read against ioi_*_ablation_edit_acc (erasing alone)"
    ),
    "ioi_*_sae_edit_k50": MetricInfo(
        False,
        floor=0.5,
        description="first k of the curve halfway from erasing to the whole patch "
        "(twice the curve's end when none is)",
    ),
    "ioi_*_sae_edit_reaches_half": MetricInfo(
        None, description="1 if some k of the curve gets halfway from erasing to the whole patch"
    ),
    "ioi_*_sae_edit_magnitude_k*": MetricInfo(
        None, description="‖removed part‖ / ‖reconstruction‖"
    ),
    "ioi_*_supervised_edit_acc": MetricInfo(None),
    "ioi_*_residual_patch_edit_acc": MetricInfo(
        None, description="whole activation from the one-attribute counterfactual"
    ),
    "ioi_*_ablation_edit_acc": MetricInfo(
        None, description="mean-ablated activation: the edit accuracy of erasing"
    ),
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
    z = sae.encode(sae_acts)  # once for every attribute and k
    for attribute, edit in prep["edits"].items():
        metrics.update(edit_curve(sae, sae_acts, z, edit, prep["run_with"], metrics, attribute))
    metrics.update(
        interpretability(
            prep["train"],
            sae.encode(prep["train_acts"].to(ctx.device)),
            prep["evaluation"],
            z,
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
