"""Is a preset's budget enough? Train each method's sweep at the budget and at `factor`× the
budget on the same activations, and compare the final FVU and L0 on the eval set.

A method passes when every knob's FVU and L0 at the budget are within `tolerance` (relative) of
what `factor`× the tokens gives: then the matched-L0 comparison measures the method, not how
fast it converges. `saebench converge` prints the table; the presets are chosen with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from saebench.metrics import fvu, l0
from saebench.training import TrainConfig, train_group

DEFAULT_TOLERANCE = 0.10


@dataclass(frozen=True)
class ConvergenceRow:
    method: str
    knob: float
    seed: int
    tokens: int
    fvu: float
    l0: float
    fvu_long: float
    l0_long: float
    seconds: float  # training wall seconds of the budget run, for the whole group

    @property
    def fvu_change(self) -> float:
        """(budget − long) / long: how much better the longer run reconstructs."""
        return (self.fvu - self.fvu_long) / max(abs(self.fvu_long), 1e-12)

    @property
    def l0_change(self) -> float:
        return (self.l0 - self.l0_long) / max(abs(self.l0_long), 1e-12)

    def converged(self, tolerance: float = DEFAULT_TOLERANCE) -> bool:
        return abs(self.fvu_change) <= tolerance and abs(self.l0_change) <= tolerance


def eval_fvu_l0(sae, eval_acts: torch.Tensor, device) -> tuple[float, float]:
    with torch.no_grad():
        x = eval_acts.to(device)
        f = sae.to(device).encode(x)
        return fvu(x, sae.decode(f)), l0(f)


def check_convergence(
    method,
    knobs: Sequence[float],
    store,
    cfg: TrainConfig,
    factor: float = 4.0,
    seeds: Sequence[int] = (0,),
    device="cpu",
    echo: Callable[[str], None] = print,
) -> list[ConvergenceRow]:
    """One row per (knob, seed): the eval FVU and L0 at cfg.total_tokens and at factor× it."""
    members = [(knob, seed) for knob in knobs for seed in seeds]
    runs = {}
    for label, tokens in (("budget", cfg.total_tokens), ("long", int(cfg.total_tokens * factor))):
        trained = train_group(method, members, store, replace(cfg, total_tokens=tokens), device)
        failed = [m for m in trained if m.error is not None]
        if failed:
            raise failed[0].error  # type: ignore[misc]
        runs[label] = trained
        seconds = trained[0].log.get("seconds", 0.0)
        echo(f"  {method.name}: {len(members)} SAEs × {tokens:,} tokens in {seconds:.0f}s")
    rows = []
    for short, long in zip(runs["budget"], runs["long"]):
        fvu_short, l0_short = eval_fvu_l0(short.sae, store.eval_acts, device)
        fvu_long, l0_long = eval_fvu_l0(long.sae, store.eval_acts, device)
        rows.append(
            ConvergenceRow(
                method=method.name,
                knob=short.knob,
                seed=short.seed,
                tokens=cfg.total_tokens,
                fvu=fvu_short,
                l0=l0_short,
                fvu_long=fvu_long,
                l0_long=l0_long,
                seconds=float(short.log.get("seconds", 0.0)),
            )
        )
    return rows


def format_rows(rows: Sequence[ConvergenceRow], factor: float, tolerance: float) -> str:
    lines = [
        f"| method | knob | seed | FVU | FVU at {factor:g}× | ΔFVU | L0 | L0 at {factor:g}× | ΔL0 | "
        f"within {tolerance:.0%} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.method} | {r.knob:g} | {r.seed} | {r.fvu:.4f} | {r.fvu_long:.4f} | "
            f"{r.fvu_change:+.1%} | {r.l0:.2f} | {r.l0_long:.2f} | {r.l0_change:+.1%} | "
            f"{'yes' if r.converged(tolerance) else '**no**'} |"
        )
    return "\n".join(lines)
