"""Task `ioi`: SAEs against supervised IOI dictionaries (Makelov, Lange & Nanda 2024).

Position: the final prompt token (where the IO name is predicted), at layer ctx.hook.
Supervised dictionary (the reference), fitted on split="train" prompts: u_{i,v} = E[a | attr_i=v]
− E[a] for i ∈ {IO, S, Pos (ABBA/BABA)}; â = E[a] + Σ_i u_{i,v_i}. Scored on split="heldout"
prompts (name pairs never seen together in training; the toy world has no disjoint name set, so
every name occurs in training, just not in that pair; the paper holds names out). Only prompts
the clean model answers correctly (argmax = IO) are scored. For a real tokenizer a name is its
first token of " name".

(a) Sufficiency: LD = logit(IO) − logit(S); replace a by â;
    (mean LD_rec − mean LD_meanabl) / (mean LD_clean − mean LD_meanabl)  (→ 1 good).
    Necessity: replace a by a − â + E[â]; same ratio (→ 0 good).
(b) Sparse controllability: counterfactual prompt with the IO and S names exchanged (IO = A → B,
    S = B → A; a name absent from the prompt cannot be copied by the model's name movers; the
    paper changes one attribute at a time). Supervised edit a − u_{IO,A} + u_{IO,B} − u_{S,B} +
    u_{S,A}; SAE edit: the k latents whose exchange best matches the code difference (largest
    |z' − z| · ‖W_dec row‖), copied from the counterfactual's code, with the SAE error term kept.
    Edit accuracy: share where the edited run's argmax equals the counterfactual run's argmax.
    Reported for k ∈ {1, 2, 4}. The latents are picked per prompt from the two codes, never from
    the edited outcome, so there is no selection to hold out.
(c) Interpretability: "latent > 0" as a predicate for each IO name, S name and order value; the
    best latent per value is chosen on training prompts and its F1 measured on held-out ones.

Chance (MetricInfo.chance): 0.5 for the clean accuracy (a guess between the two names in the
prompt), 2/3 for F1 of Pos (an always-on latent at base rate ½). The edit accuracies declare
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
A model that does not do IOI (too few usable prompts) closes the first gate instead of raising;
`run` called directly still refuses it.
"""

from __future__ import annotations

import torch

from saebench.errors import SaebenchError
from saebench.hookspecs import hookimpl
from saebench.interventions import best_latent_f1, replace_with, run_patched, tokenize
from saebench.metrics import finite
from saebench.specs import MetricInfo, ModelHandle, TaskSpec, Validity
from saebench.stats import bootstrap_interval

SIZES = {"smoke": (300, 64), "default": (1200, 200), "full": (4000, 600)}  # (train, eval)
EDIT_KS = (1, 2, 4)
MIN_PROMPTS = 16
# A reference must beat its measured chance by this much (its 95% lower end). The chance of an
# edit accuracy is high here (mean ablation alone gives the counterfactual's answer in about
# two thirds of the toy model's prompts), so the margin is a tenth of the range.
GATE_MARGIN = 0.1
CONFIDENCE = 0.95
NAME_GUESS = 0.5  # chance of an accuracy over the two names in the prompt

METRICS = {
    "ioi_model_accuracy": MetricInfo(
        None, description="clean accuracy on held-out IOI prompts", chance=NAME_GUESS
    ),
    "ioi_sae_sufficiency": MetricInfo(True, floor=0.05),
    "ioi_sae_necessity": MetricInfo(False, floor=0.05),
    "ioi_supervised_sufficiency": MetricInfo(None),
    "ioi_supervised_necessity": MetricInfo(None),
    "ioi_sae_edit_acc_k*": MetricInfo(
        True, floor=0.05, description="read against ioi_ablation_edit_acc (erasing alone)"
    ),
    "ioi_supervised_edit_acc": MetricInfo(None),
    "ioi_residual_patch_edit_acc": MetricInfo(
        None, description="whole activation from the counterfactual"
    ),
    "ioi_ablation_edit_acc": MetricInfo(
        None, description="mean-ablated activation: the edit accuracy of erasing"
    ),
    "ioi_sae_edit_magnitude_k*": MetricInfo(None, description="‖removed part‖ / ‖reconstruction‖"),
    "ioi_f1_pos": MetricInfo(True, floor=0.03, chance=2 / 3),
    "ioi_f1_*": MetricInfo(True, floor=0.03),
    "ioi_precision_*": MetricInfo(None),
    "ioi_recall_*": MetricInfo(None),
}


def _name_id(tokenizer, name):
    from saebench.toyworld.world import answer_token_id

    return answer_token_id(tokenizer, name)


def _counterfactual(example):
    """The same prompt with the IO and S names exchanged: IO = A → B (and S = B → A).

    A name not in the prompt would be out of reach of a copying (name-mover) circuit, so the
    counterfactual keeps both names and flips which one is the indirect object."""
    io, s = example.labels["io"], example.labels["s"]
    words = [s if w == io else io if w == s else w for w in example.prompt.split()]
    return " ".join(words)


def _ratio(ld, ld_clean, ld_mean):
    gap = ld_clean - ld_mean
    if abs(gap) < 1e-6:
        raise SaebenchError(
            "the IOI logit difference is the same clean and mean-ablated at this "
            "hook, so sufficiency is undefined; pick a layer the task flows through"
        )
    return (ld - ld_mean) / gap


def prepare(ctx) -> dict:
    """SAE-independent part, computed once per (preset, seed): prompts, clean runs,
    supervised dictionary and its scores. Refuses a model that does not do IOI."""
    prep = _prepared(ctx)
    if "refusal" in prep:
        raise SaebenchError(prep["refusal"])
    return prep


def _prepared(ctx) -> dict:
    return ctx.once(("prepared", ctx.preset, ctx.seed), lambda: _prepare(ctx))


def gate(name, hits, chance, description, governs=()) -> Validity:
    """The Validity of per-prompt outcomes `hits` (bool [n])."""
    interval = bootstrap_interval(hits.double().cpu().numpy(), confidence=CONFIDENCE)
    return Validity(
        name, interval.mean, interval.low, chance, GATE_MARGIN, description, tuple(governs)
    )


def validity(ctx) -> list[Validity]:
    """The task's references (never touches ctx.sae): the whole-activation patch and the
    supervised edit must give the counterfactual's answer beyond chance (see the docstring)."""
    prep = _prepared(ctx)
    if "refusal" in prep:
        return [
            Validity(
                "ioi_residual_patch_edit_acc",
                0.0,
                0.0,
                NAME_GUESS,
                GATE_MARGIN,
                f"not measured, gate closed: {prep['refusal']}",
            )
        ]
    hits = prep["hits"]
    clean, ablated = (hits[k].double().mean().item() for k in ("clean", "ablation"))
    chance = max(clean, ablated)
    where = (
        f"at {ctx.hook}, final token, {len(hits['clean'])} held-out prompts; target: the "
        f"counterfactual's (IO and S exchanged) answer; chance max({clean:.2g} clean, "
        f"{ablated:.2g} mean-ablated)"
    )
    return [
        gate(
            "ioi_residual_patch_edit_acc",
            hits["patch"],
            chance,
            "whole activation replaced by the counterfactual's " + where,
        ),
        gate(
            "ioi_supervised_edit_acc",
            hits["supervised"],
            chance,
            "supervised IO/S edit " + where,
            governs=("ioi_sae_edit_acc_k*", "ioi_sae_edit_magnitude_k*"),
        ),
    ]


def _prepare(ctx) -> dict:
    world, bridge, tokenizer = ctx.model.world, ctx.model.bridge, ctx.model.tokenizer
    n_train, n_eval = SIZES.get(ctx.preset, SIZES["default"])
    train = world.generate("ioi", n_train, seed=ctx.seed, split="train")
    evaluation = world.generate("ioi", n_eval, seed=ctx.seed, split="heldout")

    def final_positions(tokens):
        return [len(t) - 1 for t in tokens]

    train_tokens = tokenize(bridge, [e.prompt for e in train])
    train_acts, _ = run_patched(
        bridge, ctx.hook, train_tokens, final_positions(train_tokens), device=ctx.device
    )
    train_acts = train_acts.double()
    mean = train_acts.mean(0)
    dictionary = {}
    for attribute, label in (("io", "io"), ("s", "s"), ("pos", "order")):
        values = [e.labels[label] for e in train]
        for value in sorted(set(values)):
            members = torch.tensor([v == value for v in values], device=train_acts.device)
            dictionary[(attribute, value)] = train_acts[members].mean(0) - mean

    eval_tokens = tokenize(bridge, [e.prompt for e in evaluation])
    acts, logits = run_patched(
        bridge, ctx.hook, eval_tokens, final_positions(eval_tokens), device=ctx.device
    )
    io_ids = torch.tensor(
        [_name_id(tokenizer, e.labels["io"]) for e in evaluation], device=logits.device
    )
    correct = logits.argmax(-1) == io_ids
    accuracy = correct.double().mean().item()
    keep = [
        i
        for i in range(len(evaluation))
        if correct[i]
        and all(
            (role, evaluation[i].labels[name]) in dictionary
            for role in ("io", "s")
            for name in ("io", "s")
        )
    ]
    if len(keep) < MIN_PROMPTS:
        return {
            "refusal": f"the model answers only {int(correct.sum())}/{len(evaluation)} held-out "
            f"IOI prompts correctly ({len(keep)} usable, need {MIN_PROMPTS}); the ioi task "
            f"needs a model that does IOI (train the toy world longer, or drop --tasks ioi "
            f"for this model)"
        }
    evaluation = [evaluation[i] for i in keep]
    eval_tokens = [eval_tokens[i] for i in keep]
    acts = acts[keep]
    positions = final_positions(eval_tokens)
    io_ids = torch.tensor(
        [_name_id(tokenizer, e.labels["io"]) for e in evaluation], device=logits.device
    )
    s_ids = torch.tensor(
        [_name_id(tokenizer, e.labels["s"]) for e in evaluation], device=logits.device
    )

    def logit_diff(lg):
        rows = torch.arange(len(lg), device=lg.device)
        return (lg[rows, io_ids] - lg[rows, s_ids]).double().mean().item()

    def run_with(new_acts):
        return run_patched(
            bridge, ctx.hook, eval_tokens, positions, replace_with(new_acts), device=ctx.device
        )[1]

    ld_clean = logit_diff(logits[keep])
    ablated = run_with(mean.expand_as(acts).to(acts.dtype))
    ld_mean = logit_diff(ablated)
    supervised_rec = torch.stack(
        [
            mean
            + dictionary[("io", e.labels["io"])]
            + dictionary[("s", e.labels["s"])]
            + dictionary[("pos", e.labels["order"])]
            for e in evaluation
        ]
    )
    ld_sup = logit_diff(run_with(supervised_rec.to(acts.dtype)))
    ld_sup_nec = logit_diff(run_with((acts.double() - supervised_rec + mean).to(acts.dtype)))

    # Counterfactuals: IO and S exchanged (see _counterfactual).
    cf_tokens = tokenize(bridge, [_counterfactual(e) for e in evaluation])
    cf_acts, cf_logits = run_patched(
        bridge, ctx.hook, cf_tokens, final_positions(cf_tokens), device=ctx.device
    )
    cf_target = cf_logits.argmax(-1)
    sup_edit = acts.double() + torch.stack(
        [
            dictionary[("io", e.labels["s"])]
            - dictionary[("io", e.labels["io"])]
            + dictionary[("s", e.labels["io"])]
            - dictionary[("s", e.labels["s"])]
            for e in evaluation
        ]
    )
    # Per held-out prompt: does each SAE-independent edit give the counterfactual's answer?
    hits = {
        "supervised": run_with(sup_edit.to(acts.dtype)).argmax(-1) == cf_target,
        "patch": run_with(cf_acts).argmax(-1) == cf_target,
        "clean": logits[keep].argmax(-1) == cf_target,
        "ablation": ablated.argmax(-1) == cf_target,
    }
    return dict(  # noqa: C408 (keyword form reads better here)
        train=train,
        train_acts=train_acts.to(acts.dtype),
        mean=mean,
        evaluation=evaluation,
        eval_tokens=eval_tokens,
        positions=positions,
        acts=acts,
        cf_acts=cf_acts,
        cf_target=cf_target,
        logit_diff=logit_diff,
        run_with=run_with,
        ld_clean=ld_clean,
        ld_mean=ld_mean,
        ld_supervised=(ld_sup, ld_sup_nec),
        hits=hits,
        metrics={
            "ioi_model_accuracy": accuracy,
            "ioi_supervised_edit_acc": hits["supervised"].double().mean().item(),
            "ioi_residual_patch_edit_acc": hits["patch"].double().mean().item(),
            "ioi_ablation_edit_acc": hits["ablation"].double().mean().item(),
        },
    )


@torch.no_grad()
def sparse_edit(sae, acts, cf_acts, k, codes=None):
    """Copy the k latents with the largest |z' − z|·‖W_dec row‖ from the counterfactual's code;
    SAE error term kept. Returns (edited activations, edit magnitude per prompt). codes: the
    SAE codes (z, z') of acts and cf_acts when the caller already has them."""
    z, z_cf = codes if codes is not None else (sae.encode(acts), sae.encode(cf_acts))
    contribution = (z_cf - z).abs() * sae.W_dec.norm(dim=-1)
    chosen = contribution.topk(min(k, z.shape[-1]), dim=-1).indices
    mask = torch.zeros_like(z).scatter_(1, chosen, 1.0)
    delta = ((z_cf - z) * mask) @ sae.W_dec
    removed = (z * mask) @ sae.W_dec
    magnitude = removed.norm(dim=-1) / sae.decode(z).norm(dim=-1).clamp_min(1e-12)
    return acts + delta, magnitude


def interpretability(train, train_codes, evaluation, eval_codes) -> dict:
    """Per attribute: mean over values of the held-out precision/recall/F1 of the best latent
    (chosen by training F1) as the predicate "latent > 0" for "attribute = value"."""
    out = {}
    train_active, eval_active = train_codes.cpu() > 0, eval_codes.cpu() > 0
    for attribute, label in (("io", "io"), ("s", "s"), ("pos", "order")):
        train_values = [e.labels[label] for e in train]
        eval_values = [e.labels[label] for e in evaluation]
        seen = set(train_values)  # a value never seen in training has no best latent
        values = [v for v in sorted(set(eval_values)) if v in seen]
        scores = []
        if values:
            # Every value at once: one label column per value.
            _, _, f1_train = best_latent_f1(train_active, one_hot(train_values, values))
            best = f1_train.argmax(-1)  # per value, its first latent with the best train F1
            p, r, f = best_latent_f1(eval_active[:, best], one_hot(eval_values, values))
            # Row j, column j: value j's own best latent.
            scores = list(zip(p.diag().tolist(), r.diag().tolist(), f.diag().tolist()))
        for i, name in enumerate(("precision", "recall", "f1")):
            out[f"ioi_{name}_{attribute}"] = sum(s[i] for s in scores) / max(len(scores), 1)
    out["ioi_f1_mean"] = (out["ioi_f1_io"] + out["ioi_f1_s"] + out["ioi_f1_pos"]) / 3
    return out


def one_hot(labels: list, values: list) -> torch.Tensor:
    """Bool [len(labels), len(values)]: label i == value j."""
    return torch.tensor([[label == value for value in values] for label in labels])


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
    for k in EDIT_KS:
        edited, magnitude = sparse_edit(sae, sae_acts, cf_acts, k, codes)
        logits = prep["run_with"](edited)
        metrics[f"ioi_sae_edit_acc_k{k}"] = (
            (logits.argmax(-1) == prep["cf_target"]).double().mean().item()
        )
        metrics[f"ioi_sae_edit_magnitude_k{k}"] = magnitude.double().mean().item()
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
