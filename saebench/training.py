"""The one training engine every method shares.

Adam, linear lr warmup and linear decay to 0 over the last 20%, sparsity-coefficient warmup,
grad-norm clipping, token-based dead-latent tracking, seeds, a tqdm progress bar. Inputs are
scaled so that E‖x‖ = √d_in (SAELens convention), and the scale is folded back into the weights,
so the returned SAE works on raw activations. Every choice is recorded in `sae.cfg`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch

from saebench.errors import ConfigError, SaebenchError
from saebench.groups import GroupStep, LoopedGroup, SAEGroup
from saebench.sae import total_variance

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class TrainingDiverged(SaebenchError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    d_sae: int
    total_tokens: int
    batch_size: int = 1024
    lr: float = 3e-4
    adam_betas: tuple = (0.9, 0.999)
    lr_warmup_frac: float = 0.02
    lr_decay_frac: float = 0.2
    sparsity_warmup_frac: float = 0.05
    grad_clip: float = 1.0
    dead_window_tokens: int = 200_000
    normalize: str = "expected_norm_sqrt_d"  # or "none"
    init_b_dec: str = "geometric_median"
    init_sample_tokens: int = 8192
    seed: int = 0  # a single SAE's init seed (train_group takes one per member)
    data_seed: int = 0  # the batch order and the init sample, shared by every member
    curve_points: int = 100  # points of the saved training curve
    dtype: str = "float32"  # or "bfloat16": autocast of the forward (GPU)
    compile: bool = False  # torch.compile the loss of groups that allow it (SAEGroup.compilable)
    # A group's activations [S, B, d_sae] stay under this many elements: larger groups are
    # trained in consecutive chunks (the same batches, so the same SAEs).
    max_group_elements: int = 2**26
    progress: bool = True


def input_scale(sample: torch.Tensor, normalize: str) -> float:
    """Scale s with E‖s·x‖ = √d (estimated on a sample)."""
    if normalize == "none":
        return 1.0
    if normalize != "expected_norm_sqrt_d":
        raise ValueError(f"normalize must be 'expected_norm_sqrt_d' or 'none', got {normalize!r}")
    mean_norm = sample.norm(dim=1).mean().item()
    if not math.isfinite(mean_norm) or mean_norm == 0:
        raise ConfigError(
            f"cannot normalise activations: their mean norm is {mean_norm}; check "
            f"the activation store (all zeros or NaN?) or pass normalize='none'"
        )
    return math.sqrt(sample.shape[1]) / mean_norm


def lr_multiplier(step: int, total_steps: int, warmup_frac: float, decay_frac: float) -> float:
    warmup = max(1, int(warmup_frac * total_steps))
    decay_start = int((1 - decay_frac) * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if step >= decay_start:
        return max(0.0, (total_steps - step) / max(1, total_steps - decay_start))
    return 1.0


def effective_config(cfg: TrainConfig, sae) -> TrainConfig:
    """The config actually used: the store-independent defaults plus the method's own recipe.

    A method class may set `recipe_overrides` (e.g. gated: Adam β1 = 0, as in its paper); they
    replace the shared defaults and are recorded in `sae.cfg`.
    """
    overrides = dict(getattr(sae, "recipe_overrides", {}) or {})
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ConfigError(
            f"{type(sae).__name__}.recipe_overrides names unknown TrainConfig "
            f"fields {sorted(unknown)}; valid: {[f.name for f in fields(TrainConfig)]}"
        )
    return replace(cfg, **overrides)


@dataclass(frozen=True)
class TrainedMember:
    """One member's outcome: the SAE on raw activations and its log, or why it failed."""

    knob: float
    seed: int
    sae: Any = None
    log: dict[str, Any] = field(default_factory=dict)
    error: Exception | None = None
    # fraction of the budget -> a copy of the SAE at that point (on raw activations), when asked
    snapshots: dict[float, Any] = field(default_factory=dict)


def build_group(method, d_in: int, d_sae: int, knobs: Sequence[float]) -> SAEGroup:
    """The method's stacked group when it has one, else its per-SAE builds looped."""
    if method.build_group is not None:
        return method.build_group(d_in=d_in, d_sae=d_sae, knobs=list(knobs))
    return LoopedGroup([method.build(d_in=d_in, d_sae=d_sae, knob=k) for k in knobs], knobs)


def train_sae(method, knob, store, cfg: TrainConfig, device="cpu"):
    """Train (or fit) one SAE of `method` at sparsity `knob`; return (sae on raw acts, log).

    A group of one (see `train_group`); raises the member's error if it failed."""
    (member,) = train_group(method, [(knob, cfg.seed)], store, cfg, device)
    if member.error is not None:
        raise member.error
    return member.sae, member.log


def snapshot_steps(fractions: Sequence[float], total_steps: int) -> dict[int, float]:
    """The step after which each fraction of the budget is reached (fraction 1: the last)."""
    steps = {}
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ConfigError(f"snapshot fractions must be in (0, 1], got {fraction}")
        steps[max(1, round(fraction * total_steps)) - 1] = float(fraction)
    return steps


def _member_copy(group: SAEGroup, index: int, scale: float) -> Any:
    sae = copy.deepcopy(group.member(index))
    sae.fold_input_scale(scale)
    return sae.eval()


def train_group(
    method,
    members: Sequence[tuple[float, int]],
    store,
    cfg: TrainConfig,
    device="cpu",
    snapshots: Sequence[float] = (),
) -> list[TrainedMember]:
    """Train every (knob, seed) of `method` in one pass over the same batches.

    Seeds set each member's initialisation; the batches (and the init sample that sets the input
    scale and b_dec) come from `cfg.data_seed`, so a member trains the same whether it is alone
    or in a group. A member that diverges fails alone (its error is returned, the others train
    on). Each log holds the training curve (`curve`: loss, mse, fvu, l0, dead fraction at
    `cfg.curve_points` points), the final interval's averages, speed, and the effective config.
    `snapshots`: fractions of the budget at which a copy of every member is kept (the same SAE
    along its own trajectory, for the reliability audit; not saved to disk).
    """
    knobs = [method.check_knob(knob) for knob, _ in members]
    seeds = [int(seed) for _, seed in members]
    if cfg.d_sae < 1 or cfg.total_tokens < 1 or cfg.batch_size < 1:
        raise ConfigError(
            f"TrainConfig needs d_sae, total_tokens and batch_size >= 1 (got "
            f"{cfg.d_sae}, {cfg.total_tokens}, {cfg.batch_size})"
        )
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}; got {cfg.dtype!r}")
    chunk = max(1, cfg.max_group_elements // max(1, cfg.batch_size * cfg.d_sae))
    if method.trainable and len(members) > chunk:
        return [
            trained
            for start in range(0, len(members), chunk)
            for trained in train_group(
                method, members[start : start + chunk], store, cfg, device, snapshots
            )
        ]
    torch.manual_seed(cfg.data_seed)
    sample = store.sample(cfg.init_sample_tokens, cfg.data_seed)
    if not method.trainable:
        return [fit_member(method, knob, seed, sample, cfg, device) for knob, seed in members]
    started = time.time()
    group = build_group(method, store.d_in, cfg.d_sae, knobs)
    # The store may be smaller than a batch (tiny runs): clip rather than never yield a batch.
    cfg = replace(
        effective_config(cfg, group), batch_size=min(cfg.batch_size, store.n_train_tokens)
    )
    scale = input_scale(sample, cfg.normalize)
    group.initialize(sample * scale, seeds, cfg.init_b_dec)
    group.set_dead_window(cfg.dead_window_tokens)
    device = torch.device(device)
    group.to(device).train()
    optimizer = make_optimizer(group, cfg, device)
    compiled = cfg.compile and group.compilable
    if compiled:
        group.training_loss = torch.compile(group.training_loss)  # type: ignore[method-assign]
    total_steps = max(1, cfg.total_tokens // cfg.batch_size)
    variance = total_variance(sample * scale)
    curve = CurveRecorder(len(members), total_steps, cfg.curve_points, cfg.batch_size, variance)
    progress = progress_bar(cfg, total_steps, group_label(method, knobs))
    batches = device_batches(store, cfg.batch_size, cfg.data_seed, device)
    snapshot_at = snapshot_steps(snapshots, total_steps)
    kept: list[dict[float, Any]] = [{} for _ in members]
    loop_started = time.time()  # tokens/s measures the optimisation loop, not init
    for step in range(total_steps):
        x = next(batches) * scale
        for param_group in optimizer.param_groups:
            param_group["lr"] = cfg.lr * lr_multiplier(
                step, total_steps, cfg.lr_warmup_frac, cfg.lr_decay_frac
            )
        sparsity_scale: float | torch.Tensor = min(
            1.0, (step + 1) / max(1, cfg.sparsity_warmup_frac * total_steps)
        )
        if compiled:  # a Python float would be a constant of the compiled graph: one per step
            sparsity_scale = torch.tensor(sparsity_scale, device=device)
        out = optimization_step(group, optimizer, x, sparsity_scale, cfg.grad_clip, cfg.dtype)
        curve.add(step, out, group.dead_mask())
        if step in snapshot_at:
            for index in range(len(members)):
                kept[index][snapshot_at[step]] = _member_copy(group, index, scale)
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()
    loop_seconds = time.time() - loop_started
    seconds = time.time() - started
    tokens_seen = total_steps * cfg.batch_size
    dead = group.dead_mask().sum(1).tolist()
    results = []
    for index, (knob, seed) in enumerate(members):
        member_curve = curve.member(index)
        diverged = curve.diverged_at(index)
        if diverged is not None:
            error = TrainingDiverged(
                f"{method.name} {method.knob}={knob} seed {seed}: the loss became non-finite "
                f"by {diverged:,} tokens; lower the learning rate (TrainConfig.lr={cfg.lr}) "
                f"or the sparsity coefficient"
            )
            results.append(TrainedMember(knob, seed, error=error))
            continue
        sae = group.member(index)
        sae.cfg.update(group.member_cfg(index))
        sae.fold_input_scale(scale)
        final = curve.final(member_curve)
        sae.cfg.update(
            method=method.name,
            knob=knob,
            seed=seed,
            train_config=_jsonable(asdict(replace(cfg, seed=seed))),
            recipe_overrides=_jsonable(dict(group.recipe_overrides or {})),
            normalize_activations=cfg.normalize,
            input_scale=scale,
        )
        log = {
            "method": method.name,
            "knob": knob,
            "seed": seed,
            "trainable": True,
            "tokens_seen": tokens_seen,
            "steps": total_steps,
            "seconds": round(seconds, 3),
            "group_size": len(members),
            # Every member advanced by tokens_seen in the loop: the group's SAE-tokens per second.
            "tokens_per_second": round(len(members) * tokens_seen / max(loop_seconds, 1e-9), 1),
            "loss": final.get("loss"),
            "mse": final.get("mse"),
            "fvu": final.get("fvu"),
            "l0": final.get("l0"),
            "dead_latents": int(dead[index]),
            "dead_fraction": dead[index] / cfg.d_sae,
            "input_scale": scale,
            "final_train": final,
            "curve": member_curve,
            "plateau": plateau(member_curve),
            "config": _jsonable(asdict(replace(cfg, seed=seed))),
        }
        results.append(TrainedMember(knob, seed, sae.eval(), log, snapshots=kept[index]))
    return results


def optimization_step(
    group: SAEGroup,
    optimizer,
    x: torch.Tensor,
    sparsity_scale: float | torch.Tensor,
    grad_clip: float,
    dtype: str,
) -> GroupStep:
    """One step for every member: loss, backward, decoder-norm projection, per-member clipping,
    Adam, renormalisation, dead-latent bookkeeping. The whole of what a training step costs
    (`saebench bench` times exactly this)."""
    with autocast(x.device, dtype):
        out = group.training_loss(x, sparsity_scale)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    group.project_decoder_grad()
    group.clip_grad_norms_(grad_clip)
    optimizer.step()
    group.renormalize_decoder()
    group.record_firing(out.fired, x.shape[0])
    return out


def fit_member(method, knob, seed, sample, cfg: TrainConfig, device) -> TrainedMember:
    """A closed-form baseline: fitted on the init sample, seeded by its member seed."""
    torch.manual_seed(seed)
    started = time.time()
    try:
        sae = method.build(d_in=sample.shape[1], d_sae=cfg.d_sae, knob=knob).fit(sample)
    except Exception as error:  # noqa: BLE001 — a failed member fails its cells only
        return TrainedMember(knob, seed, error=error)
    sae.cfg.update(method=method.name, knob=knob, seed=seed, trainable=False)
    log = {
        "method": method.name,
        "knob": knob,
        "seed": seed,
        "trainable": False,
        "tokens_seen": 0,
        "fitted_on_tokens": len(sample),
        "seconds": round(time.time() - started, 3),
        "tokens_per_second": None,
        "d_sae": sae.d_sae,
        "config": _jsonable(asdict(replace(cfg, seed=seed))),
    }
    return TrainedMember(knob, seed, sae.to(device).eval(), log)


def make_optimizer(group: SAEGroup, cfg: TrainConfig, device: torch.device):
    """Adam; the fused kernel where torch has one for the device (CPU and CUDA: one pass over
    each parameter instead of several)."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(group.parameters(), lr=cfg.lr, betas=tuple(cfg.adam_betas), fused=fused)


@contextmanager
def autocast(device: torch.device, dtype: str):
    """bf16 autocast for the forward (parameters, optimiser state and losses stay fp32)."""
    if dtype == "float32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=DTYPES[dtype]):
        yield


def device_batches(
    store, batch_size: int, seed: int, device: torch.device
) -> Iterator[torch.Tensor]:
    """The store's batches on `device`. On CUDA each batch is copied from pinned host memory
    without blocking, one batch ahead, so the copy overlaps the previous step."""
    if device.type != "cuda":
        yield from store.train_batches(batch_size, seed, device)
        return
    host = store.train_batches(batch_size, seed, "cpu")
    upcoming = next(host).pin_memory().to(device, non_blocking=True)
    while True:
        current = upcoming
        upcoming = next(host).pin_memory().to(device, non_blocking=True)
        yield current


def group_label(method, knobs: Sequence[float]) -> str:
    """ "topk k=16", or "topk k=8,16 (4 SAEs)" for a group."""
    distinct = ",".join(f"{k:g}" for k in dict.fromkeys(knobs))
    suffix = f" ({len(knobs)} SAEs)" if len(knobs) > 1 else ""
    return f"{method.name} {method.knob}={distinct}{suffix}"


def progress_bar(cfg: TrainConfig, total_steps: int, description: str):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total_steps, desc=description, leave=False)


class CurveRecorder:
    """Every member's training curve: the mean of each statistic over the steps between two
    points, accumulated on the device so a step costs no host synchronisation."""

    def __init__(self, n_members: int, total_steps: int, points: int, batch_size: int, variance):
        n_points = max(1, min(points, total_steps))
        self.ends = {round((i + 1) * total_steps / n_points) - 1 for i in range(n_points)}
        self.n_members, self.batch_size, self.variance = n_members, batch_size, variance
        self.names: list[str] = []
        self.sums: torch.Tensor | None = None
        self.count = 0
        self.tokens: list[int] = []
        self.rows: list[torch.Tensor] = []  # [n_stats, S] per point

    def add(self, step: int, out: GroupStep, dead: torch.Tensor) -> None:
        if not self.names:
            self.names = ["loss", "mse", "l0", *sorted(out.extras)]
        stats = (
            torch.stack(
                [out.member_loss, out.mse, out.l0, *(out.extras[n] for n in self.names[3:])]
            )
            .detach()
            .float()
        )
        self.sums = stats if self.sums is None else self.sums + stats
        self.count += 1
        if step in self.ends:
            mean = (self.sums / self.count).cpu()
            dead_fraction = dead.float().mean(1).cpu()
            self.rows.append(torch.cat([mean, dead_fraction[None]]))
            self.tokens.append((step + 1) * self.batch_size)
            self.sums, self.count = None, 0

    def member(self, index: int) -> dict[str, list]:
        table = torch.stack(self.rows)[:, :, index]  # [points, stats]
        curve: dict[str, list] = {"tokens": list(self.tokens)}
        for column, name in enumerate([*self.names, "dead_fraction"]):
            curve[name] = [round(float(v), 7) for v in table[:, column]]
        curve["fvu"] = [round(m / self.variance, 7) for m in curve["mse"]]
        return curve

    @staticmethod
    def final(curve: dict[str, list]) -> dict[str, float]:
        """The last point of a member's curve (the final interval's averages)."""
        return {name: values[-1] for name, values in curve.items() if name != "tokens"}

    def diverged_at(self, index: int) -> int | None:
        """Tokens at the first point whose loss is not finite, or None."""
        for tokens, row in zip(self.tokens, self.rows):
            if not torch.isfinite(row[:, index]).all():
                return tokens
        return None


# The plateau check compares the curve before the learning-rate decay (which flattens any
# curve): from half-way to the decay's start.
PLATEAU_FROM, PLATEAU_TO, PLATEAU_TOLERANCE = 0.5, 0.8, 0.05


def plateau(curve: dict[str, list[float]], decay_start: float = PLATEAU_TO) -> dict[str, Any]:
    """Relative change of FVU and L0 between PLATEAU_FROM and `decay_start` of the tokens;
    `flat` when both moved less than PLATEAU_TOLERANCE (the SAE had stopped improving)."""
    tokens = curve["tokens"]
    if len(tokens) < 4:
        return {"flat": None, "reason": "fewer than 4 curve points"}

    def at(name: str, fraction: float) -> float:
        target = fraction * tokens[-1]
        index = min(range(len(tokens)), key=lambda i: abs(tokens[i] - target))
        return curve[name][index]

    changes = {}
    for name in ("fvu", "l0"):
        start, end = at(name, PLATEAU_FROM), at(name, decay_start)
        changes[name] = (start - end) / max(abs(end), 1e-12)
    return {
        "fvu_change": round(changes["fvu"], 5),
        "l0_change": round(changes["l0"], 5),
        "between": [PLATEAU_FROM, decay_start],
        "flat": all(abs(c) < PLATEAU_TOLERANCE for c in changes.values()),
    }


def _jsonable(value):
    """Tuples (adam_betas) become lists so logs and cfg.json round-trip unchanged."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value
