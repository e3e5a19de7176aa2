"""The one training engine every method shares.

Adam, linear lr warmup and linear decay to 0 over the last 20%, sparsity-coefficient warmup,
grad-norm clipping, token-based dead-latent tracking, seeds, a tqdm progress bar. Inputs are
scaled so that E‖x‖ = √d_in (SAELens convention), and the scale is folded back into the weights,
so the returned SAE works on raw activations. Every choice is recorded in `sae.cfg`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from saebench.errors import SaebenchError


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
    return math.sqrt(sample.shape[1]) / sample.norm(dim=1).mean().item()


def lr_multiplier(step: int, total_steps: int, warmup_frac: float, decay_frac: float) -> float:
    warmup = max(1, int(warmup_frac * total_steps))
    decay_start = int((1 - decay_frac) * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if step >= decay_start:
        return max(0.0, (total_steps - step) / max(1, total_steps - decay_start))
    return 1.0


def train_sae(method, knob, store, cfg: TrainConfig, device="cpu"):
    """Train (or fit) one SAE of `method` at sparsity `knob`; return (sae on raw acts, log)."""
    knob = method.check_knob(knob)
    torch.manual_seed(cfg.seed)
    sample = store.sample(cfg.init_sample_tokens, cfg.seed)
    built = method.build(d_in=store.d_in, d_sae=cfg.d_sae, knob=knob, options={})
    started = time.time()
    if not method.trainable:
        sae = built.fit(sample)
        sae.cfg.update(method=method.name, knob=knob, trainable=False)
        return sae.to(device).eval(), {"method": method.name, "knob": knob, "tokens_seen": 0,
                                       "seconds": time.time() - started, "fitted_on": len(sample)}

    sae = built
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
    for step in range(total_steps):
        x = next(batches) * scale
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_multiplier(step, total_steps, cfg.lr_warmup_frac,
                                                 cfg.lr_decay_frac)
        sparsity_scale = min(1.0, (step + 1) / max(1, cfg.sparsity_warmup_frac * total_steps))
        loss, f, logs = sae.training_loss(x, sparsity_scale)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"{method.name} {method.knob}={knob}: loss became {loss.item()} at step {step}; "
                f"lower the learning rate (TrainConfig.lr={cfg.lr}) or the sparsity coefficient")
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
    tokens_seen = total_steps * cfg.batch_size
    sae.fold_input_scale(scale)
    sae.eval()
    final = {key: sum(r[key] for r in recent) / len(recent) for key in recent[0]} if recent else {}
    sae.cfg.update(method=method.name, knob=knob, train_config=asdict(cfg),
                   normalize_activations=cfg.normalize, input_scale=scale)
    log = {"method": method.name, "knob": knob, "tokens_seen": tokens_seen, "steps": total_steps,
           "seconds": round(seconds, 3), "tokens_per_second": round(tokens_seen / seconds, 1),
           "input_scale": scale, "dead_latents_at_end": int(sae.dead_mask().sum()),
           "final_train": final}
    return sae, log
