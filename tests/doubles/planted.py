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


def planted_value_dictionary(words, values, period, filler=0, seed=0):
    """One latent per value along its mean operand-token activation minus the overall mean, then
    `filler` latents along random directions (so a decoder shuffle sends most value latents'
    codes elsewhere: among value latents alone a shuffle keeps their span)."""
    import numpy as np

    from saebench.sae import SAE

    centre = words.mean(0)
    directions = []
    for v in range(period):
        direction = words[torch.from_numpy(values == v)].mean(0) - centre
        directions.append(direction / direction.norm())
    noise = torch.tensor(
        np.random.default_rng(seed).normal(size=(filler, words.shape[1])), dtype=torch.float32
    )
    directions = torch.cat([torch.stack(directions), (noise / noise.norm(dim=1, keepdim=True))])
    planted = SAE(words.shape[1], len(directions))
    with torch.no_grad():
        planted.W_enc.copy_(directions.T)
        planted.W_dec.copy_(directions)
        planted.b_dec.copy_(centre)
    return planted
