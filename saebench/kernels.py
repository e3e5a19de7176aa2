"""Sparse building blocks for top-k style SAEs, batched over the members of an `SAEGroup`.

Gradients of a top-k SAE reach only the k selected latents of each token, so only the encoder
forward needs a dense matmul: the decoder is a weighted sum of k rows (`embedding_bag`), and the
encoder weight gradient touches k rows per token (a sparse × dense product). Weights are stacked
row-major per latent: `W_flat` [S·d_sae, d_in] holds member s's latent i at row s·d_sae + i, so
one flat index addresses any member's latent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def global_indices(indices: torch.Tensor, d_sae: int) -> torch.Tensor:
    """Member-local latent indices [S, B, k] → rows of the flat stacked weights [S·d_sae, d]."""
    offsets = torch.arange(indices.shape[0], device=indices.device) * d_sae
    return indices + offsets.view(-1, *([1] * (indices.dim() - 1)))


def _sparse_rows_times(
    rows: torch.Tensor, values: torch.Tensor, dense: torch.Tensor, n_rows: int, shared: bool
) -> torch.Tensor:
    """Σ over (s, b, j) of values[s, b, j] · dense[token] added into row rows[s, b, j]: the
    gradient of k selected rows per token, as one sparse × dense product. `dense` is [B, d]
    (tokens shared by every member) or [S·B, d] (one row per member and token)."""
    n_members, batch, k = rows.shape
    tokens = torch.arange(batch if shared else n_members * batch, device=rows.device)
    tokens = tokens.view(1, batch, 1) if shared else tokens.view(n_members, batch, 1)
    sparse = torch.sparse_coo_tensor(
        torch.stack([rows.reshape(-1), tokens.expand_as(rows).reshape(-1)]),
        values.reshape(-1).to(dense.dtype),
        (n_rows, dense.shape[0]),
        check_invariants=False,
    )
    return torch.sparse.mm(sparse, dense)


class _SelectedPreActs(torch.autograd.Function):
    """out[s, b, j] = x[b] · W_flat[r] + offset[r] at r = rows[s, b, j], with x·w read from the
    dense encoder forward; the backward touches the selected rows only."""

    @staticmethod
    def forward(ctx, W_flat, offset, x, rows, x_dots):
        ctx.save_for_backward(x, rows)
        ctx.n_rows = W_flat.shape[0]
        return x_dots + offset[rows]

    @staticmethod
    def backward(ctx, grad):
        x, rows = ctx.saved_tensors
        grad_W = _sparse_rows_times(rows, grad, x, ctx.n_rows, shared=True)
        grad_offset = grad.new_zeros(ctx.n_rows).index_add_(0, rows.reshape(-1), grad.reshape(-1))
        return grad_W, grad_offset, None, None, None


def selected_pre_acts(
    x: torch.Tensor,
    W_flat: torch.Tensor,
    offset: torch.Tensor,
    x_dots: torch.Tensor,
    rows: torch.Tensor,
) -> torch.Tensor:
    """Pre-activations of the selected latents, differentiable w.r.t. the weights.

    x [B, d] (shared by all members); W_flat [S·d_sae, d] the encoder rows; offset [S·d_sae] the
    per-latent additive term (b_enc − b_dec·w, differentiable); x_dots [S, B, k] = x·w at the
    selected rows (from the dense forward, no grad); rows [S, B, k] flat row indices.
    """
    return _SelectedPreActs.apply(W_flat, offset, x, rows, x_dots)


class _DecoderWeightGrad(torch.autograd.Function):
    """Identity on the decoded output that adds the decoder-weight gradient: row r receives
    Σ acts · grad over the (token, slot) pairs that selected it. (embedding_bag computes the
    activations' gradient natively but its weight gradient sorts every index, which costs more
    than the whole forward at these sizes.)"""

    @staticmethod
    def forward(ctx, out, W_flat, acts, rows):
        ctx.save_for_backward(acts, rows)
        ctx.n_rows = W_flat.shape[0]
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        acts, rows = ctx.saved_tensors
        flat = grad.reshape(-1, grad.shape[-1])
        grad_W = _sparse_rows_times(rows, acts, flat, ctx.n_rows, shared=False)
        return grad, grad_W, None, None


def sparse_decode(rows: torch.Tensor, acts: torch.Tensor, W_flat: torch.Tensor) -> torch.Tensor:
    """Σ_j acts[s, b, j] · W_flat[rows[s, b, j]] → [S, B, d] (no bias): k rows per token."""
    n_members, batch, k = rows.shape
    out = F.embedding_bag(
        rows.reshape(-1, k),
        W_flat.detach(),
        per_sample_weights=acts.reshape(-1, k).to(W_flat.dtype),
        mode="sum",
    ).view(n_members, batch, -1)
    return _DecoderWeightGrad.apply(out, W_flat, acts.detach(), rows)
