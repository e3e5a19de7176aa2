"""The common SAE object every method produces and every task consumes.

Notation (reference/methods.md): x [.., d_in], f [.., d_sae], W_enc [d_in, d_sae],
W_dec [d_sae, d_in] (row i = decoder direction of latent i), b_enc [d_sae], b_dec [d_in].
x_hat = f @ W_dec + b_dec. A saved/loaded SAE always works on raw (unnormalised) activations.
"""
from __future__ import annotations

import torch
from torch import nn


class SAE(nn.Module):
    """Inference-time SAE: encode/decode. Subclasses change `encode` (gated, topk, ...)."""

    architecture = "standard"  # SAELens architecture name written to cfg.json

    def __init__(self, d_in: int, d_sae: int, apply_b_dec_to_input: bool = True, **cfg):
        super().__init__()
        self.d_in, self.d_sae = d_in, d_sae
        self.apply_b_dec_to_input = apply_b_dec_to_input
        self.cfg = dict(cfg)  # every recipe choice; saved into cfg.json
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.pre_acts(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
