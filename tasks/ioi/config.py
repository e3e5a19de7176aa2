"""IOI's sizes and gate settings."""

SIZES = {"smoke": (300, 64), "default": (1200, 200), "full": (4000, 600)}  # (train, eval)
MAX_EDIT_K = 256  # the edit curve's last k (powers of two up to it)
ATTRIBUTES = (("io", "io"), ("s", "s"), ("pos", "order"))  # (metric name, label key)
# An attribute is present at the site when a linear probe on the raw final-token activations
# (fitted on train prompts) decodes it on held-out prompts beyond its majority rate by this much
# (95% lower end); an absent attribute's MCC is not scored.
PRESENCE_MARGIN = 0.1
MIN_PROMPTS = 16
# A reference must beat its measured chance by this much (its 95% lower end). The chance of an
# edit accuracy is high here (mean ablation alone gives the counterfactual's answer in about
# two thirds of the toy model's prompts), so the margin is a tenth of the range.
GATE_MARGIN = 0.1
CONFIDENCE = 0.95
NAME_GUESS = 0.5  # chance of an accuracy over the two names in the prompt
