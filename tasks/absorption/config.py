"""The absorption task's constants: SAEBench's thresholds and this benchmark's data sizes."""

from __future__ import annotations

# ---- SAEBench's absorption eval (sae_bench/evals/absorption, v0.6.0), unchanged -------------
F1_JUMP_THRESHOLD = 0.03  # a k-sparse probe is a split of the feature if F1 rises by more
MAX_K = 10  # largest k of the k-sparse probes (max_k_value)
K_SPARSE_L1_DECAY = 0.01  # L1 strength of the probe that ranks the latents (per mean BCE)
MIN_PROBE_F1 = 0.6  # a parent value is scored when its raw probe's held-out F1 is above this
# Cosine with the probe an absorbing latent needs: the top latent for full absorption, each of
# the (at most MAX_ABSORBERS) absorbers for the absorption fraction.
FULL_ABSORPTION_COS = 0.025
FRACTION_COS = 0.1
PROJECTION_SHARE = 0.4  # share of the probe projection the absorbers must carry (both)
MAX_ABSORBERS = 3
FIRING_EPS = 1e-8  # |activation| below this: the latent does not fire
# The child-specific variant (not SAEBench's): an absorber must fire on fewer than this share
# of the parent value's train tokens, else it is a parent-level latent, not a child's.
PARENT_LEVEL_RATE = 0.5
# A value has a parent latent when its main latents carry at least this share of its probe
# projection on held-out tokens; absorption is only defined against such a latent (a random
# dictionary has none, and would otherwise score a perfect 0).
MIN_MAIN_SHARE = 0.5

# ---- the toy world's data --------------------------------------------------------------------
# Held-out share of each parent value's child words (SAEBench holds out 20% of the vocabulary
# at random; stratified here, so every value keeps at least one held-out word).
TEST_FRACTION = 0.25
MIN_WORDS = 3  # a parent value needs this many child words (two to train on, one to score)
# Texts generated per hierarchy: one child-word occurrence each (topic: the first noun).
N_TEXTS = {"smoke": 1500, "default": 4000, "full": 8000}
DATA_SEED = 1717  # the texts and the word split: fixed, so every cell scores the same tokens
MIN_VALUES = 2  # fewer scorable parent values than this: the hierarchy is not usable

# ---- validity ----------------------------------------------------------------------------------
VALIDITY_MARGIN = 0.1  # the gate needs max(MIN_PROBE_F1, chance + this) at its 95% lower end
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
