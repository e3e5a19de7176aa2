"""The toy world: a synthetic mini-English world, its tokenizer and a small LM trained on it."""
from saebench.toyworld.world import Example, World, answer_token_id  # noqa: F401


def load_world(record: dict | None = None) -> World:
    """The World a checkpoint was trained on (its final stage), from its train_record.json
    (default: the shipped checkpoint's). Records from before the calendar stage mean offsets ≤ 6."""
    if record is None:
        import json

        from saebench.toyworld.model import CHECKPOINT_DIR

        path = CHECKPOINT_DIR / "train_record.json"
        record = json.loads(path.read_text()) if path.exists() else {}
    return World(seed=0, max_day_offset=record.get("max_day_offset", 6))
