"""The ground_truth task's examples: per group of known variables, the texts, the token each
is read at (None: the sentence, mean-pooled) and the boolean label of every value; and the
fixed train / held-out split every SAE, seed and reference shares."""

from __future__ import annotations

import numpy as np
import torch

from saebench.probing import example_activations, label_strata, mean_pool, stratified_split

N_EXAMPLES = {"smoke": 240, "default": 800, "full": 3000}
DATA_SEED = 777
# An IO name seen fewer times leaves < 5 positives in a half: a held-out score too noisy to use.
MIN_POSITIVES = 10
TRAIN_FRACTION = 0.5  # selection needs only a ranking; the held-out score needs the positives
SPLIT_SEED = DATA_SEED + 1  # salted: the split must not align with the data generator's draws
# A fact attribute with more values leaves too few positives per value at smoke size (v1's 38
# countries and 22 languages); v1 keeps its continents, v2 all three of its attributes.
MAX_ATTRIBUTE_VALUES = 8


def detector_units(world, n: int):
    """{group: (texts, positions or None for sentence pooling, {value name: bool labels})}: up
    to n examples per group, each with a context (up to the read word) of its own."""
    from saebench.toyworld.world import DAYS, MONTHS, probe_text, probing_labels

    units = {}
    probing = unique_contexts(world.generate("probing", 2 * n, seed=DATA_SEED), None, n, probe_text)
    labels = {
        f"{variable}={value}": np.array(flags)
        for (variable, value), flags in probing_labels(probing).items()
    }
    units["sentence"] = ([probe_text(e) for e in probing], None, labels)
    calendar = world.generate("calendar", 3 * n, seed=DATA_SEED)
    for kind, values in (("day", DAYS), ("month", MONTHS)):
        of_kind = [e for e in calendar if e.labels["kind"] == kind]
        chosen = unique_contexts(of_kind, operand_index, n)
        positions = [operand_index(e) for e in chosen]
        labels = {
            f"{kind}={v}": np.array([e.labels["start"] == i for e in chosen])
            for i, v in enumerate(values)
        }
        units[kind] = ([e.text for e in chosen], positions, labels)
    entity_at = lambda e: last_word_of(e.prompt.split(), e.labels["entity"].split())  # noqa: E731
    facts = unique_contexts(world.generate("facts", 3 * n, seed=DATA_SEED), entity_at, n, prompt_of)
    table = {c["city"]: c for c in world.cities}
    positions = [entity_at(e) for e in facts]
    for attribute in world.attributes:
        values = sorted({c[attribute] for c in world.cities})
        if len(values) > MAX_ATTRIBUTE_VALUES:
            continue
        labels = {
            f"{attribute}={v}": np.array([table[e.labels["entity"]][attribute] == v for e in facts])
            for v in values
        }
        units[attribute] = ([e.prompt for e in facts], positions, labels)
    last = lambda e: len(e.prompt.split()) - 1  # noqa: E731
    ioi = unique_contexts(world.generate("ioi", 2 * n, seed=DATA_SEED), last, n, prompt_of)
    positions = [len(e.prompt.split()) - 1 for e in ioi]
    labels = {"order=ABBA": np.array([e.labels["order"] == "ABBA" for e in ioi])}
    for name in sorted({e.labels["io"] for e in ioi}):
        flags = np.array([e.labels["io"] == name for e in ioi])
        if flags.sum() >= MIN_POSITIVES:
            labels[f"io={name}"] = flags
    units["ioi"] = ([e.prompt for e in ioi], positions, labels)
    return units


def prompt_of(example) -> str:
    return example.prompt


def operand_index(example) -> int:
    """Word index of a calendar example's day or month word: the first in a plain mention, the
    operand's (its last mention in the prompt, after any distractor) in an arithmetic prompt.
    The label is the effective operand (toy world v4 names the day a shift counts from)."""
    from saebench.toyworld.world import operand_word

    word = operand_word(example)
    if example.labels["mention"]:
        return example.text.split().index(word)
    return last_word_of(example.prompt.split(), [word])


def last_word_of(words: list[str], phrase: list[str]) -> int:
    """Index in `words` of the last word of the last occurrence of `phrase` (a city's name may
    be two words, and its last word is where the model has composed it)."""
    width = len(phrase)
    for start in range(len(words) - width, -1, -1):
        if words[start : start + width] == phrase:
            return start + width - 1
    raise ValueError(f"{' '.join(phrase)!r} does not occur in {' '.join(words)!r}")


def unique_contexts(examples, read_at, n: int, text_of=lambda e: e.text) -> list:
    """The first `n` examples whose context up to the read word (`read_at(example)`; None: the
    whole of `text_of(example)`) is new. The model is causal, so two examples with the same context have the
    same activation there: one on each side of the split would score a memorised train row
    as held out."""
    seen: set[str] = set()
    kept = []
    for example in examples:
        words = text_of(example).split()
        context = " ".join(words if read_at is None else words[: read_at(example) + 1])
        if context not in seen:
            seen.add(context)
            kept.append(example)
            if len(kept) == n:
                break
    return kept


def value_key(value: str) -> str:
    """ "topic=sports" -> "topic_sports": a metric-name-safe label."""
    return "".join(c if c.isalnum() else "_" for c in value.lower())


def unit_activations(ctx):
    """Per group: (per-example activations, positions, labels). Computed once per preset."""
    return ctx.once(("unit_activations", ctx.preset), lambda: _unit_activations(ctx))


def _unit_activations(ctx):
    groups = {}
    units = detector_units(ctx.model.world, N_EXAMPLES.get(ctx.preset, 800))
    computed: dict[tuple[str, ...], list] = {}  # the fact attributes share one set of prompts
    for group, (texts, positions, labels) in units.items():
        key = tuple(texts)
        if key not in computed:
            computed[key] = example_activations(
                ctx.model.bridge, ctx.model.tokenizer, ctx.hook, texts, ctx.device
            )
        groups[group] = (computed[key], positions, labels)
    return groups


def features_for(acts, positions, encode=None):
    if positions is None:
        return mean_pool(acts, encode).numpy()
    picked = torch.stack([a[p] for a, p in zip(acts, positions)])
    return (encode(picked) if encode else picked).float().cpu().numpy()


def label_matrix(labels: dict) -> np.ndarray:
    """[n, n_values] boolean matrix, one column per value in the dict's order."""
    return np.stack([np.asarray(labels[value], bool) for value in labels], axis=1)


def held_out_split(labels: dict) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) rows of one group: fixed seed, stratified by the combination of labels.
    Fixed (not ctx.seed) so every SAE, seed and the validity check see the same halves."""
    return stratified_split(label_strata(label_matrix(labels)), SPLIT_SEED, TRAIN_FRACTION)
