"""One SAE's absorption on a hierarchy: main latents on the train words, scores held out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saebench_tasks.absorption import config
from saebench_tasks.absorption.ksparse import MainLatents, held_out_f1, main_latents
from saebench_tasks.absorption.metric import (
    SAEBENCH,
    Thresholds,
    ValueAbsorption,
    probe_alignment,
    token_absorption,
    value_absorption,
)
from saebench_tasks.absorption.probe import GroundTruth


@dataclass(frozen=True)
class SaeAbsorption:
    """Absorption per scored parent value, and the values left out by SAEBench's probe rule."""

    values: tuple[ValueAbsorption, ...]
    main: tuple[MainLatents, ...]  # the main latents of each scored value, in the same order
    skipped: tuple[str, ...]  # values whose raw probe's held-out F1 is <= MIN_PROBE_F1


@torch.no_grad()
def encode(sae, acts: torch.Tensor, device, batch: int = 4096) -> torch.Tensor:
    parts = [
        sae.encode(acts[i : i + batch].to(device)).float().cpu() for i in range(0, len(acts), batch)
    ]
    return torch.cat(parts)


@torch.no_grad()
def score_sae(sae, truth: GroundTruth, device, thresholds: Thresholds = SAEBENCH) -> SaeAbsorption:
    """For every parent value whose raw probe's held-out F1 is above MIN_PROBE_F1: the main
    latents from k-sparse probing on the train words' tokens, then absorption on the held-out
    tokens of the value that its probe calls positive (SAEBench's probe true positives)."""
    tokens = truth.tokens
    codes = encode(sae, tokens.acts, device)
    train = ~tokens.held_out
    train_codes = codes[train].double().numpy()
    decoder = sae.W_dec.detach().double().cpu()
    centred = tokens.acts.double() - sae.b_dec.detach().double().cpu()
    scored, chosen, skipped = [], [], []
    for probe in truth.probes:
        if not probe.held_out_f1 > config.MIN_PROBE_F1:
            skipped.append(probe.value)
            continue
        in_value = tokens.parents == probe.value
        main = main_latents(train_codes, in_value[train])
        rows = np.flatnonzero(tokens.held_out & in_value & (probe.scores > 0))
        dot, cos = probe_alignment(decoder, probe.direction)
        unit = probe.direction.double() / probe.direction.double().norm()
        ids = torch.from_numpy(main.ids)
        args = (codes[rows], dot, cos, centred[rows] @ unit, ids, thresholds)
        # Child-specific absorbers: latents that fire on under half of the value's train tokens.
        rate = (codes[torch.from_numpy(train & in_value)] > 0).double().mean(dim=0)
        specific = token_absorption(*args, eligible=rate < config.PARENT_LEVEL_RATE)
        held = tokens.held_out
        main_f1 = held_out_f1(main, codes[held].double().numpy(), in_value[held])
        scored.append(
            value_absorption(probe.value, token_absorption(*args), specific, len(main.ids), main_f1)
        )
        chosen.append(main)
    return SaeAbsorption(tuple(scored), tuple(chosen), tuple(skipped))
