"""`synthetic`: a benchmark of SynthSAEBench's kind (Chanin & Garriga-Alonso 2026).

A generator of sparse features in superposition with a known dictionary (Zipfian firing, a
hierarchy with mutually exclusive children, low-rank correlated firing, more features than
dimensions), the paper's ground-truth metrics (MCC, uniqueness, per-latent precision / recall /
F1, explained variance, L0, dead latents, shrinkage), an exact absorption measure on the
hierarchy, and the `saebench synthetic` command that sweeps methods on the stream. See
docs/synthetic.md.

Modules: `generator` (the stream), `presets` (sizes), `metrics`, `absorption`, `source` (the
activation sources training reads), `bench` (sweep, resume, rows), `report` (tables), `cli`.
"""
