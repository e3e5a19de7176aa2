"""The toy world: a synthetic mini-English world, its tokenizer and a small LM trained on it."""

from saebench.toyworld.world import (  # noqa: F401
    CORE_MAX_DAY_OFFSET,
    Example,
    World,
    answer_token_id,
)


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
    if record.get("world_version", 1) == 2:
        from saebench.toyworld.world_v2 import WorldV2

        return WorldV2(seed=0, max_day_offset=max_day_offset)
    if record.get("world_version", 1) == 3:
        from saebench.toyworld.world_v3 import WorldV3

        return WorldV3(seed=0, max_day_offset=max_day_offset)
    if record.get("world_version", 1) == 4:
        from saebench.toyworld.world_v4 import WorldV4

        return WorldV4(seed=0, max_day_offset=max_day_offset)
    return World(seed=0, max_day_offset=max_day_offset)
