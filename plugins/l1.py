"""L1 SAE, Anthropic April-2024 recipe: decoder-norm-weighted L1, unconstrained decoder.

f = ReLU(x W_enc + b_enc) (no b_dec subtraction); L = ‖x − x̂‖² + λ Σ_i f_i ‖d_i‖.
Decoder rows start at norm 0.1 (the recipe); b_dec starts at the geometric median.
"""

from saebench.hookspecs import hookimpl
from saebench.sae import TrainableSAE, squared_error
from saebench.specs import MethodSpec


class L1SAE(TrainableSAE):
    architecture = "standard"
    decoder_init_norm = 0.1  # the April-2024 recipe

    def __init__(self, d_in, d_sae, l1_coefficient: float, **cfg):
        super().__init__(d_in, d_sae, apply_b_dec_to_input=False, **cfg)
        self.l1_coefficient = float(l1_coefficient)
        self.cfg.update(
            l1_coefficient=self.l1_coefficient,
            sparsity_penalty="decoder_norm_weighted_l1",
            decoder_init_norm=0.1,
            apply_b_dec_to_input=False,
        )

    def sparsity_penalty(self, f):
        return (f * self.W_dec.norm(dim=1)).sum(-1).mean()

    def training_loss(self, x, sparsity_scale):
        f = self.encode(x)
        mse = squared_error(x, self.decode(f))
        penalty = self.sparsity_penalty(f)
        loss = mse + sparsity_scale * self.l1_coefficient * penalty
        return loss, f, {"mse": mse.item(), "sparsity": penalty.item()}


def build(d_in: int, d_sae: int, knob: float):
    return L1SAE(d_in, d_sae, l1_coefficient=knob)


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="l1",
            description="ReLU SAE with decoder-norm-weighted L1 penalty (Anthropic April 2024)",
            knob="l1_coefficient",
            build=build,
            knob_min=0.0,
            # Measured on the toy model (d 128, d_sae 1024, 1.2M tokens, lr 1e-3): λ 1 → L0 38,
            # 2 → 15, 4 → 7, 8 → 2.6. Short smoke runs sit at higher L0 for the same λ.
            # Smoke (48k tokens, 4x): λ 6 → L0 30.
            sweeps={
                "smoke": [6.0],
                "default": [0.7, 1.2, 2.5, 5.0],
                "full": [0.35, 0.7, 1.2, 2.5, 5.0, 10.0],
            },
        )
    )
