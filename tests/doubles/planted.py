"""A supervised dictionary planted as an SAE: one latent per value of each known variable."""

from __future__ import annotations

import torch


class NearestValueDictionary(torch.nn.Module):
    """Latents in blocks, one block per variable and one latent per value; a latent's decoder
    row is its value's offset from `centre`. The code is, per block, a one-hot of the offset
    nearest to x − centre, so decode(encode(x)) = centre + Σ_blocks nearest offset."""

    def __init__(self, centre: torch.Tensor, blocks: list[list[torch.Tensor]]):
        super().__init__()
        self.centre = centre.float()
        rows: list[torch.Tensor] = []
        self.blocks = []
        for offsets in blocks:
            self.blocks.append((len(rows), len(rows) + len(offsets)))
            rows += [offset.float() for offset in offsets]
        self.W_dec = torch.nn.Parameter(torch.stack(rows), requires_grad=False)
        self.d_in = self.W_dec.shape[1]

    def encode(self, x):
        r = x.float() - self.centre
        z = torch.zeros(x.shape[0], self.W_dec.shape[0])
        for start, end in self.blocks:
            nearest = torch.cdist(r, self.W_dec[start:end]).argmin(1)
            z[torch.arange(x.shape[0]), start + nearest] = 1.0
        return z

    def decode(self, z):
        return z @ self.W_dec + self.centre

    def forward(self, x):
        return self.decode(self.encode(x))
