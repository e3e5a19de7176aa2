"""The toy world: a synthetic mini-English world, its tokenizer and a small LM trained on it."""
