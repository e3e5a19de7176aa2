"""RAVEL's sizes, schedule and gate settings (one place, so tests can shrink them)."""

N_PAIRS = {"smoke": 24, "default": 96, "full": 300}  # per attribute, per kind (cause/isolate)
MIN_PAIRS = 8
# The whole-activation swap at the entity token must beat chance by this much (its 95% lower end):
# at least a quarter of the answers moved beyond chance, or the task measures nothing there.
GATE_MARGIN = 0.25
CONFIDENCE = 0.95

# MDBM (SAEBench's mask training): Adam on one mask logit per latent, temperature annealed
# log-linearly from 1 to 1e-4. SAEBench trains 2 epochs over thousands of pairs; our training
# pairs per attribute are a few hundred, so we train for at least MDBM_MIN_STEPS steps instead.
MDBM_LR = 1e-3
MDBM_EPOCHS = 2
MDBM_MIN_STEPS = {"smoke": 60, "default": 200, "full": 400}
MDBM_BATCH = 32
MDBM_TEMPERATURES = (1.0, 1e-4)
