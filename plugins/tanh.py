"""Tanh SAE (Anthropic Feb-2024 update): L = ‖x − x̂‖² + λ Σ_i tanh(c · f_i ‖d_i‖), c = 4.

The saturating penalty stops punishing large activations, so shrinkage is small and the L0/MSE
frontier is good; the features were reported less interpretable (the tasks should show both).
Everything else is the L1 recipe (saebench_plugins.l1), including its stacked fast path.
"""

from collections.abc import Sequence

import torch

from saebench.hookspecs import hookimpl
from saebench.specs import MethodSpec
from saebench_plugins.l1 import L1SAE, L1Group
from saebench_plugins.l1 import RECIPE as L1_RECIPE

TANH_SCALE = 4.0
RECIPE = {**L1_RECIPE, "sparsity_penalty": "tanh", "tanh_scale": TANH_SCALE}


class TanhSAE(L1SAE):
    recipe = RECIPE

    def sparsity_penalty(self, f):
        return torch.tanh(TANH_SCALE * f * self.W_dec.norm(dim=1)).sum(-1).mean()


class TanhGroup(L1Group):
    recipe = RECIPE

    def sparsity_penalty(self, f, norms):
        return torch.tanh(TANH_SCALE * f * norms[:, None, :]).sum(-1).mean(-1)


def build(d_in: int, d_sae: int, knob: float):
    return TanhSAE(d_in, d_sae, l1_coefficient=knob)


def build_group(d_in: int, d_sae: int, knobs: Sequence[float]) -> TanhGroup:
    return TanhGroup(d_in, d_sae, knobs)


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="tanh",
            description="ReLU SAE with a saturating tanh sparsity penalty (Anthropic Feb 2024)",
            knob="sparsity_coefficient",
            build=build,
            build_group=build_group,
            knob_min=0.0,
            # The L0 each knob gives on the default preset: docs/training.md.
            sweeps={
                "smoke": [1.0],
                "default": [0.1, 0.2, 0.4, 0.8],
                "full": [0.05, 0.1, 0.2, 0.4, 0.8, 1.6],
            },
        )
    )
