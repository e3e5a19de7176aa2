"""A word-level tokenizer for the toy world, saved as a Hugging Face tokenizer directory.

TransformerBridge needs a tokenizer loaded from a local path (AutoTokenizer.from_pretrained),
so we always save the tokenizer to a directory and load it back from there.
"""

from __future__ import annotations

from pathlib import Path

from saebench.toyworld.world import SPECIAL_TOKENS


def build_tokenizer(vocabulary: list[str], directory: str | Path):
    """Write a word-level tokenizer over `vocabulary` to `directory` and return it loaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(vocabulary)}
    assert all(vocab[s] == i for i, s in enumerate(SPECIAL_TOKENS)), "specials come first"
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.save_pretrained(str(directory))
    return load_tokenizer(directory)


def load_tokenizer(directory: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
