"""The toy model's behaviour report: does it do each task the suite scores SAEs on?

Every number is measured on prompts the model did not train on where that is possible
(unseen IOI name pairs, held-out templates, held-out calendar pairs, fresh seeds).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from saebench.interventions import length_batches
from saebench.models import default_hook_for
from saebench.toyworld.world import (
    IOI_HELDOUT_TEMPLATES,
    World,
    answer_token_id,
    probe_text,
    probing_label_names,
)

EVAL_SEED = 9_999  # never used for training text


def prompt_tokens(bridge, tokenizer, prompts: list[str]) -> list[torch.Tensor]:
    """BOS + prompt ids, one tensor per prompt."""
    bos = tokenizer.bos_token_id
    return [torch.tensor([bos] + tokenizer.encode(p, add_special_tokens=False)) for p in prompts]


@torch.no_grad()
def last_token_logits(
    bridge, tokenizer, prompts: list[str], device="cpu", batch_size: int = 256
) -> torch.Tensor:
    """Logits at the last prompt position, [n_prompts, d_vocab]; prompts grouped by length."""
    sequences = prompt_tokens(bridge, tokenizer, prompts)
    out = torch.empty(len(prompts), len(tokenizer))
    for chunk in length_batches(sequences, batch_size):
        tokens = torch.stack([sequences[i] for i in chunk]).to(device)
        out[chunk] = bridge(tokens)[:, -1].float().cpu()
    return out


def answer_accuracy(bridge, tokenizer, examples, device="cpu") -> float:
    logits = last_token_logits(bridge, tokenizer, [e.prompt for e in examples], device)
    targets = torch.tensor([answer_token_id(tokenizer, e.answer) for e in examples])
    return (logits.argmax(-1) == targets).float().mean().item()


def ioi_metrics(bridge, tokenizer, world: World, n: int, device="cpu") -> dict:
    """Unseen name pairs: on the trained templates (the target) and, separately, on the
    held-out template (a harder transfer test, reported without a target)."""
    examples = world.generate("ioi", 2 * n, seed=EVAL_SEED, split="heldout")
    logits = last_token_logits(bridge, tokenizer, [e.prompt for e in examples], device)
    io = torch.tensor([answer_token_id(tokenizer, e.labels["io"]) for e in examples])
    s = torch.tensor([answer_token_id(tokenizer, e.labels["s"]) for e in examples])
    rows = torch.arange(len(examples))
    logit_diff = logits[rows, io] - logits[rows, s]
    correct = logits.argmax(-1) == io
    heldout = torch.tensor([e.labels["template"] in IOI_HELDOUT_TEMPLATES for e in examples])
    metrics = {}
    for mask, suffix in ((~heldout, ""), (heldout, "_heldout_template")):
        metrics[f"ioi_accuracy{suffix}"] = correct[mask].float().mean().item()
        metrics[f"ioi_io_over_s_rate{suffix}"] = (logit_diff[mask] > 0).float().mean().item()
        metrics[f"ioi_logit_diff{suffix}"] = logit_diff[mask].mean().item()
    return metrics


def calendar_metrics(bridge, tokenizer, world: World, n: int, device="cpu") -> dict:
    metrics = {}
    for split, tag in (("train", "trained"), ("heldout", "heldout")):
        examples = [
            e
            for e in world.generate("calendar", n * 2, seed=EVAL_SEED, split=split)
            if not e.labels["mention"]
        ]
        for kind in ("day", "month"):
            subset = [e for e in examples if e.labels["kind"] == kind]
            if subset:
                metrics[f"{kind}_arithmetic_{tag}"] = answer_accuracy(
                    bridge, tokenizer, subset, device
                )
    return metrics


def fact_metrics(bridge, tokenizer, world: World, n: int, device="cpu") -> dict:
    metrics = {}
    for split, tag in (("train", "trained"), ("heldout", "heldout")):
        examples = world.generate("facts", n, seed=EVAL_SEED, split=split)
        for attribute in world.attributes:
            subset = [e for e in examples if e.labels["attribute"] == attribute]
            metrics[f"recall_{attribute}_{tag}"] = answer_accuracy(
                bridge, tokenizer, subset, device
            )
    return metrics


@torch.no_grad()
def heldout_loss(bridge, tokenizer, world: World, n_texts: int, device="cpu") -> float:
    from saebench.toyworld.model import next_token_loss

    texts = world.corpus("heldout", n_texts, seed=EVAL_SEED)
    sequences = prompt_tokens(bridge, tokenizer, texts)
    width = max(len(s) for s in sequences)
    tokens = torch.full((len(sequences), width), tokenizer.pad_token_id)
    for row, sequence in enumerate(sequences):
        tokens[row, : len(sequence)] = sequence
    tokens = tokens.to(device)
    return next_token_loss(bridge(tokens), tokens, tokenizer.pad_token_id).item()


@torch.no_grad()
def pooled_residuals(bridge, tokenizer, texts: list[str], hook: str, device="cpu") -> np.ndarray:
    """Mean over the text's (non-BOS) tokens of the activation at `hook`, [n_texts, d]."""
    pooled = []
    for sequence in prompt_tokens(bridge, tokenizer, texts):
        _, cache = bridge.run_with_cache(sequence[None].to(device), names_filter=hook)
        pooled.append(cache[hook][0, 1:].mean(0).float().cpu().numpy())
    return np.stack(pooled)


def probing_metrics(bridge, tokenizer, world: World, n: int, hook: str, device="cpu") -> dict:
    """Linear-probe ceiling per binary probing label, and the best single raw dimension.

    The same probe as the sparse_probing task (saebench.probing.probe_accuracy), which
    standardises on train statistics: the residual's scale is arbitrary (weight decay shrinks
    it ~30x) and an L2-regularised probe on tiny features predicts the majority class."""
    from saebench.probing import probe_accuracy

    examples = world.generate("probing", n, seed=EVAL_SEED)
    texts = [probe_text(e) for e in examples]
    features = pooled_residuals(bridge, tokenizer, texts, hook, device)
    split = int(0.7 * n)
    train, test = np.arange(split), np.arange(split, n)
    metrics = {}
    best_dims = []
    for name, values in probing_label_names(examples).items():
        y = np.array(values)
        metrics[f"probe_{name}"] = probe_accuracy(features, y, train, test, k=None)
        # Best single dimension: a threshold picked on train, scored on test.
        best = max(
            probe_accuracy(features[:, dim : dim + 1], y, train, test, k=None)
            for dim in range(features.shape[1])
        )
        metrics[f"probe_{name}_best_single_dim"] = float(best)
        best_dims.append(best)
    metrics["probe_best_single_dim_max"] = float(max(best_dims))
    return metrics


TARGETS = {
    "ioi_accuracy": 0.95,
    "day_arithmetic_trained": 0.95,
    "month_arithmetic_trained": 0.95,
    "day_arithmetic_heldout": 0.70,
    "month_arithmetic_heldout": 0.70,
}
FACT_TARGETS = {"trained": 0.95, "heldout": 0.70}


def targets_for(world: World) -> dict[str, float]:
    """TARGETS plus a fact-recall target for each of the world's own attributes (v1: country,
    continent, language; v2: country, language, climate)."""
    facts = {
        f"recall_{attribute}_{split}": target
        for attribute in world.attributes
        for split, target in FACT_TARGETS.items()
    }
    return TARGETS | facts


def training_probe(bridge, tokenizer, world: World, device="cpu") -> dict:
    """The generalisation numbers worth watching while training (a few seconds)."""
    report = ioi_metrics(bridge, tokenizer, world, 150, device)
    report |= calendar_metrics(bridge, tokenizer, world, 150, device)
    keep = (
        "ioi_accuracy",
        "ioi_accuracy_heldout_template",
        "day_arithmetic_trained",
        "day_arithmetic_heldout",
        "month_arithmetic_trained",
        "month_arithmetic_heldout",
    )
    return {k: round(report[k], 3) for k in keep if k in report}


def behaviour_report(
    bridge,
    tokenizer,
    world: World | None = None,
    device="cpu",
    n: int = 600,
    hook: str | None = None,
    probing: bool = True,
    sites: bool = True,
) -> dict:
    """Behaviour metrics (held-out prompts) and, with `sites`, the site checks at `hook`
    (saebench.toyworld.sites) under "site_checks": {name: {value, target, passed, ...}}.
    A site check that fails is listed in "sites_missed" (not "targets_missed", which is about
    the model's behaviour): it says which intervention tasks are uninformative at this hook."""
    if world is None:
        from saebench.toyworld import load_world

        world = load_world()
    hook = hook or default_hook_for(bridge)
    report: dict[str, Any] = {}  # metric name -> number; "targets_missed" -> list of names
    report |= ioi_metrics(bridge, tokenizer, world, n, device)
    report |= calendar_metrics(bridge, tokenizer, world, n, device)
    report |= fact_metrics(bridge, tokenizer, world, n, device)
    report["heldout_loss"] = heldout_loss(bridge, tokenizer, world, 200, device)
    if probing:
        report |= probing_metrics(bridge, tokenizer, world, 400, hook, device)
    report = {k: round(float(v), 4) for k, v in report.items()}
    targets = targets_for(world)
    report["targets_missed"] = sorted(k for k, t in targets.items() if report.get(k, 0) < t)
    if sites:
        from saebench.toyworld.sites import site_checks

        report["site_hook"] = hook
        report["site_checks"] = site_checks(bridge, tokenizer, world, hook, max(50, n // 2), device)
        report["sites_missed"] = sorted(
            name for name, check in report["site_checks"].items() if not check["passed"]
        )
    return report
