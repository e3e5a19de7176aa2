"""The labelled texts sparse_probing probes: the toy world's candidate labels or a user's file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saebench.errors import ConfigError

DATA_SEED = 4242
MIN_PER_CLASS = 10


@dataclass(frozen=True)
class ProbeLabel:
    """One binary probing label: `positive` [n] marks the texts of one class, and `classes` [n]
    gives every text's class of the same variable, so the negatives of a balanced set are drawn
    evenly from the other classes."""

    name: str
    positive: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class LabelledTexts:
    texts: list[str]
    labels: tuple[ProbeLabel, ...]


def toy_labels(world, n: int) -> LabelledTexts:
    """The toy world's candidate labels on `n` probing sentences: each topic against the other
    topics, sentiment (needs the negation context), tense, number, negation, and the adjective's
    own polarity (one word, whatever the negation). Which of them are scored is decided by the
    raw-activation references (the package docstring), not here."""
    from saebench.toyworld.world import probe_text

    examples = world.generate("probing", n, seed=DATA_SEED)
    topic = np.array([e.labels["topic"] for e in examples])
    variables = {
        "sentiment": np.array([e.labels["sentiment"] for e in examples]),
        "tense": np.array([e.labels["tense"] for e in examples]),
        "number": np.array([e.labels["number"] for e in examples]),
        "negated": np.array([str(bool(e.labels["negated"])) for e in examples]),
    }
    # The word's polarity is the sentence's sentiment, flipped by a negation.
    adjective = np.array(
        [
            "positive"
            if (e.labels["sentiment"] == "positive") != e.labels["negated"]
            else "negative"
            for e in examples
        ]
    )
    positive_values = {
        "sentiment": "positive",
        "tense": "past",
        "number": "plural",
        "negated": "True",
    }
    labels = [ProbeLabel(f"topic_{t}", topic == t, topic) for t in sorted(set(topic))]
    labels += [
        ProbeLabel(name, values == positive_values[name], values)
        for name, values in variables.items()
    ]
    labels.append(ProbeLabel("adjective", adjective == "positive", adjective))
    return LabelledTexts([probe_text(e) for e in examples], tuple(labels))


def file_labels(path) -> LabelledTexts:
    """Texts and labels from a user's `text,label` CSV or JSONL file: one label per class
    against the other classes (one label when there are two classes)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"sparse_probing.data: {path} does not exist")
    try:
        frame = (
            pd.read_json(path, lines=True)
            if path.suffix in (".jsonl", ".json")
            else pd.read_csv(path)
        )
    except ValueError as error:
        raise ConfigError(
            f"sparse_probing.data: cannot read {path} ({error}); give a CSV with "
            "a header row or a JSONL file with one object per line"
        ) from None
    missing = {"text", "label"} - set(frame.columns)
    if missing:
        raise ConfigError(
            f"sparse_probing.data: {path} lacks column(s) {sorted(missing)}; "
            f"found {list(frame.columns)}. Name them `text` and `label`"
        )
    frame = frame.dropna(subset=["text", "label"])
    frame = frame[frame.text.astype(str).str.strip() != ""]
    values = frame.label.astype(str).to_numpy()
    classes, counts = np.unique(values, return_counts=True)
    if len(classes) < 2 or counts.min() < MIN_PER_CLASS:
        raise ConfigError(
            f"sparse_probing.data: {path} needs ≥ 2 label values with ≥ "
            f"{MIN_PER_CLASS} texts each; found {dict(zip(classes.tolist(), counts.tolist()))}"
        )
    chosen = classes[1:] if len(classes) == 2 else classes  # two classes: one binary label
    labels = tuple(ProbeLabel(f"label_{_safe(c)}", values == c, values) for c in chosen)
    return LabelledTexts(frame.text.astype(str).tolist(), labels)


def _safe(value: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", value).strip("_") or "blank"
