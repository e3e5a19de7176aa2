"""Shared helpers for tasks that read or patch one activation per prompt (ravel, ioi).

Every helper works through `bridge.run_with_hooks(tokens, fwd_hooks=[(hook, fn)], return_type=
"logits")` only, so a tiny fake bridge with that one method is enough for unit tests. Prompts are
grouped by token length instead of padded (`length_batches`, also used by saebench.probing and
the toy world's report): padding would shift positions, the toy tokenizer and GPT-2 both lack a
reliable left-padding path through TransformerBridge, and in a bidirectional encoder padding
would leak into every position.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence, Sized

import torch

BATCH = 256
# On CPU, a very small matrix multiply takes another BLAS kernel whose rounding differs in the
# last bits, so a prompt run alone would not get exactly the logits it gets in a batch. Batches
# of fewer token rows than this are repeated (the copies are dropped): a prompt's results then
# do not depend on its batch, which `patched_final_logits` relies on when it reuses clean
# logits. (On GPU, and on CPU under portable numerics' MKL_CBWR=COMPATIBLE, kernels may vary with
# the batch anyway: results agree up to float rounding.)
MIN_ROWS = 16


def tokenize(bridge, prompts: Sequence[str]) -> list[torch.Tensor]:
    """One 1-D token tensor per prompt (BOS prepended, as bridge.to_tokens does)."""
    return [bridge.to_tokens(prompt)[0] for prompt in prompts]


def prefix_end(bridge, prefix: str) -> int:
    """Index, in the tokens of a prompt that starts with `prefix` (BOS included), of the
    prefix's last token: where an intervention on the prefix's last word acts."""
    return len(tokenize(bridge, [prefix.strip()])[0]) - 1


def word_position(bridge, prompt: str, word: str) -> int:
    """Token index of the last token of the last occurrence of the whole word `word` in
    `prompt` (an operand named again after a distractor is found at its last mention)."""
    words = prompt.split()
    index = len(words) - 1 - words[::-1].index(word)
    return prefix_end(bridge, " ".join(words[: index + 1]))


def length_batches(sequences: Sequence[Sized], batch_size: int) -> Iterator[list[int]]:
    """Indices of `sequences` grouped by length (lengths in order of first appearance, indices
    ascending), in batches of at most `batch_size`: each batch stacks without padding."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, sequence in enumerate(sequences):
        by_length[len(sequence)].append(index)
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            yield indices[start : start + batch_size]


@torch.no_grad()
def run_patched(
    bridge,
    hook: str,
    token_lists: Sequence[torch.Tensor],
    positions: Sequence[int],
    edit: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    device=None,
):
    """(activations at `positions` [n, d], final-position logits [n, vocab]).

    edit(acts [b, d], indices LongTensor [b]) -> replacement activations [b, d] at each prompt's
    position (indices say which prompts of the full list are in the batch); None: clean run.
    Returned activations are the clean ones (before the edit). A prompt's results do not depend
    on which prompts share its batch (see `MIN_ROWS`).
    """
    order: list[int] = []  # prompt index of each returned row, batch after batch
    acts_parts, logits_parts = [], []
    for indices in length_batches(token_lists, BATCH):
        tokens = torch.stack([token_lists[i] for i in indices])
        if device is not None:
            tokens = tokens.to(device)
        copies = _copies_for(len(indices), tokens.shape[1])
        batch = indices * copies
        tokens = tokens.repeat(copies, 1)
        rows = torch.arange(len(batch), device=tokens.device)
        pos = torch.tensor([positions[i] for i in batch], device=tokens.device)
        captured: dict[str, torch.Tensor] = {}

        def hook_fn(activation, hook=None, rows=rows, pos=pos, batch=batch, captured=captured):
            chosen = activation[rows, pos]
            captured["acts"] = chosen.detach().clone()
            if edit is None:
                return activation
            new = activation.clone()
            index_tensor = torch.tensor(batch, device=activation.device)
            new[rows, pos] = edit(chosen, index_tensor).to(activation.dtype)
            return new

        logits = bridge.run_with_hooks(tokens, fwd_hooks=[(hook, hook_fn)], return_type="logits")
        order.extend(indices)
        acts_parts.append(captured["acts"][: len(indices)])
        logits_parts.append(logits[: len(indices), -1])
    if not order:
        raise ValueError("run_patched needs at least one prompt")
    # Rows come out batch by batch; put them back in prompt order.
    where = torch.empty(len(order), dtype=torch.long)
    where[torch.tensor(order)] = torch.arange(len(order))
    acts, logits = torch.cat(acts_parts), torch.cat(logits_parts)
    return acts[where.to(acts.device)], logits[where.to(logits.device)]


def _copies_for(n_prompts: int, length: int) -> int:
    """How many times to repeat a batch of n_prompts prompts of `length` tokens: MIN_ROWS."""
    return max(1, -(-MIN_ROWS // (n_prompts * length)))


def changed_rows(new_acts: torch.Tensor, clean_acts: torch.Tensor) -> torch.Tensor:
    """Indices of the rows where new_acts differs from clean_acts in any element (NaN counts as
    a change)."""
    return torch.nonzero((new_acts != clean_acts.to(new_acts.device)).any(-1)).flatten()


@torch.no_grad()
def patched_final_logits(
    bridge,
    hook: str,
    token_lists: Sequence[torch.Tensor],
    positions: Sequence[int],
    new_acts: torch.Tensor,
    clean_acts: torch.Tensor,
    clean_logits: torch.Tensor,
    device=None,
) -> torch.Tensor:
    """Final-position logits [n, vocab] (on clean_logits' device) with prompt i's activation at
    positions[i] replaced by new_acts[i]: the same as run_patched(..., replace_with(new_acts)).

    clean_acts [n, d] and clean_logits [n, vocab] are run_patched's clean results for the same
    prompts. A prompt whose new activation equals its clean one bit for bit is not run: the
    patch is then a no-op, so its logits are its clean logits. Interventions that move only a
    few prompts (a latent that is zero in both codes) thus cost only the prompts they move; and
    rows that repeat another row's prompt, position and new activation exactly are run once.
    """
    logits = clean_logits.clone()
    changed = changed_rows(new_acts, clean_acts)
    if len(changed):
        moved = changed.tolist()
        first, copy_of = distinct_patches(
            [token_lists[i] for i in moved], [positions[i] for i in moved], new_acts[changed]
        )
        runs = [moved[j] for j in first]
        _, patched = run_patched(
            bridge,
            hook,
            [token_lists[i] for i in runs],
            [positions[i] for i in runs],
            replace_with(new_acts[torch.tensor(runs, device=new_acts.device)]),
            device=device,
        )
        patched = patched.to(logits.device, logits.dtype)
        logits[changed.to(logits.device)] = patched[copy_of.to(logits.device)]
    return logits


def distinct_patches(
    token_lists: Sequence[torch.Tensor], positions: Sequence[int], new_acts: torch.Tensor
) -> tuple[list[int], torch.Tensor]:
    """(index of the first row of each distinct patch, index into those of every row's patch).

    Two rows are the same patch when their tokens, position and new activation are equal bit
    for bit (bytes, not float equality: 0.0 and -0.0 are kept apart), so both get the same
    logits from one forward."""
    acts = new_acts.detach().cpu().contiguous().view(torch.uint8).numpy()  # any dtype
    seen: dict[tuple, int] = {}
    first: list[int] = []
    copy_of = []
    for row, (tokens, position) in enumerate(zip(token_lists, positions)):
        key = (tuple(tokens.tolist()), int(position), acts[row].tobytes())
        if key not in seen:
            seen[key] = len(first)
            first.append(row)
        copy_of.append(seen[key])
    return first, torch.tensor(copy_of, dtype=torch.long)


def replace_with(new_acts: torch.Tensor) -> Callable:
    """An edit that replaces prompt i's activation by new_acts[i]."""
    return lambda acts, indices: new_acts[indices.to(new_acts.device)].to(acts.device)


def latent_swap(
    sae, base: torch.Tensor, source: torch.Tensor, latents: torch.Tensor, keep_error: bool = True
) -> torch.Tensor:
    """Interchange: copy `latents` of the source's SAE code into the base's and decode.

    keep_error=True returns h_b + (z_s − z_b)[S] @ W_dec[S], i.e. the SAE error term of the base
    is kept, so only the chosen latents act; keep_error=False returns decode(z_b with z_s[S]),
    as the RAVEL/SAEBench anchors do (the reconstruction error then also moves the output).
    """
    z_base, z_source = sae.encode(base), sae.encode(source)
    if keep_error:
        delta = (z_source[:, latents] - z_base[:, latents]) @ sae.W_dec[latents]
        return base + delta
    z_new = z_base.clone()
    z_new[:, latents] = z_source[:, latents]
    return sae.decode(z_new)


def best_latent_f1(active: torch.Tensor, label: torch.Tensor):
    """For a bool predicate matrix active [n, m] and bool label [n]: per-latent (precision,
    recall, f1) as float tensors [m]. Empty denominators count as 0. A label matrix [n, v]
    (one column per value) gives [v, m] tensors: row j is the result for label[:, j]."""
    active, label = active.bool(), label.bool()
    single = label.dim() == 1
    labels = label[:, None] if single else label
    # Counts of 0/1 products, exact in float64 (< 2^53): one matmul for every value at once.
    tp = labels.double().T @ active.double()  # [v, m]
    predicted = active.sum(0).double()
    positives = labels.sum(0).double()[:, None]
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = tp / positives.clamp_min(1)
    denominator = precision + recall
    f1 = torch.where(
        denominator > 0, 2 * precision * recall / denominator.clamp_min(1e-12), torch.zeros_like(tp)
    )
    if single:
        return precision[0], recall[0], f1[0]
    return precision, recall, f1


def latent_mcc(active: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Matthews correlation of each predicate column of `active` [n, m] with each label column
    of `label` [n, v] (or [n]): [v, m] (or [m]). A constant predicate or label scores 0, so an
    always-on latent, which F1 rewards with 2p/(1+p) at base rate p, gets nothing."""
    active, label = active.bool(), label.bool()
    single = label.dim() == 1
    labels = (label[:, None] if single else label).double()
    predicted = active.double()
    n = float(active.shape[0])
    tp = labels.T @ predicted  # [v, m], exact counts in float64
    positives = labels.sum(0)[:, None]
    fired = predicted.sum(0)[None, :]
    fp, fn = fired - tp, positives - tp
    tn = n - tp - fp - fn
    denominator = (fired * (n - fired) * positives * (n - positives)).sqrt()
    mcc = torch.where(
        denominator > 0, (tp * tn - fp * fn) / denominator.clamp_min(1e-300), torch.zeros_like(tp)
    )
    return mcc[0] if single else mcc


def separation_scores(codes: torch.Tensor, values: Sequence[str]) -> torch.Tensor:
    """Per-latent share of variance explained by a categorical variable (η², in [0, 1]).

    η² = Σ_v n_v (mean_v − mean)² / Σ (f − mean)²; 0 for latents that never vary.
    """
    codes = codes.double()
    mean = codes.mean(0)
    total = ((codes - mean) ** 2).sum(0)
    between = torch.zeros_like(mean)
    for value in sorted(set(values)):
        members = torch.tensor([v == value for v in values], device=codes.device)
        between += members.sum() * (codes[members].mean(0) - mean) ** 2
    return torch.where(total > 1e-12, between / total.clamp_min(1e-12), torch.zeros_like(total))
