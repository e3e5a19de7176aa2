"""Registers the toy-world model (the default `--model`) and the `saebench world` commands."""

from __future__ import annotations

import json

import click

from saebench.hookspecs import hookimpl
from saebench.specs import ModelHandle, ModelSpec


def load_toyworld(device="cpu", source=None, dataset=None) -> ModelHandle:
    """The shipped toy-world model as a ModelHandle (source: another checkpoint directory;
    dataset: a text/JSONL file to harvest from instead of the world's own corpus)."""
    from saebench.models import default_hook_for, text_file_corpus
    from saebench.toyworld import load_world
    from saebench.toyworld.model import CHECKPOINT_DIR, load_checkpoint

    directory = source or CHECKPOINT_DIR
    bridge, tokenizer, config, record = load_checkpoint(directory, device)
    world = load_world(record)
    special = frozenset(
        tokenizer.convert_tokens_to_ids(t) for t in ("<pad>", "<bos>", "<eos>", "<unk>")
    )
    return ModelHandle(
        name="toyworld",
        bridge=bridge,
        tokenizer=tokenizer,
        default_hook=default_hook_for(bridge),
        context_size=config["n_ctx"],
        is_causal_lm=True,
        corpus=text_file_corpus(dataset) if dataset else world.corpus,
        special_token_ids=special,
        world=world,
        info={
            "source": str(directory),
            "config": config,
            "train_settings": record.get("settings"),
            "metrics": record.get("metrics"),
        },
    )


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="toyworld",
            description="2-layer toy LM trained on a synthetic world with known ground truth (offline, default)",
            load=load_toyworld,
        )
    )


@hookimpl
def register_commands(cli):
    @cli.group()
    def world():
        """The toy world: reproduce its model, or report its behaviour."""

    @world.command()
    @click.option(
        "--steps", type=int, default=None, help="Training steps (default: the shipped recipe)."
    )
    @click.option("--seed", type=int, default=None, help="Training seed.")
    @click.option("--weight-decay", type=float, default=None, help="AdamW weight decay (stage 0).")
    @click.option(
        "--calendar-steps",
        type=click.IntRange(min=0),
        default=None,
        help="Steps of stage 1, the calendar stage (0 skips it; default: the recipe).",
    )
    @click.option(
        "--out",
        type=click.Path(),
        default=None,
        help="Checkpoint directory (default: the shipped one inside the package).",
    )
    def train(steps, seed, weight_decay, calendar_steps, out):
        """Train the toy-world model from its seed and save the checkpoint (+ record).

        Stage 0 trains the core world, stage 1 the calendar (see docs/toyworld.md)."""
        from saebench.toyworld.model import CHECKPOINT_DIR
        from saebench.toyworld.train import train_and_save

        overrides = {
            k: v
            for k, v in (("steps", steps), ("seed", seed), ("weight_decay", weight_decay))
            if v is not None
        }
        record = train_and_save(
            out=out or CHECKPOINT_DIR, log=click.echo, calendar_steps=calendar_steps, **overrides
        )
        click.echo(json.dumps(record.get("metrics", {}), indent=2))

    @world.command(name="eval")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
    @click.option("--checkpoint", type=click.Path(exists=True), default=None)
    @click.option("--quick", is_flag=True, help="Fewer prompts and no probes (seconds, for tests).")
    def eval_command(as_json, device, checkpoint, quick):
        """Behaviour report on held-out prompts: IOI, calendar, facts, loss, probe ceilings."""
        from saebench.models import resolve_device
        from saebench.toyworld.evaluate import TARGETS, behaviour_report

        device = resolve_device(device)
        handle = load_toyworld(device=device, source=checkpoint)
        report = behaviour_report(
            handle.bridge,
            handle.tokenizer,
            handle.world,
            device=device,
            hook=handle.default_hook,
            n=150 if quick else 600,
            probing=not quick,
        )
        if as_json:
            click.echo(json.dumps(report, indent=2))
            return
        for key, value in report.items():
            target = TARGETS.get(key)
            mark = (
                ""
                if target is None
                else (" ok" if value >= target else f" MISSED (target {target})")
            )
            click.echo(f"{key:<40} {value}{mark}")
