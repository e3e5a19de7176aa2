"""The SAE-independent part of `ioi`: prompts, clean runs, the supervised dictionary, its
scores, and the validity gates built on them."""

from __future__ import annotations

from dataclasses import replace

import torch

from saebench.errors import SaebenchError
from saebench.interventions import replace_with, run_patched, tokenize
from saebench.specs import Validity
from saebench.stats import bootstrap_interval
from saebench.toyworld.ioi_edits import (
    ATTRIBUTE_EDITS,
    EDIT_TARGETS,
    counterfactual,
    new_io_name,
    supervised_dictionary,
)
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
    gates = []
    for attribute, hits in prep["hits"].items():
        clean, ablated = (hits[k].double().mean().item() for k in ("clean", "ablation"))
        chance = max(clean, ablated)
        where = (
            f"at {ctx.hook}, final token, {len(hits['clean'])} held-out prompts; target: "
            f"{EDIT_TARGETS[attribute]}; chance max({clean:.2g} clean, {ablated:.2g} "
            f"mean-ablated)"
        )
        gates += [
            gate(
                f"ioi_{attribute}_residual_patch_edit_acc",
                hits["patch"],
                chance,
                f"whole activation from the {attribute}-only counterfactual " + where,
                governs=(f"ioi_{attribute}_*",),
            ),
            gate(
                f"ioi_{attribute}_supervised_edit_acc",
                hits["supervised"],
                chance,
                f"supervised {attribute} edit " + where,
                governs=(f"ioi_{attribute}_sae_edit_*",),
            ),
        ]
    # The task as a whole: if no one-attribute patch of the whole activation moves the answer,
    # what the task reads is not at the final token at this hook.
    best = max(gates[::2], key=lambda g: g.low - g.chance)
    task_gate = replace(
        best,
        name="ioi_residual_patch_edit_acc",
        description=f"best of the three one-attribute whole-activation patches ({best.name}); "
        + best.description,
        governs=(),
    )
    return [task_gate, *gates] + [
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
    intercept, dictionary = supervised_dictionary(train, train_acts)

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
    acts, clean_logits = acts[keep], logits[keep]

    # One-attribute counterfactuals (see counterfactuals.py); a prompt is scored when the clean
    # model answers the base and all three counterfactuals as expected.
    per_attribute: dict[str, list] = {a: [] for a in ATTRIBUTE_EDITS}
    io_names = [n for n in world.names if ("io", n) in dictionary]
    for i, e in enumerate(evaluation):
        new_name = new_io_name(io_names, e.labels, ctx.seed, i)
        for a in ATTRIBUTE_EDITS:
            per_attribute[a].append(counterfactual(e.labels, e.prompt, a, new_name))
    cf_runs = {}
    usable = torch.ones(len(evaluation), dtype=torch.bool)
    for a, cfs in per_attribute.items():
        cf_tokens = tokenize(bridge, [c.prompt for c in cfs])
        cf_acts, cf_logits = run_patched(
            bridge, ctx.hook, cf_tokens, final_positions(cf_tokens), device=ctx.device
        )
        answers = torch.tensor([_name_id(tokenizer, c.answer) for c in cfs])
        usable &= cf_logits.argmax(-1).cpu() == answers
        cf_runs[a] = cf_acts
    rows = usable.nonzero()[:, 0].tolist()
    if len(rows) < MIN_PROMPTS:
        return {
            "refusal": f"the model answers only {len(rows)}/{len(evaluation)} held-out IOI "
            f"prompts and their one-attribute counterfactuals as expected (need "
            f"{MIN_PROMPTS}); the ioi task needs a model that does IOI (train the toy world "
            f"longer, or drop --tasks ioi for this model)"
        }
    evaluation = [evaluation[r] for r in rows]
    eval_tokens = [eval_tokens[r] for r in rows]
    acts, clean_logits = acts[rows], clean_logits[rows]
    positions = final_positions(eval_tokens)
    io_ids = torch.tensor(
        [_name_id(tokenizer, e.labels["io"]) for e in evaluation], device=logits.device
    )
    s_ids = torch.tensor(
        [_name_id(tokenizer, e.labels["s"]) for e in evaluation], device=logits.device
    )

    def logit_diff(lg):
        index = torch.arange(len(lg), device=lg.device)
        return (lg[index, io_ids] - lg[index, s_ids]).double().mean().item()

    def run_with(new_acts):
        return run_patched(
            bridge, ctx.hook, eval_tokens, positions, replace_with(new_acts), device=ctx.device
        )[1]

    ld_clean = logit_diff(clean_logits)
    ablated = run_with(mean.expand_as(acts).to(acts.dtype))
    ld_mean = logit_diff(ablated)
    supervised_rec = torch.stack(
        [
            intercept
            + dictionary[("io", e.labels["io"])]
            + dictionary[("s", e.labels["s"])]
            + dictionary[("pos", e.labels["order"])]
            for e in evaluation
        ]
    )
    ld_sup = logit_diff(run_with(supervised_rec.to(acts.dtype)))
    ld_sup_nec = logit_diff(run_with((acts.double() - supervised_rec + mean).to(acts.dtype)))

    edits = {}
    for a, cfs in per_attribute.items():
        chosen = [cfs[r] for r in rows]
        label = dict(ATTRIBUTES)[a]
        # The supervised edit of one attribute: its value's direction swapped, nothing else.
        supervised = acts.double() + torch.stack(
            [
                dictionary[(a, c.to_value)] - dictionary[(a, e.labels[label])]
                for c, e in zip(chosen, evaluation)
            ]
        )
        edits[a] = {
            "cf_acts": cf_runs[a][rows],
            "target": torch.tensor(
                [_name_id(tokenizer, c.target) for c in chosen], device=logits.device
            ),
            "supervised": supervised.to(acts.dtype),
        }
    # Per held-out prompt and attribute: does each SAE-independent edit give the target?
    hits = {
        a: {
            "supervised": run_with(e["supervised"]).argmax(-1) == e["target"],
            "patch": run_with(e["cf_acts"]).argmax(-1) == e["target"],
            "clean": clean_logits.argmax(-1) == e["target"],
            "ablation": ablated.argmax(-1) == e["target"],
        }
        for a, e in edits.items()
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
        edits=edits,
        logit_diff=logit_diff,
        run_with=run_with,
        ld_clean=ld_clean,
        ld_mean=ld_mean,
        ld_supervised=(ld_sup, ld_sup_nec),
        hits=hits,
        metrics={"ioi_model_accuracy": accuracy, "ioi_prompts_scored": float(len(rows))}
        | {
            f"ioi_{a}_{name}_edit_acc": h[key].double().mean().item()
            for a, h in hits.items()
            for name, key in (
                ("supervised", "supervised"),
                ("residual_patch", "patch"),
                ("ablation", "ablation"),
            )
        }
        | {f"ioi_raw_probe_acc_{a}": h.double().mean().item() for a, h in probe_hits.items()},
    )
