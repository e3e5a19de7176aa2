"""The one training engine every method shares.

Adam, linear lr warmup and linear decay to 0 over the last 20%, sparsity-coefficient warmup,
grad-norm clipping, token-based dead-latent tracking, seeds, a tqdm progress bar. Inputs are
scaled so that E‖x‖ = √d_in (SAELens convention), and the scale is folded back into the weights,
so the returned SAE works on raw activations. Every choice is recorded in `sae.cfg`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace

import torch

from saebench.errors import ConfigError, SaebenchError


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
    seed: int = 0
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


def train_sae(method, knob, store, cfg: TrainConfig, device="cpu"):
    """Train (or fit) one SAE of `method` at sparsity `knob`; return (sae on raw acts, log).

    The log holds tokens_seen, seconds, tokens_per_second, loss/mse/l0 averaged over the last 20
    batches, dead_latents, input_scale and the full effective config.
    """
    knob = method.check_knob(knob)
    if cfg.d_sae < 1 or cfg.total_tokens < 1 or cfg.batch_size < 1:
        raise ConfigError(
            f"TrainConfig needs d_sae, total_tokens and batch_size >= 1 (got "
            f"{cfg.d_sae}, {cfg.total_tokens}, {cfg.batch_size})"
        )
    torch.manual_seed(cfg.seed)
    sample = store.sample(cfg.init_sample_tokens, cfg.seed)
    built = method.build(d_in=store.d_in, d_sae=cfg.d_sae, knob=knob)
    started = time.time()
    if not method.trainable:
        sae = built.fit(sample)
        sae.cfg.update(method=method.name, knob=knob, trainable=False)
        seconds = time.time() - started
        return sae.to(device).eval(), {
            "method": method.name,
            "knob": knob,
            "trainable": False,
            "tokens_seen": 0,
            "fitted_on_tokens": len(sample),
            "seconds": round(seconds, 3),
            "tokens_per_second": None,
            "d_sae": sae.d_sae,
            "config": _jsonable(asdict(cfg)),
        }

    sae = built
    # The store may be smaller than a batch (tiny runs): clip rather than never yield a batch.
    cfg = replace(effective_config(cfg, sae), batch_size=min(cfg.batch_size, store.n_train_tokens))
    scale = input_scale(sample, cfg.normalize)
    sae.initialize(sample * scale, cfg.init_b_dec)
    sae.dead_window_tokens = cfg.dead_window_tokens
    sae.to(device).train()
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=tuple(cfg.adam_betas))
    total_steps = max(1, cfg.total_tokens // cfg.batch_size)
    batches = store.train_batches(cfg.batch_size, cfg.seed, device)
    progress = None
    if cfg.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, desc=f"{method.name} {method.knob}={knob}", leave=False)
    recent = []
    loop_started = time.time()  # tokens/s measures the optimisation loop, not init
    for step in range(total_steps):
        x = next(batches) * scale
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_multiplier(
                step, total_steps, cfg.lr_warmup_frac, cfg.lr_decay_frac
            )
        sparsity_scale = min(1.0, (step + 1) / max(1, cfg.sparsity_warmup_frac * total_steps))
        loss, f, logs = sae.training_loss(x, sparsity_scale)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"{method.name} {method.knob}={knob}: loss became {loss.item()} at step {step}; "
                f"lower the learning rate (TrainConfig.lr={cfg.lr}) or the sparsity coefficient"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sae.project_decoder_grad()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
        optimizer.step()
        sae.renormalize_decoder()
        with torch.no_grad():
            sae.record_firing(f.detach())
        if step >= total_steps - 20:
            recent.append(dict(logs, loss=loss.item(), l0=(f > 0).float().sum(-1).mean().item()))
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()
    seconds = time.time() - started
    loop_seconds = time.time() - loop_started
    tokens_seen = total_steps * cfg.batch_size
    sae.fold_input_scale(scale)
    sae.eval()
    final = {key: sum(r[key] for r in recent) / len(recent) for key in recent[0]} if recent else {}
    sae.cfg.update(
        method=method.name,
        knob=knob,
        train_config=_jsonable(asdict(cfg)),
        recipe_overrides=_jsonable(dict(getattr(sae, "recipe_overrides", {}) or {})),
        normalize_activations=cfg.normalize,
        input_scale=scale,
    )
    dead = int(sae.dead_mask().sum())
    log = {
        "method": method.name,
        "knob": knob,
        "trainable": True,
        "tokens_seen": tokens_seen,
        "steps": total_steps,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens_seen / max(loop_seconds, 1e-9), 1),
        "loss": final.get("loss"),
        "mse": final.get("mse"),
        "l0": final.get("l0"),
        "dead_latents": dead,
        "dead_fraction": dead / sae.d_sae,
        "input_scale": scale,
        "final_train": final,
        "config": _jsonable(asdict(cfg)),
    }
    return sae, log


def _jsonable(value):
    """Tuples (adam_betas) become lists so logs and cfg.json round-trip unchanged."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value
