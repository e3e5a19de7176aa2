"""`saebench bench`: training-step throughput of every method against this machine's roofline.

A step is `saebench.training.optimization_step`, exactly what the engine runs (loss, backward,
decoder constraint, per-member clipping, fused Adam, dead-latent bookkeeping), on random data.
The roofline is measured, not assumed: the float32 rate of a [B, d] × [d, m] matmul on this
machine, and a method's roofline is the time of the dense matmul work its maths needs per
token (`DENSE_FLOPS`). Results are ratios and rates, never pass/fail.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

# Dense matmul FLOPs per token, in units of d·m. TopK: the encoder forward only (everything
# else is sparse in the k selected latents). L1/Tanh: encoder and decoder forward (4), the
# decoder's two backward products and the encoder weight gradient (6). Gated adds the
# auxiliary decoder's forward and input gradient (its decoder is detached): 14.
DENSE_FLOPS = {"topk": 2, "l1": 10, "tanh": 10, "gated": 14}
# The issue's simpler count (one matmul forward and backward: 6·d·m) for L1-like methods.
ISSUE_FLOPS = {"topk": 2, "l1": 6, "tanh": 6, "gated": 6}

SHAPES = (
    # (d_in, d_sae, batch): the large TopK shape, and the default preset's toy-world shape.
    (512, 8192, 1024),
    (128, 1024, 1024),
    (128, 2048, 1024),
)


@dataclass(frozen=True)
class StepResult:
    method: str
    d_in: int
    d_sae: int
    batch_size: int
    k: int | None
    group_size: int
    seconds_per_step: float
    tokens_per_second: float  # batch tokens per second of wall time (per member when grouped)
    sae_tokens_per_second: float  # group_size × tokens_per_second
    roofline_fraction: float | None  # the method's dense-FLOP time / the measured step time
    issue_roofline_fraction: float | None


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall seconds of `fn` over `repeats` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_gflops(d_in: int, d_sae: int, batch: int, repeats: int = 10) -> float:
    """Measured float32 GFLOP/s of x [B, d] @ W [d, m] on this machine (the roofline)."""
    x, w = torch.randn(batch, d_in), torch.randn(d_in, d_sae)
    seconds = timed(lambda: x @ w, repeats)
    return 2 * batch * d_in * d_sae / seconds / 1e9


def step_seconds(
    method_name: str,
    knob: float,
    d_in: int,
    d_sae: int,
    batch: int,
    group_size: int,
    repeats: int,
    dead_fraction: float = 0.0,
) -> float:
    """Median seconds of one engine step. `dead_fraction` of the latents are held dead (they
    never count as fired), so AuxK runs at that size; 0 times the step without it."""
    from saebench import plugins
    from saebench.groups import LoopedGroup
    from saebench.training import TrainConfig, build_group, make_optimizer, optimization_step

    method = plugins.get_method(method_name)
    group = build_group(method, d_in, d_sae, [knob] * group_size)
    torch.manual_seed(0)
    sample = torch.randn(4096, d_in)
    group.initialize(sample, list(range(group_size)), "mean")
    group.set_dead_window(10**9)
    n_dead = int(dead_fraction * d_sae)
    counters = (
        [m.tokens_since_fired for m in group.members]
        if isinstance(group, LoopedGroup)
        else [group.tokens_since_fired]
    )
    cfg = TrainConfig(d_sae=d_sae, total_tokens=batch, batch_size=batch, lr=1e-4, progress=False)
    optimizer = make_optimizer(group, cfg, torch.device("cpu"))
    batches = [torch.randn(batch, d_in) for _ in range(4)]
    state = {"i": 0}

    def step():
        state["i"] += 1
        for counter in counters:  # hold the first n_dead latents dead, the others alive
            counter.zero_()
            counter[..., :n_dead] = 10**10
        optimization_step(group, optimizer, batches[state["i"] % 4], 1.0, 1.0, "float32")

    return timed(step, repeats)


def bench_steps(
    methods: Sequence[str],
    shapes: Sequence[tuple[int, int, int]],
    group_sizes: Sequence[int] = (1,),
    k: int = 32,
    repeats: int = 10,
    dead_fraction: float = 0.0,
    echo: Callable[[str], None] = print,
) -> tuple[dict, list[StepResult]]:
    knobs = {"topk": k, "l1": 1.0, "tanh": 0.2, "gated": 1.0}
    machine: dict = {
        "threads": torch.get_num_threads(),
        "gemm_gflops": {},
        "dead_fraction": dead_fraction,
    }
    results = []
    for d_in, d_sae, batch in shapes:
        gflops = matmul_gflops(d_in, d_sae, batch)
        machine["gemm_gflops"][f"{d_in}x{d_sae}x{batch}"] = round(gflops, 1)
        echo(f"matmul [{batch},{d_in}]x[{d_in},{d_sae}]: {gflops:.0f} GFLOP/s")
        for name in methods:
            for size in group_sizes:
                seconds = step_seconds(
                    name, knobs.get(name, 1.0), d_in, d_sae, batch, size, repeats, dead_fraction
                )
                rate = batch / seconds
                work = size * d_in * d_sae * batch / (gflops * 1e9)  # seconds per d·m FLOP unit
                result = StepResult(
                    method=name,
                    d_in=d_in,
                    d_sae=d_sae,
                    batch_size=batch,
                    k=k if name == "topk" else None,
                    group_size=size,
                    seconds_per_step=round(seconds, 6),
                    tokens_per_second=round(rate, 1),
                    sae_tokens_per_second=round(rate * size, 1),
                    roofline_fraction=roofline_fraction(name, DENSE_FLOPS, work, seconds),
                    issue_roofline_fraction=roofline_fraction(name, ISSUE_FLOPS, work, seconds),
                )
                results.append(result)
                echo(format_result(result))
    return machine, results


def roofline_fraction(
    method: str, flops: dict[str, int], unit_seconds: float, seconds: float
) -> float | None:
    """The measured-matmul time of the method's dense work over its step time (None when the
    method's dense work is not known)."""
    if method not in flops:
        return None
    return round(flops[method] * unit_seconds / seconds, 4)


def format_result(r: StepResult) -> str:
    shape = f"d={r.d_in} m={r.d_sae} B={r.batch_size}" + (f" k={r.k}" if r.k else "")
    roof = f", {r.roofline_fraction:.0%} of roofline" if r.roofline_fraction is not None else ""
    group = f" ×{r.group_size} SAEs" if r.group_size > 1 else ""
    return (
        f"  {r.method:6} {shape}{group}: {r.sae_tokens_per_second:,.0f} SAE-tokens/s "
        f"({r.seconds_per_step * 1e3:.1f} ms/step{roof})"
    )


def as_json(machine: dict, results: Sequence[StepResult]) -> dict:
    return {"machine": machine, "steps": [asdict(r) for r in results]}
