"""The toy world: a synthetic mini-English world, its tokenizer and a small LM trained on it."""

from saebench.toyworld.world import (  # noqa: F401
    CORE_MAX_DAY_OFFSET,
    Example,
    World,
    answer_token_id,
)


def world_class(version: int) -> type[World]:
    """The World class of a world version (1: World, 2–4: WorldV2–WorldV4), imported lazily."""
    if version == 1:
        return World
    if version == 2:
        from saebench.toyworld.world_v2 import WorldV2

        return WorldV2
    if version == 3:
        from saebench.toyworld.world_v3 import WorldV3

        return WorldV3
    if version == 4:
        from saebench.toyworld.world_v4 import WorldV4

        return WorldV4
    raise ValueError(f"unknown toy world version {version!r}: use 1, 2, 3 or 4")


def load_world(record: dict | None = None) -> World:
    """The World a checkpoint was trained on (its final stage), from its train_record.json
    (default: the shipped checkpoint's). Records from before the calendar stage have no
    max_day_offset: they were trained with CORE_MAX_DAY_OFFSET."""
    if record is None:
        import json

        from saebench.toyworld.model import CHECKPOINT_DIR

        path = CHECKPOINT_DIR / "train_record.json"
        record = json.loads(path.read_text()) if path.exists() else {}
    max_day_offset = record.get("max_day_offset", CORE_MAX_DAY_OFFSET)
    return world_class(record.get("world_version", 1))(seed=0, max_day_offset=max_day_offset)
