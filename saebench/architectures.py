"""Inference-time SAE architectures (the SAELens names): standard, gated, topk, jumprelu.

Training objectives live in the method plugins; these classes are what `load_sae` rebuilds, so a
saved SAE loads without the plugin that trained it.
"""

from __future__ import annotations

import torch
from torch import nn

from saebench.errors import ConfigError
from saebench.sae import SAE


def check_k(k: float, d_sae: int, method: str = "topk") -> int:
    """k as an int, or a ConfigError naming the fix unless 1 ≤ k ≤ d_sae (a top-k selection
    cannot keep more latents than the dictionary has)."""
    if not 1 <= int(k) <= d_sae:
        raise ConfigError(
            f"{method}: k={k} must be between 1 and d_sae={d_sae}; lower k "
            f"(--sweep {method}=...) or raise the dictionary size"
        )
    return int(k)


def check_k_fits(knob: float, d_in: int, d_sae: int, method: str) -> int:
    """check_k, for a top-k style method's build: d_sae = expansion × d_in (the preset's or
    --expansion) is known only once the activations are harvested, so k <= d_sae cannot be
    checked with the other flags; the error says what d_sae is made of."""
    if knob > d_sae:
        raise ConfigError(
            f"{method}: k={int(knob)} is more than the SAE's d_sae={d_sae} latents (expansion × "
            f"d_in = {d_sae / d_in:g} × {d_in}); pass --sweep {method}=... with values "
            f"<= {d_sae}, or a larger --expansion"
        )
    return check_k(knob, d_sae, method)


class GatedSAE(SAE):
    """f = 1[π_gate > 0] ⊙ ReLU(π_mag); W_enc is W_gate, W_mag = W_gate ⊙ exp(r_mag)."""

    architecture = "gated"

    def __init__(self, d_in, d_sae, **cfg):
        super().__init__(d_in, d_sae, **cfg)
        self.r_mag = nn.Parameter(torch.zeros(d_sae))
        self.b_mag = nn.Parameter(torch.zeros(d_sae))

    def gate_and_magnitude(self, x):
        x_centered = x - self.b_dec if self.apply_b_dec_to_input else x
        pi_gate = x_centered @ self.W_enc + self.b_enc
        pi_mag = x_centered @ (self.W_enc * torch.exp(self.r_mag)) + self.b_mag
        return pi_gate, pi_mag

    def encode(self, x):
        pi_gate, pi_mag = self.gate_and_magnitude(x)
        return (pi_gate > 0).to(pi_mag.dtype) * torch.relu(pi_mag)


class TopKSAE(SAE):
    """f = ReLU(TopK_k(z)): keep the k largest pre-activations per token."""

    architecture = "topk"

    def __init__(self, d_in, d_sae, k: int = 32, **cfg):
        super().__init__(d_in, d_sae, **cfg)
        self.k = check_k(k, d_sae)

    def encode(self, x):
        z = self.pre_acts(x)
        values, indices = z.topk(self.k, dim=-1)
        return torch.zeros_like(z).scatter(-1, indices, torch.relu(values))


class JumpReLUSAE(SAE):
    """f = z · 1[z > θ] with a per-latent threshold θ."""

    architecture = "jumprelu"

    def __init__(self, d_in, d_sae, **cfg):
        super().__init__(d_in, d_sae, **cfg)
        self.threshold = nn.Parameter(torch.zeros(d_sae))

    def encode(self, x):
        z = self.pre_acts(x)
        return z * (z > self.threshold).to(z.dtype)


ARCHITECTURES = {cls.architecture: cls for cls in (SAE, GatedSAE, TopKSAE, JumpReLUSAE)}
