"""Shared fixtures. Nothing here touches the network: HF_HUB_OFFLINE is forced on. Every test runs
under portable CPU numerics (saebench/numerics.py)."""

import os

import pytest

from saebench.numerics import apply_portable_cpu_numerics

# Before numpy or torch loads: the stored reference results (tests/data, the gate baseline) were
# made under these settings, and they make the float kernels the same on any x86-64 CI machine.
apply_portable_cpu_numerics()

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module, restored after (a module asks for it with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`): tiny matmuls only contend on
    the shared CI cores, and some stored references were made with one thread."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def toy_handle():
    """The shipped toy-world model, loaded once per session."""
    import torch

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    from saebench.toyworld.plugin import load_toyworld

    return load_toyworld(device="cpu")


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory):
    """A tiny random GPT-2 saved with save_pretrained (offline stand-in for a hub model)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from saebench.toyworld.model import CHECKPOINT_DIR
    from saebench.toyworld.tokenizer import load_tokenizer

    directory = tmp_path_factory.mktemp("tiny_gpt2")
    tokenizer = load_tokenizer(CHECKPOINT_DIR / "tokenizer")
    model = GPT2LMHeadModel(
        GPT2Config(
            n_layer=2,
            n_embd=32,
            n_head=2,
            vocab_size=len(tokenizer),
            n_positions=64,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
