"""The toy world: a synthetic mini-English world, its tokenizer and a small LM trained on it."""
from saebench.toyworld.world import Example, World, answer_token_id  # noqa: F401


def load_world() -> World:
    """The World the shipped model was trained on."""
    return World(seed=0)
