"""Registers the toy-world model (the default `--model`), its random-weight control
`toyworld-random`, and the `saebench world` commands."""

from __future__ import annotations

import json

import click
from click.core import ParameterSource

from saebench.hookspecs import hookimpl
from saebench.specs import ModelHandle, ModelSpec


def load_toyworld(device="cpu", source=None, dataset=None, name="toyworld") -> ModelHandle:
    """The shipped toy-world model as a ModelHandle (source: another checkpoint directory;
    dataset: a text/JSONL file to harvest from instead of the world's own corpus). A
    checkpoint whose record names a default hook (v2) is hooked there."""
    from saebench.toyworld import load_world
    from saebench.toyworld.model import CHECKPOINT_DIR, load_checkpoint

    directory = source or CHECKPOINT_DIR
    bridge, tokenizer, config, record = load_checkpoint(directory, device)
    return _handle(
        name,
        bridge,
        tokenizer,
        config,
        load_world(record),
        dataset,
        info={
            "source": str(directory),
            "config": config,
            "train_settings": record.get("settings"),
            "metrics": record.get("metrics"),
        },
        hook=record.get("default_hook"),
    )


def load_toyworld_v2(device="cpu", source=None, dataset=None) -> ModelHandle:
    """Toy world v2 (issue 15): the shipped 4-layer model, hooked where its site checks pass."""
    from saebench.toyworld.model import CHECKPOINT_V2_DIR

    return load_toyworld(device, source or CHECKPOINT_V2_DIR, dataset, name="toyworld-v2")


def load_toyworld_v4(device="cpu", source=None, dataset=None) -> ModelHandle:
    """Toy world v4 (issue 15): the shipped 4-layer model with a local first layer, hooked in
    the middle (blocks.2), where its entity and operand site checks pass and S has reached the
    final token (IO is read later, at blocks.3)."""
    from saebench.toyworld.model import CHECKPOINT_V4_DIR

    return load_toyworld(device, source or CHECKPOINT_V4_DIR, dataset, name="toyworld-v4")


# The seed `saebench world train` initialises its model with (TRAIN_DEFAULTS["seed"]): the
# control is then the shipped model's own starting point, before any training step.
RANDOM_SEED = 0


def load_toyworld_random(device="cpu", source=None, dataset=None) -> ModelHandle:
    """The random-weight control: the shipped toy model's architecture, tokenizer and world,
    with freshly initialised weights (TransformerLens's native init, seeded; never trained, no
    download). `source` (`--model toyworld-random:SEED`) picks another seed (default 0).

    An SAE trained on a randomly initialised transformer scores close to one trained on the
    real model on auto-interpretation (Heap et al. 2025): a score that means "the SAE found the
    model's features" must be clearly higher on `toyworld` than on this control."""
    from saebench.errors import ConfigError
    from saebench.toyworld import load_world
    from saebench.toyworld.model import CHECKPOINT_DIR, boot
    from saebench.toyworld.tokenizer import load_tokenizer

    try:
        seed = RANDOM_SEED if source is None else int(source)
    except ValueError:
        raise ConfigError(
            f"--model toyworld-random:{source}: the part after the colon is the init seed, an "
            "integer (e.g. toyworld-random:1)"
        ) from None
    tokenizer = load_tokenizer(CHECKPOINT_DIR / "tokenizer")
    config = json.loads((CHECKPOINT_DIR / "config.json").read_text())
    # boot_native initialises on the CPU from a generator seeded with config["seed"], inside a
    # forked RNG: the same weights on every device, and the caller's RNG is left untouched.
    bridge = boot(dict(config, seed=seed), tokenizer, device)
    bridge.eval()
    record = json.loads((CHECKPOINT_DIR / "train_record.json").read_text())
    return _handle(
        "toyworld-random",
        bridge,
        tokenizer,
        config,
        load_world(record),  # the world the trained model saw: the same labels and prompts
        dataset,
        info={
            "source": f"random init, seed {seed}",
            "control": (
                "random weights: the toyworld architecture, tokenizer and world with freshly "
                f"initialised, untrained weights (seed {seed}); scores that need learned "
                "structure must beat this control"
            ),
            "init_seed": seed,
            "config": config,
        },
    )


def _handle(name, bridge, tokenizer, config, world, dataset, info, hook=None) -> ModelHandle:
    from saebench.models import default_hook_for, text_file_corpus

    special = frozenset(
        tokenizer.convert_tokens_to_ids(t) for t in ("<pad>", "<bos>", "<eos>", "<unk>")
    )
    return ModelHandle(
        name=name,
        bridge=bridge,
        tokenizer=tokenizer,
        default_hook=hook or default_hook_for(bridge),
        context_size=config["n_ctx"],
        is_causal_lm=True,
        corpus=text_file_corpus(dataset) if dataset else world.corpus,
        special_token_ids=special,
        world=world,
        info=info,
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
    register(
        ModelSpec(
            name="toyworld-v2",
            description="Toy world v2: a 4-layer toy LM whose hook carries the entity and "
            "calendar representations the intervention tasks patch (offline)",
            load=load_toyworld_v2,
        )
    )
    register(
        ModelSpec(
            name="toyworld-v4",
            description="Toy world v4: toy world v2 with a local first layer, composed day "
            "operands and 144 two-token cities, hooked at blocks.2, where its city and operand "
            "sites are causal (offline)",
            load=load_toyworld_v4,
        )
    )
    register(
        ModelSpec(
            name="toyworld-random",
            description="Random-weight control: the toyworld architecture, tokenizer and world, "
            "untrained (seeded; toyworld-random:SEED for another seed)",
            load=load_toyworld_random,
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
        help="Checkpoint directory (default: the shipped one inside the package, for the exact "
        "recipe only: any other option needs --out).",
    )
    @click.option(
        "--version",
        "world_version",
        type=click.Choice(["1", "2", "3", "4"]),
        default="1",
        show_default=True,
        help="1: the default 2-layer model; 2: toy world v2 (`--model toyworld-v2`), 4 layers; "
        "3: v2's recipe on the v3 candidate world (not shipped; use --out); 4: toy world v4 "
        "(`--model toyworld-v4`), its own recipe.",
    )
    @click.option(
        "--local-layer0/--global-layer0",
        default=None,
        help="Versions 2 to 4: layer 0 attends only to itself, the previous token and BOS, "
        "so later layers must read entities and operands at their own tokens (default: on "
        "for version 4, off for 2 and 3).",
    )
    def train(steps, seed, weight_decay, calendar_steps, out, world_version, local_layer0):
        """Train the toy-world model from its seed and save the checkpoint (+ record).

        Version 1: stage 0 trains the core world, stage 1 the calendar (see docs/toyworld.md).
        Version 2: the same two stages on toy world v2, with site checks in the record."""
        from saebench.toyworld.model import (
            CHECKPOINT_DIR,
            CHECKPOINT_V2_DIR,
            CHECKPOINT_V4_DIR,
            V4_RECIPE,
        )
        from saebench.toyworld.train import train_and_save, train_and_save_v2

        overrides = {
            k: v
            for k, v in (("steps", steps), ("seed", seed), ("weight_decay", weight_decay))
            if v is not None
        }
        if world_version == "3" and out is None:
            raise click.UsageError(
                "--version 3 trains a candidate world with no shipped checkpoint: pass --out DIR"
            )
        if local_layer0 is not None and world_version == "1":
            flag = "--local-layer0" if local_layer0 else "--global-layer0"
            raise click.UsageError(f"{flag} is for --version 2, 3 or 4")
        context = click.get_current_context()
        changed = [
            "/".join(param.opts + param.secondary_opts)
            for param in context.command.params
            if param.name not in ("out", "world_version")
            and context.get_parameter_source(param.name) is not ParameterSource.DEFAULT
        ]
        if out is None and changed:
            # The shipped checkpoint is what `--model toyworld*` loads: only the exact recipe
            # may replace it, so a trial never lands there by a forgotten --out.
            raise click.UsageError(
                f"{', '.join(changed)} change(s) the shipped recipe: pass --out DIR to train "
                "elsewhere (without options, `world train` reproduces the shipped checkpoint)"
            )
        if world_version == "4":
            overrides.setdefault("steps", V4_RECIPE["steps"])
            calendar_steps = (
                V4_RECIPE["calendar_steps"] if calendar_steps is None else calendar_steps
            )
            local_layer0 = V4_RECIPE["local_layer0"] if local_layer0 is None else local_layer0
        if local_layer0:
            overrides["local_layer0"] = True
        if world_version in ("2", "3", "4"):
            shipped = CHECKPOINT_V4_DIR if world_version == "4" else CHECKPOINT_V2_DIR
            record = train_and_save_v2(
                out or shipped,
                log=click.echo,
                calendar_steps=calendar_steps,
                world_version=int(world_version),
                **overrides,
            )
            click.echo(json.dumps(record.get("site_checks", {}), indent=2))
            return
        record = train_and_save(
            out=out or CHECKPOINT_DIR, log=click.echo, calendar_steps=calendar_steps, **overrides
        )
        click.echo(json.dumps(record.get("metrics", {}), indent=2))

    @world.command(name="eval")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
    @click.option("--checkpoint", type=click.Path(exists=True), default=None)
    @click.option("--quick", is_flag=True, help="Fewer prompts and no probes (seconds, for tests).")
    @click.option(
        "--version",
        "world_version",
        type=click.Choice(["1", "2", "4"]),
        default="1",
        show_default=True,
        help="Which shipped checkpoint (without --checkpoint): 1 toyworld, 2 toyworld-v2, "
        "4 toyworld-v4.",
    )
    def eval_command(as_json, device, checkpoint, quick, world_version):
        """Behaviour report on held-out prompts: IOI, calendar, facts, loss, probe ceilings, and
        the site checks at the default hook (are what RAVEL, circular and IOI patch causal
        there?)."""
        from saebench.models import resolve_device
        from saebench.toyworld.evaluate import behaviour_report, targets_for

        device = resolve_device(device)
        load = {"2": load_toyworld_v2, "4": load_toyworld_v4}.get(world_version, load_toyworld)
        handle = load(device=device, source=checkpoint)
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
            if key == "site_checks":
                for name, check in value.items():
                    mark = "ok" if check["passed"] else "MISSED"
                    click.echo(
                        f"site {name:<35} {check['value']} {mark} (target {check['target']}; "
                        f"clean accuracy {check['clean_accuracy']}, {check['n_pairs']} pairs)"
                    )
                continue
            target = targets_for(handle.world).get(key)
            mark = (
                ""
                if target is None
                else (" ok" if value >= target else f" MISSED (target {target})")
            )
            click.echo(f"{key:<40} {value}{mark}")
