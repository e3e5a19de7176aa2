"""Classic L1 SAE with a unit-norm decoder (Bricken et al. 2023, "Towards Monosemanticity") as a
third-party saebench method plugin: the worked example of docs/writing-plugins.md.

    f = ReLU((x − b_dec) W_enc + b_enc),   x̂ = f W_dec + b_dec,
    L = ‖x − x̂‖² + λ ‖f‖₁   subject to ‖d_i‖ = 1 for every decoder row d_i.

The unit-norm constraint is what makes a plain L1 on f meaningful (without it the SAE shrinks f
and grows W_dec for free). The shared engine applies it when `unit_norm_decoder = True`: the
gradient component parallel to each row is removed before the step, rows are renormalised after.
Everything else is the engine's (tied init, geometric-median b_dec, Adam, λ warmup over the first
5%). Departure from the paper: no neuron resampling (the engine tracks dead latents only).
Not built into saebench, whose `l1` method is the April-2024 recipe (decoder-norm-weighted L1,
unconstrained decoder, no b_dec subtraction). Saved as a SAELens "standard" SAE: it loads
without this plugin.
"""

from saebench.hookspecs import hookimpl
from saebench.sae import TrainableSAE, squared_error
from saebench.specs import MethodSpec

RECIPE = {  # every choice, recorded in sae.cfg (so in cfg.json)
    "sparsity_penalty": "l1",
    "decoder": "unit_norm_with_gradient_projection",
    "apply_b_dec_to_input": True,
    "resampling": "none",
}


class L1UnitDecoderSAE(TrainableSAE):
    unit_norm_decoder = True  # the engine projects gradients and renormalises rows

    def __init__(self, d_in, d_sae, l1_coefficient: float, **cfg):
        super().__init__(d_in, d_sae, apply_b_dec_to_input=True, **cfg)
        self.l1_coefficient = float(l1_coefficient)
        self.cfg.update(l1_coefficient=self.l1_coefficient, **RECIPE)

    def training_loss(self, x, sparsity_scale):
        f = self.encode(x)  # inherited from the standard SAE: ReLU((x − b_dec) W_enc + b_enc)
        mse = squared_error(x, self.decode(f))
        l1 = f.sum(-1).mean()  # f ≥ 0, so this is ‖f‖₁ per token
        loss = mse + sparsity_scale * self.l1_coefficient * l1
        return loss, f, {"mse": mse.item(), "l1": l1.item()}


def build(d_in: int, d_sae: int, knob: float) -> L1UnitDecoderSAE:
    return L1UnitDecoderSAE(d_in, d_sae, l1_coefficient=knob)


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="l1_unit_decoder",
            description="ReLU SAE with a plain L1 penalty and a unit-norm decoder (Anthropic "
            "2023; example third-party plugin)",
            knob="l1_coefficient",
            build=build,
            knob_min=0.0,
            sweeps={
                "smoke": [6.0],
                "default": [0.7, 1.2, 2.5, 5.0],
                "full": [0.35, 0.7, 1.2, 2.5, 5.0, 10.0],
            },
        )
    )
