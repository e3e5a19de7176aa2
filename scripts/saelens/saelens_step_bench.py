"""Time one SAELens training step per configuration (run with the SAELens venv, not ours).

SAELens pins transformer-lens < 4, so it cannot share saebench's environment; this file imports
only sae_lens and torch. A step is SAELens's own `SAETrainer.step` (sae_lens 6.54:
training/sae_trainer.py), driven the way `SAETrainer.fit` drives it, on CPU float32:

  * `maybe_reset_sparsity()` (a no-op check except every `feature_sampling_window` steps),
  * `trainer.step(batch)`: batch.to(device), the activation scaler (identity: no normalization),
    then `_train_step`: `sae.train()`, `sae.training_forward_pass(TrainStepInput(sae_in,
    dead_neuron_mask, coefficients, n_training_steps, is_logging_step))` (MSE + the
    architecture's aux losses), the no-grad firing statistics (act_freq_scores,
    n_forward_passes_since_fired), `loss.backward()`, `clip_grad_norm_(params, 1.0)`,
    `Adam.step()`, `zero_grad()`, the LR scheduler step and the coefficient schedulers' steps,
  * `n_training_steps += 1`.

Left out: wandb logging/evals, checkpointing and the tqdm bar (off or cosmetic in a plain run),
and the activation store (data comes from a pool of pre-drawn random normal batches).
SAELens 6.x has no decoder-norm projection or parallel-gradient removal in the trainer: TopK
rescales by ||W_dec|| inside the forward (rescale_acts_by_decoder_norm=True, the default), the
L1 ("standard") and gated penalties weight by ||W_dec|| in the loss; all of that is in
`training_forward_pass`, so it is timed.

    /tmp/saelens-venv/bin/python scripts/saelens/saelens_step_bench.py --threads 2 \
        --config method=topk,d_in=512,d_sae=8192,batch_size=1024,k=32 --json theirs.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import torch

# Our method names -> SAELens architecture names. "standard" is SAELens's L1 SAE.
METHOD_ALIASES = {
    "topk": "topk",
    "l1": "standard",
    "standard": "standard",
    "gated": "gated",
    "jumprelu": "jumprelu",
}
OUTPUT_NAME = {"topk": "topk", "standard": "l1", "gated": "gated", "jumprelu": "jumprelu"}

DEFAULT_CONFIGS = [
    "method=topk,d_in=512,d_sae=8192,batch_size=1024,k=32",
    "method=topk,d_in=128,d_sae=2048,batch_size=1024,k=32",
    "method=topk,d_in=128,d_sae=1024,batch_size=1024,k=32",
    "method=standard,d_in=128,d_sae=2048,batch_size=1024",
    "method=gated,d_in=128,d_sae=2048,batch_size=1024",
]


def parse_config(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"config entry {part!r} is not key=value")
        key, value = (s.strip() for s in part.split("=", 1))
        fields[key] = value
    method = fields.pop("method", None)
    if method not in METHOD_ALIASES:
        raise argparse.ArgumentTypeError(
            f"method must be one of {sorted(METHOD_ALIASES)}, got {method!r} in {text!r}"
        )
    cfg: dict[str, Any] = {"architecture": METHOD_ALIASES[method]}
    try:
        for key in ("d_in", "d_sae", "batch_size"):
            cfg[key] = int(fields.pop(key))
        k = fields.pop("k", None)
        cfg["k"] = int(k) if k is not None else None
    except KeyError as missing:
        raise argparse.ArgumentTypeError(f"config {text!r} lacks {missing}") from None
    if fields:
        raise argparse.ArgumentTypeError(f"unknown config keys {sorted(fields)} in {text!r}")
    if cfg["architecture"] == "topk" and cfg["k"] is None:
        cfg["k"] = 32
    if cfg["architecture"] != "topk":
        cfg["k"] = None
    return cfg


def build_training_sae(cfg: dict[str, Any]):
    """SAELens's training SAE class for the architecture, with its default training config."""
    common = dict(d_in=cfg["d_in"], d_sae=cfg["d_sae"], dtype="float32", device="cpu")
    arch = cfg["architecture"]
    if arch == "topk":
        from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

        return TopKTrainingSAE(TopKTrainingSAEConfig(k=cfg["k"], **common))
    if arch == "standard":
        from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig

        return StandardTrainingSAE(StandardTrainingSAEConfig(**common))
    if arch == "gated":
        from sae_lens.saes.gated_sae import GatedTrainingSAE, GatedTrainingSAEConfig

        return GatedTrainingSAE(GatedTrainingSAEConfig(**common))
    if arch == "jumprelu":
        from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig

        return JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(**common))
    raise ValueError(arch)


def build_trainer(sae, batch_size: int, total_steps: int, lr: float):
    """SAELens's SAETrainer (it builds the Adam, the LR and coefficient schedulers itself)."""
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    trainer_cfg = SAETrainerConfig(
        total_training_samples=batch_size * total_steps,
        train_batch_size_samples=batch_size,
        lr=lr,
        lr_end=lr / 10,  # what LanguageModelSAERunnerConfig.__post_init__ fills in
        device="cpu",
        autocast=False,
        logger=LoggingConfig(log_to_wandb=False),
    )
    # The data provider is only read by fit() and the evaluator; we feed step() ourselves.
    return SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=iter(()))


class Stepper:
    """Drives SAETrainer.step the way SAETrainer.fit does, over a pool of random batches."""

    def __init__(
        self,
        cfg: dict[str, Any],
        total_steps: int,
        lr: float,
        dead_fraction: float,
        pool: int,
        seed: int,
    ):
        torch.manual_seed(seed)
        self.sae = build_training_sae(cfg)
        self.trainer = build_trainer(self.sae, cfg["batch_size"], total_steps, lr)
        self.batches = [torch.randn(cfg["batch_size"], cfg["d_in"]) for _ in range(pool)]
        self.n_dead = int(round(dead_fraction * cfg["d_sae"]))
        self.i = 0

    def step(self) -> float:
        trainer = self.trainer
        if self.n_dead:
            # Mark a fixed block of latents dead so the dead-latent losses (TopK's AuxK) run.
            trainer.n_forward_passes_since_fired[: self.n_dead] = (
                trainer.cfg.dead_feature_window + 1
            )
        trainer.maybe_reset_sparsity()  # fit() calls this before every step
        out = trainer.step(self.batches[self.i % len(self.batches)])
        trainer.n_training_steps += 1
        self.i += 1
        return out.loss.detach().item()


def time_config(cfg: dict[str, Any], args) -> dict[str, Any]:
    total = args.warmup + args.repeats
    stepper = Stepper(cfg, max(total, 2), args.lr, args.dead_fraction, args.pool, args.seed)
    for _ in range(args.warmup):
        stepper.step()
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        stepper.step()  # .item() at the end synchronises; on CPU it is a no-op anyway
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {
        "method": OUTPUT_NAME[cfg["architecture"]],
        "d_in": cfg["d_in"],
        "d_sae": cfg["d_sae"],
        "batch_size": cfg["batch_size"],
        "k": cfg["k"],
        "seconds_per_step": round(seconds, 6),
        "tokens_per_second": round(cfg["batch_size"] / seconds, 1),
        "min_seconds_per_step": round(min(times), 6),
        "repeats": args.repeats,
        "dead_fraction": args.dead_fraction,
    }


def check_loss(cfg: dict[str, Any], args) -> bool:
    stepper = Stepper(cfg, args.check_loss, args.lr, args.dead_fraction, args.pool, args.seed)
    losses = [stepper.step() for _ in range(args.check_loss)]
    first = statistics.mean(losses[:5])
    last = statistics.mean(losses[-5:])
    ok = all(map(torch.isfinite, torch.tensor(losses))) and last < first
    print(
        f"  {OUTPUT_NAME[cfg['architecture']]:8} d={cfg['d_in']} m={cfg['d_sae']} "
        f"B={cfg['batch_size']}"
        + (f" k={cfg['k']}" if cfg["k"] else "")
        + f": loss {losses[0]:.4g} -> {losses[-1]:.4g} (mean first5 {first:.4g}, last5 {last:.4g})"
        + ("" if ok else "  NOT DECREASING"),
        flush=True,
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--config",
        action="append",
        type=parse_config,
        default=None,
        help="method=topk|l1|gated|jumprelu,d_in=..,d_sae=..,batch_size=..[,k=..] (repeatable)",
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--lr", type=float, default=3e-4, help="Adam lr (SAETrainerConfig default)")
    parser.add_argument(
        "--dead-fraction",
        type=float,
        default=0.0,
        help="fraction of latents held dead each step so dead-latent losses are timed (default 0: "
        "a fresh run has none for its first dead_feature_window=1000 steps)",
    )
    parser.add_argument("--pool", type=int, default=4, help="random batches cycled through")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--check-loss",
        type=int,
        default=0,
        metavar="STEPS",
        help="instead of timing, train STEPS steps per config and check the loss decreases",
    )
    parser.add_argument("--json", dest="json_path", default=None, help="write results here")
    args = parser.parse_args(argv)

    import sae_lens

    if args.threads:
        torch.set_num_threads(args.threads)
    configs = args.config or [parse_config(c) for c in DEFAULT_CONFIGS]
    print(
        f"sae_lens {sae_lens.__version__}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )

    if args.check_loss:
        results = [check_loss(cfg, args) for cfg in configs]
        return 0 if all(results) else 1

    steps = []
    for cfg in configs:
        result = time_config(cfg, args)
        steps.append(result)
        shape = f"d={cfg['d_in']} m={cfg['d_sae']} B={cfg['batch_size']}" + (
            f" k={cfg['k']}" if cfg["k"] else ""
        )
        print(
            f"  {result['method']:8} {shape}: {result['tokens_per_second']:,.0f} tokens/s "
            f"({result['seconds_per_step'] * 1e3:.1f} ms/step median of {args.repeats})",
            flush=True,
        )
    if args.json_path:
        payload = {
            "library": "sae_lens",
            "version": sae_lens.__version__,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "steps": steps,
        }
        with open(args.json_path, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
