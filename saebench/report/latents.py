"""Per-latent dashboards of one SAE, computed once and cached in the run directory.

For every latent: its firing density on the eval tokens and a histogram of its activations; the
top-activating eval contexts (a window around each of the TOP_CONTEXTS highest activations, at
most one per sequence window, each token's activation quantised 0-9 for highlighting); the logit
lens of its decoder direction (W_dec[i] @ W_U, the model's unembedding, with no final layer
norm: the tokens the direction promotes and suppresses when written to the residual stream); and
on a model with a ground-truth world, the label it fires on (saebench.report.groundtruth).

Cost: one SAE encode of the eval tokens, one matrix product with W_U, and (once per report, for
every SAE together) one model forward over the world's labelled examples. The record is cached
as RUN/saes/<method>/<knob>/seed<k>/artifacts/report_latents/latents.json, keyed by the harvest,
the SAE's weights and these settings: a report rebuilt later reuses it without the model.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saebench.fileio import write_text
from saebench.report.groundtruth import LabelledExamples, LatentLabels, label_latents
from saebench.rundir import RunDir, SaeKey

LATENTS_VERSION = 3  # bump when what the record holds, or how it is computed, changes
CACHE_TASK = "report_latents"  # the artifacts folder of each SAE the record is cached in
CACHE_FILE = "latents.json"
FEATURE_BUDGET = 1 << 24  # latent activations (or logits) held at once: 64 MB of float32
# Labelled world examples per family: enough for >= MIN_POSITIVES positives per half of most
# values; the smoke preset keeps the end-of-run report fast.
GT_EXAMPLES = {"smoke": 300, "default": 600, "full": 1000}


@dataclass(frozen=True)
class Settings:
    """What a dashboard record depends on besides the SAE and the harvest."""

    top_contexts: int = 8
    before: int = 10  # tokens shown before the activating token
    after: int = 3
    hist_bins: int = 12
    lens_tokens: int = 6  # top and bottom logit-lens tokens
    gt_examples: int = 600  # labelled world examples per family

    @classmethod
    def for_preset(cls, preset: str | None) -> Settings:
        return cls(gt_examples=GT_EXAMPLES.get(preset or "", GT_EXAMPLES["default"]))


@dataclass
class EvalData:
    """The run's eval tokens (harvested) and their activations at the hook."""

    tokens: np.ndarray  # int [n_seqs, ctx]
    mask: np.ndarray  # bool [n_seqs, ctx]: a real token (acts has a row for it)
    acts: torch.Tensor  # [n_real, d_in], row-major over the True entries of mask
    key: str  # the harvest cache key


@dataclass
class Inputs:
    """Everything the dashboards need besides the SAE; built once per report (it loads the
    model only when some SAE's record must be computed)."""

    eval: EvalData
    token_text: Callable[[int], str]
    device: Any
    unembed: torch.Tensor | None  # [d_in, vocab], None: no logit lens (unembed_reason says why)
    unembed_reason: str
    special_ids: frozenset[int]
    examples: LabelledExamples | None  # None: no ground truth (gt_reason says why)
    example_acts: list[torch.Tensor] | None  # per example [len_i, d_in]
    gt_reason: str


@dataclass
class GroundTruth:
    """The latents' ground-truth labels (see saebench.report.groundtruth.LatentLabels)."""

    names: list[str]
    label: list[int]
    precision: list[float]
    recall: list[float]
    f1: list[float]
    label_latent: list[int]
    label_f1: list[float]
    n_examples: int


@dataclass
class Dashboards:
    """The cached per-latent record of one SAE (lists indexed by latent)."""

    sae: str  # SaeKey.label
    method: str
    knob: float
    seed: int
    d_sae: int
    n_tokens: int
    fingerprint: dict[str, Any]
    density: list[float]
    max: list[float]
    mean: list[float]  # mean activation where active
    hist: list[list[int]]  # counts over hist_bins equal bins of (0, max]
    contexts: list[list[list[Any]]]  # per latent: [seq, pos, activation, start, digits]
    lens_top: list[list[list[float]]] | None  # per latent: [[token id, logit], ...]
    lens_bottom: list[list[list[float]]] | None
    lens_reason: str
    ground_truth: GroundTruth | None
    gt_reason: str
    sequences: dict[str, list[int]]  # the eval rows the contexts come from
    tokens: dict[str, str]  # token id -> text for every id in sequences and the lens
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> SaeKey:
        return SaeKey(self.method, float(self.knob), int(self.seed))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dashboards:
        data = dict(data)
        truth = data.pop("ground_truth", None)
        names = set(cls.__dataclass_fields__)
        record = cls(**{k: v for k, v in data.items() if k in names}, ground_truth=None)
        if truth is not None:
            record.ground_truth = GroundTruth(**truth)
        return record


def _round(values: np.ndarray, digits: int = 4) -> list[float]:
    """Floats rounded to `digits` significant digits (the page's size is mostly numbers)."""
    out = []
    for v in np.asarray(values, dtype=np.float64).tolist():
        out.append(float(f"{v:.{digits}g}") if np.isfinite(v) else 0.0)
    return out


def weights_digest(directory: Path) -> str:
    """sha256 of the SAE's files (weights and config): a changed SAE invalidates its record."""
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if (
            path.is_file()
            and path.suffix in (".safetensors", ".json", ".pt")
            and path.name not in ("train_log.json",)
        ):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def fingerprint(harvest_key: str, sae_directory: Path, settings: Settings) -> dict[str, Any]:
    return {
        "version": LATENTS_VERSION,
        "harvest": harvest_key,
        "weights": weights_digest(sae_directory),
        "settings": asdict(settings),
    }


def cache_path(run_dir: RunDir, key: SaeKey) -> Path:
    return run_dir.artifact_path(key, CACHE_TASK, CACHE_FILE)


def read_cached(run_dir: RunDir, key: SaeKey, expected: dict[str, Any]) -> Dashboards | None:
    """The cached record when it was computed for this harvest, these weights and settings."""
    path = cache_path(run_dir, key)
    if not path.exists():
        return None
    try:
        record = Dashboards.from_json(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError):
        return None  # unreadable or from other code: recompute (and overwrite) it
    return record if record.fingerprint == expected else None


def write_cached(run_dir: RunDir, record: Dashboards) -> Path:
    """Atomically, as compact JSON (an indented record of 1024 latents is twice the size)."""
    path = cache_path(run_dir, record.key)
    write_text(path, json.dumps(record.to_json(), separators=(",", ":")) + "\n")
    return path


def batch_rows(d_sae: int) -> int:
    """Tokens encoded at a time: ~FEATURE_BUDGET latent activations (64 MB of float32) per
    batch, so a 16k-wide SAE on 200k eval tokens (the full preset) never holds them all."""
    return max(64, FEATURE_BUDGET // max(d_sae, 1))


def batches(sae, acts: torch.Tensor, device) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, [b, d_sae] float32 CPU latent activations) over `acts` [n, d_in]."""
    step = batch_rows(sae.d_sae)
    for start in range(0, len(acts), step):
        yield start, sae.encode(acts[start : start + step].to(device)).float().cpu()


@dataclass
class Scan:
    """The first pass over the eval tokens: per-latent counts, sums and maxima, and the
    CANDIDATES highest activations of each latent (values and token rows, best first)."""

    counts: torch.Tensor  # [d_sae] tokens where active
    sums: torch.Tensor
    maxima: torch.Tensor
    top_values: torch.Tensor  # [k, d_sae]
    top_rows: torch.Tensor  # [k, d_sae] row of eval acts


@torch.no_grad()
def scan(sae, acts: torch.Tensor, device, candidates: int) -> Scan:
    d_sae = sae.d_sae
    counts = torch.zeros(d_sae, dtype=torch.long)
    sums, maxima = torch.zeros(d_sae), torch.zeros(d_sae)
    top_values = torch.full((0, d_sae), float("-inf"))
    top_rows = torch.zeros((0, d_sae), dtype=torch.long)
    for start, features in batches(sae, acts, device):
        counts += (features > 0).sum(0)
        sums += features.sum(0)
        maxima = torch.maximum(maxima, features.amax(0))
        k = min(candidates, len(features))
        values, rows = torch.topk(features, k, dim=0)
        merged_values = torch.cat([top_values, values])
        merged_rows = torch.cat([top_rows, rows + start])
        keep = min(candidates, len(merged_values))
        top_values, order = torch.topk(merged_values, keep, dim=0)
        top_rows = torch.gather(merged_rows, 0, order)
    return Scan(counts, sums, maxima, top_values, top_rows)


def pick_contexts(
    found: Scan, eval_data: EvalData, settings: Settings
) -> list[list[tuple[int, int, float, int, np.ndarray]]]:
    """Per latent, up to `top_contexts` (seq, pos, activation, window start, window rows of
    eval acts, -1 for a special token), highest first; a context within a window of one
    already shown in the same sequence is skipped (the same occurrence, one token later)."""
    n_seqs, width = eval_data.mask.shape
    rows, columns = np.nonzero(eval_data.mask)  # row-major: the order of eval acts' rows
    grid = np.full((n_seqs, width), -1, dtype=np.int64)
    grid[rows, columns] = np.arange(len(rows))
    span = settings.before + settings.after + 1
    values, indices = found.top_values.numpy(), found.top_rows.numpy()
    out = []
    for latent in range(values.shape[1]):
        picked: list[tuple[int, int, float, int, np.ndarray]] = []
        for value, index in zip(values[:, latent], indices[:, latent]):
            if not value > 0 or len(picked) >= settings.top_contexts:
                break
            seq, pos = int(rows[index]), int(columns[index])
            if any(s == seq and abs(p - pos) <= span for s, p, *_ in picked):
                continue
            start = max(0, pos - settings.before)
            window = grid[seq, start : min(width, start + span)]
            picked.append((seq, pos, float(value), start, window))
        out.append(picked)
    return out


@torch.no_grad()
def second_pass(
    sae, acts: torch.Tensor, device, maxima: torch.Tensor, bins: int, wanted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """([d_sae, bins] histogram of each latent's positive activations over equal bins of
    (0, its max], the activations at `wanted` [(row, latent), ...] pairs)."""
    d_sae = sae.d_sae
    hist = np.zeros(d_sae * bins, dtype=np.int64)
    scale = torch.where(maxima > 0, maxima, torch.ones_like(maxima))
    offsets = torch.arange(d_sae) * bins
    values = np.zeros(len(wanted), dtype=np.float64)
    for start, features in batches(sae, acts, device):
        index = torch.ceil(features / scale * bins).clamp(1, bins).long() - 1
        flat = (index + offsets)[features > 0]
        hist += np.bincount(flat.numpy(), minlength=d_sae * bins)
        inside = (wanted[:, 0] >= start) & (wanted[:, 0] < start + len(features))
        if inside.any():
            local = features.numpy()
            values[inside] = local[wanted[inside, 0] - start, wanted[inside, 1]]
    return hist.reshape(d_sae, bins), values


def context_records(
    picked: list[list[tuple[int, int, float, int, np.ndarray]]],
    sae,
    acts: torch.Tensor,
    device,
    found: Scan,
    bins: int,
) -> tuple[list[list[list[Any]]], np.ndarray, set[int]]:
    """(per latent [seq, pos, activation, start, digits], histograms, sequences used): the
    window tokens' activations, quantised 0-9 of the latent's top activation ('-': special)."""
    pairs = [
        (int(row), latent)
        for latent, contexts in enumerate(picked)
        for *_, window in contexts
        for row in window
        if row >= 0
    ]
    wanted = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    hist, values = second_pass(sae, acts, device, found.maxima, bins, wanted)
    lookup = {pair: value for pair, value in zip(pairs, values.tolist())}
    out: list[list[list[Any]]] = []
    used: set[int] = set()
    for latent, contexts in enumerate(picked):
        records = []
        for seq, pos, value, start, window in contexts:
            peak = float(found.top_values[0, latent]) or 1.0
            digits = "".join(
                "-"
                if row < 0
                else str(int(np.ceil(min(max(lookup[(int(row), latent)] / peak, 0.0), 1.0) * 9)))
                for row in window
            )
            records.append([seq, pos, float(f"{value:.4g}"), int(start), digits])
            used.add(seq)
        out.append(records)
    return out, hist, used


@torch.no_grad()
def logit_lens(
    decoder: torch.Tensor, unembed: torch.Tensor, special_ids: frozenset[int], n: int
) -> tuple[list[list[list[float]]], list[list[list[float]]]]:
    """Per latent, the n tokens whose logits its decoder direction raises most and least:
    [[token id, logit], ...] (special tokens left out)."""
    unembed = unembed.float().cpu()
    vocab = unembed.shape[1]
    ids = torch.tensor(sorted(i for i in special_ids if i < vocab), dtype=torch.long)
    n = min(n, vocab)
    tops, bottoms = [], []
    step = max(1, FEATURE_BUDGET // max(vocab, 1))  # [step, vocab] logits at a time
    for start in range(0, decoder.shape[0], step):
        logits = decoder[start : start + step].float().cpu() @ unembed
        high, low = logits, logits.clone()
        high[:, ids], low[:, ids] = float("-inf"), float("inf")
        tops.append(torch.topk(high, n, dim=1))
        bottoms.append(torch.topk(low, n, dim=1, largest=False))
    top_values = torch.cat([t.values for t in tops])
    top_ids = torch.cat([t.indices for t in tops])
    bottom_values = torch.cat([b.values for b in bottoms])
    bottom_ids = torch.cat([b.indices for b in bottoms])

    def pairs(ids: torch.Tensor, values: torch.Tensor) -> list[list[list[float]]]:
        return [
            [[int(i), float(f"{v:.3g}")] for i, v in zip(row_ids, row_values)]
            for row_ids, row_values in zip(ids.tolist(), values.tolist())
        ]

    return pairs(top_ids, top_values), pairs(bottom_ids, bottom_values)


@torch.no_grad()
def example_fires(sae, example_acts: Sequence[torch.Tensor], device) -> np.ndarray:
    """bool [n_examples, d_sae]: the latent is active at some token of the example."""
    step = batch_rows(sae.d_sae)
    fired, group, size = [], [], 0
    for acts in [*example_acts, None]:  # examples in groups of about `step` tokens
        if acts is not None:
            group.append(acts)
            size += len(acts)
        if group and (acts is None or size >= step):
            features = sae.encode(torch.cat(group).to(device)).float().cpu()
            lengths = [len(a) for a in group]
            fired += [chunk.amax(0) > 0 for chunk in torch.split(features, lengths)]
            group, size = [], 0
    return torch.stack(fired).numpy()


def ground_truth_record(sae, inputs: Inputs) -> GroundTruth | None:
    if inputs.examples is None or inputs.example_acts is None:
        return None
    labels: LatentLabels = label_latents(
        example_fires(sae, inputs.example_acts, inputs.device), inputs.examples
    )
    return GroundTruth(
        names=list(inputs.examples.names),
        label=labels.label.tolist(),
        precision=_round(labels.precision, 3),
        recall=_round(labels.recall, 3),
        f1=_round(labels.f1, 3),
        label_latent=labels.label_latent.tolist(),
        label_f1=_round(labels.label_f1, 3),
        n_examples=len(inputs.examples.texts),
    )


def compute_dashboards(
    sae, key: SaeKey, inputs: Inputs, settings: Settings, expected: dict[str, Any]
) -> Dashboards:
    """The record of one SAE (`sae` on inputs.device, in eval mode)."""
    started = time.time()
    acts = inputs.eval.acts
    n_tokens = len(acts)
    found = scan(sae, acts, inputs.device, settings.top_contexts * 8)
    counts = found.counts
    means = torch.where(counts > 0, found.sums / counts.clamp_min(1), torch.zeros(1))
    picked = pick_contexts(found, inputs.eval, settings)
    contexts, hist, used = context_records(
        picked, sae, acts, inputs.device, found, settings.hist_bins
    )
    lens_top: list[list[list[float]]] | None = None
    lens_bottom: list[list[list[float]]] | None = None
    if inputs.unembed is not None and inputs.unembed.shape[0] == sae.W_dec.shape[1]:
        lens_top, lens_bottom = logit_lens(
            sae.W_dec.detach(), inputs.unembed, inputs.special_ids, settings.lens_tokens
        )
        lens_reason = ""
    else:
        lens_reason = inputs.unembed_reason or (
            f"the decoder writes {sae.W_dec.shape[1]}-dimensional vectors, the unembedding "
            "reads another width (the hook is not the residual stream)"
        )
    sequences = {str(s): inputs.eval.tokens[s].tolist() for s in sorted(used)}
    ids = {i for row in sequences.values() for i in row}
    for lens in (lens_top or []), (lens_bottom or []):
        ids.update(int(i) for latent in lens for i, _ in latent)
    truth = ground_truth_record(sae, inputs)
    return Dashboards(
        sae=key.label,
        method=key.method,
        knob=key.knob,
        seed=key.seed,
        d_sae=int(sae.d_sae),
        n_tokens=n_tokens,
        fingerprint=expected,
        density=_round((counts.float() / max(n_tokens, 1)).numpy()),
        max=_round(found.maxima.numpy()),
        mean=_round(means.numpy()),
        hist=hist.tolist(),
        contexts=contexts,
        lens_top=lens_top,
        lens_bottom=lens_bottom,
        lens_reason=lens_reason,
        ground_truth=truth,
        gt_reason="" if truth is not None else inputs.gt_reason,
        sequences=sequences,
        tokens={str(i): inputs.token_text(i) for i in sorted(ids)},
        seconds=round(time.time() - started, 3),
    )


def build_inputs(model, store, hook: str, settings: Settings, device, harvest_key: str) -> Inputs:
    """Inputs from a loaded model (ModelHandle) and its harvested store (HarvestedStore)."""
    from saebench.probing import example_activations
    from saebench.report.groundtruth import MIN_POSITIVES, world_examples

    tokenizer = model.tokenizer
    unembed, unembed_reason = None, ""
    if not model.is_causal_lm:
        unembed_reason = "the model is an encoder without a language-model head: no logit lens"
    else:
        try:
            unembed = model.bridge.W_U.detach()
        except (AttributeError, RuntimeError, KeyError):
            unembed_reason = "the model exposes no unembedding (W_U): no logit lens"
    examples, example_acts, gt_reason = None, None, ""
    if model.world is None:
        gt_reason = "the model has no ground-truth world (only the toy world's models do)"
    else:
        examples = world_examples(model.world, settings.gt_examples)
        if examples is None:
            gt_reason = (
                f"no ground-truth value has {MIN_POSITIVES} positives in each half of "
                f"{settings.gt_examples} examples per family"
            )
        else:
            example_acts = example_activations(
                model.bridge, tokenizer, hook, list(examples.texts), device
            )
    return Inputs(
        eval=EvalData(
            tokens=store.eval_tokens.numpy(),
            mask=store.eval_mask.numpy().astype(bool),
            acts=store.eval_acts,
            key=harvest_key,
        ),
        token_text=lambda token: tokenizer.decode([token]),
        device=device,
        unembed=unembed,
        unembed_reason=unembed_reason,
        special_ids=frozenset(model.special_token_ids),
        examples=examples,
        example_acts=example_acts,
        gt_reason=gt_reason,
    )
