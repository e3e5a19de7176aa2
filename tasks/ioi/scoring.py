"""Scoring an SAE on `ioi`: sparse edits, the k curve, latent predicates (MCC) and the raw
probe that says whether an attribute is present at the site."""

from __future__ import annotations

import torch

from saebench.interventions import best_latent_f1, latent_mcc
from saebench_tasks.ioi.config import ATTRIBUTES, MAX_EDIT_K


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


@torch.no_grad()
def edit_curve(sae, acts, z, edit, run_with, references, attribute) -> dict:
    """One attribute's SAE edit curve: accuracy (edited argmax == the attribute's target) and
    magnitude at each k of edit_curve_ks, and k50, the first k halfway from what erasing alone
    achieves to the whole-activation patch (references: the attribute's measured floor and
    ceiling), censored at twice the curve's end when no k gets there."""
    cf_acts = edit["cf_acts"].to(acts.device)
    codes = z, sae.encode(cf_acts)
    floor = references[f"ioi_{attribute}_ablation_edit_acc"]
    ceiling = references[f"ioi_{attribute}_residual_patch_edit_acc"]
    threshold = floor + 0.5 * max(ceiling - floor, 0.0)
    ks = edit_curve_ks(z.shape[-1])
    out, k50 = {}, None
    for k in ks:
        edited, magnitude = sparse_edit(sae, acts, cf_acts, k, codes)
        hits = run_with(edited).argmax(-1) == edit["target"].to(acts.device)
        accuracy = hits.double().mean().item()
        out[f"ioi_{attribute}_sae_edit_acc_k{k}"] = accuracy
        out[f"ioi_{attribute}_sae_edit_magnitude_k{k}"] = magnitude.double().mean().item()
        if k50 is None and accuracy >= threshold and ceiling > floor:
            k50 = k
    out[f"ioi_{attribute}_sae_edit_reaches_half"] = float(k50 is not None)
    # Not reached within the curve: censored at twice its end, so the cell still counts (as
    # worse than any SAE that reaches it) in matched-L0 comparisons.
    out[f"ioi_{attribute}_sae_edit_k50"] = float(k50 if k50 is not None else 2 * ks[-1])
    return out


def interpretability(train, train_codes, evaluation, eval_codes) -> dict:
    """Per attribute: mean over values of the held-out MCC (and, descriptive, precision,
    recall, F1) of the best latent, chosen by training MCC, as the predicate "latent > 0" for
    "attribute = value"."""
    out = {}
    train_active, eval_active = train_codes.cpu() > 0, eval_codes.cpu() > 0
    for attribute, label in ATTRIBUTES:
        train_values = [e.labels[label] for e in train]
        eval_values = [e.labels[label] for e in evaluation]
        seen = set(train_values)  # a value never seen in training has no best latent
        values = [v for v in sorted(set(eval_values)) if v in seen]
        scores = []
        if values:
            # Every value at once: one label column per value.
            best = latent_mcc(train_active, one_hot(train_values, values)).argmax(-1)
            held_out = one_hot(eval_values, values)
            mcc = latent_mcc(eval_active[:, best], held_out).diag()
            p, r, f = best_latent_f1(eval_active[:, best], held_out)
            # Row j, column j: value j's own best latent.
            scores = list(
                zip(mcc.tolist(), p.diag().tolist(), r.diag().tolist(), f.diag().tolist())
            )
        for i, name in enumerate(("mcc", "precision", "recall", "f1")):
            out[f"ioi_{name}_{attribute}"] = sum(s[i] for s in scores) / max(len(scores), 1)
    for name in ("mcc", "f1"):
        out[f"ioi_{name}_mean"] = sum(out[f"ioi_{name}_{a}"] for a, _ in ATTRIBUTES) / 3
    return out


def raw_probe_hits(train, train_acts, evaluation, eval_acts) -> dict[str, torch.Tensor]:
    """Per attribute: bool [n_eval], whether a logistic-regression probe on the raw final-token
    activations (standardised, fitted on train prompts) gets the held-out prompt's value."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x_train = train_acts.double().cpu().numpy()
    x_eval = eval_acts.double().cpu().numpy()
    scaler = StandardScaler().fit(x_train)
    hits = {}
    for attribute, label in ATTRIBUTES:
        y_train = [e.labels[label] for e in train]
        y_eval = [e.labels[label] for e in evaluation]
        probe = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(x_train), y_train)
        predicted = probe.predict(scaler.transform(x_eval))
        hits[attribute] = torch.tensor([p == y for p, y in zip(predicted, y_eval)])
    return hits


def majority_rate(evaluation, label) -> float:
    """Chance of a probe's held-out accuracy: the largest share of one value among the held-out
    prompts (what a constant guess of the right value gets; the training majority can be the
    held-out minority)."""
    counts: dict = {}
    for e in evaluation:
        counts[e.labels[label]] = counts.get(e.labels[label], 0) + 1
    return max(counts.values()) / len(evaluation)


def edit_curve_ks(d_sae: int) -> list[int]:
    """The k grid of the edit curve: powers of two up to MAX_EDIT_K (and d_sae). Fixed, not
    cut at the SAE's L0, so every seed and every dictionary of a size reports the same
    metrics (a grid that ends at 2·L0 gives each seed its own last k); past 2·L0 the curve is
    flat, since an edit cannot change more latents than the two codes have."""
    top = max(1, min(d_sae, MAX_EDIT_K))
    return [2**i for i in range(top.bit_length()) if 2**i <= top]


def one_hot(labels: list, values: list) -> torch.Tensor:
    """Bool [len(labels), len(values)]: label i == value j."""
    return torch.tensor([[label == value for value in values] for label in labels])
