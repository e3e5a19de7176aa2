"""The SAE-independent part of `ioi`: prompts, clean runs, the supervised dictionary, its
scores, and the validity gates built on them."""

from __future__ import annotations

import torch

from saebench.errors import SaebenchError
from saebench.interventions import replace_with, run_patched, tokenize
from saebench.specs import Validity
from saebench.stats import bootstrap_interval
from saebench_tasks.ioi.config import (
    ATTRIBUTES,
    CONFIDENCE,
    GATE_MARGIN,
    MIN_PROMPTS,
    NAME_GUESS,
    PRESENCE_MARGIN,
    SIZES,
)
from saebench_tasks.ioi.scoring import majority_rate, raw_probe_hits


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
            governs=("ioi_sae_edit_acc_k*", "ioi_sae_edit_magnitude_k*", "ioi_sae_edit_k50"),
        ),
    ] + [
        Validity(
            f"ioi_present_{attribute}",
            interval.mean,
            interval.low,
            prep["majority"][attribute],
            PRESENCE_MARGIN,
            f"{attribute} decoded by a linear probe on the raw final-token activations at "
            f"{ctx.hook} (fitted on train prompts), held-out accuracy, 95% bootstrap; chance: "
            f"the largest held-out share of one value. Absent: its latent MCC is not scored",
            (f"ioi_mcc_{attribute}", "ioi_mcc_mean"),
        )
        for attribute, interval in (
            (a, bootstrap_interval(h.double().numpy(), confidence=CONFIDENCE))
            for a, h in prep["probe_hits"].items()
        )
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
    probe_hits = raw_probe_hits(train, train_acts, evaluation, acts)
    majority = {a: majority_rate(evaluation, label) for a, label in ATTRIBUTES}
    return dict(  # noqa: C408 (keyword form reads better here)
        probe_hits=probe_hits,
        majority=majority,
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
        }
        | {f"ioi_raw_probe_acc_{a}": h.double().mean().item() for a, h in probe_hits.items()},
    )
