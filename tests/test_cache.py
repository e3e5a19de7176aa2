"""The activation cache never gives a silently wrong number (docs/cache.md).

Most tests harvest from a tiny fake model (an embedding lookup, milliseconds); the real toy model
(`toy_handle`) is used where its tokenizer matters: out-of-vocabulary text and a 10 MB line.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from saebench import harvest as harvest_module
from saebench.errors import ConfigError
from saebench.harvest import CacheEntryError, HarvestedStore, harvest
from saebench.models import resolve_model, text_file_corpus, validate_hook
from saebench.specs import ModelHandle

HOOK = "blocks.0.hook_resid_pre"
WORDS = [f"w{i}" for i in range(50)]
PAD, BOS, EOS, UNK = 0, 1, 2, 3


class FakeTokenizer:
    bos_token_id, pad_token_id, cls_token_id = BOS, PAD, None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [WORDS.index(w) + 4 if w in WORDS else UNK for w in text.split()]


class FakeBridge:
    """Activations are an embedding of the token plus its position: exact and cheap to check."""

    def __init__(self, d: int = 8, delay: float = 0.0, calls: Path | None = None):
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.randn(len(WORDS) + 4, d, generator=generator)
        self.delay, self.calls = delay, calls

    def state_dict(self) -> dict:
        return {"embed": self.weight}

    def run_with_cache(self, batch: torch.Tensor, names_filter: str):
        time.sleep(self.delay)
        if self.calls is not None:  # one line per forward pass, across processes
            with open(self.calls, "a") as file:
                file.write(f"{os.getpid()}\n")
        positions = torch.arange(batch.shape[1], dtype=torch.float32)[None, :, None]
        return None, {names_filter: self.weight[batch] + positions / 100}


def model_corpus(split: str, n_texts: int, seed: int) -> list[str]:
    offset = 0 if split == "train" else 25
    return [
        f"w{(seed + i) % 25 + offset} w{(3 * i) % 50} w{(7 * i + 1) % 50}" for i in range(n_texts)
    ]


def fake_handle(corpus=model_corpus, **bridge_options) -> ModelHandle:
    return ModelHandle(
        name="fake",
        bridge=FakeBridge(**bridge_options),
        tokenizer=FakeTokenizer(),
        default_hook=HOOK,
        context_size=16,
        corpus=corpus,
        special_token_ids=frozenset({PAD, BOS, EOS, UNK}),
        info={"source": "tests"},
    )


def small_harvest(handle, cache: Path, **kwargs) -> HarvestedStore:
    kwargs.setdefault("echo", lambda message: None)
    return harvest(handle, HOOK, 3000, 500, cache_dir=cache, **kwargs)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))


def hidden(cache: Path) -> list[str]:
    return sorted(
        p.name for p in cache.iterdir() if p.name.startswith(".") and p.name != ".quarantine"
    )


# --- 1. the dataset is part of the key ----------------------------------------------------------


def test_each_dataset_file_is_its_own_entry_keyed_by_content(tmp_path):
    cache = tmp_path / "cache"
    a = write_lines(tmp_path / "a.txt", [f"w{i} w{i + 1} w{i + 2}" for i in range(20)])
    b = write_lines(tmp_path / "b.txt", [f"w{i + 30} w{i + 20}" for i in range(20)])
    store_a = small_harvest(fake_handle(text_file_corpus(a)), cache)
    store_b = small_harvest(fake_handle(text_file_corpus(b)), cache)
    assert store_a.info["key"] != store_b.info["key"] and len(entries(cache)) == 2
    assert store_a.info["dataset_file"] == str(a) and len(store_a.info["dataset"]) == 64
    # The key is the content, not the name: a copy elsewhere reuses the entry.
    copy = tmp_path / "copy.txt"
    copy.write_bytes(a.read_bytes())
    assert (
        small_harvest(fake_handle(text_file_corpus(copy)), cache).info["key"] == store_a.info["key"]
    )


def test_a_warm_default_entry_is_never_served_for_a_dataset_run(tmp_path):
    cache = tmp_path / "cache"
    default = small_harvest(fake_handle(), cache)
    dataset = write_lines(
        tmp_path / "d.txt", [f"w{40 + i % 10} w{40 + (i + 3) % 10}" for i in range(30)]
    )
    from_file = small_harvest(fake_handle(text_file_corpus(dataset)), cache, dataset=dataset)
    assert from_file.info["key"] != default.info["key"]
    file_ids = {WORDS.index(f"w{i}") + 4 for i in range(40, 50)}
    assert set(from_file.eval_tokens[from_file.eval_mask].tolist()) <= file_ids
    # ... and the dataset run did not poison the default: it gets its own entry back.
    again = small_harvest(fake_handle(), cache)
    assert again.info["key"] == default.info["key"] and torch.equal(
        again.eval_acts, default.eval_acts
    )


def test_harvest_checks_the_dataset_against_the_handle(tmp_path):
    a = write_lines(tmp_path / "a.txt", ["w1 w2", "w3 w4", "w5 w6"])
    b = write_lines(tmp_path / "b.txt", ["w7 w8", "w9 w10", "w11 w12"])
    with pytest.raises(ConfigError, match="was loaded with --dataset"):
        small_harvest(fake_handle(text_file_corpus(a)), tmp_path / "cache", dataset=b)
    # A model plugin with its own corpus reader: keyed by the file's content all the same.
    plugin = small_harvest(fake_handle(), tmp_path / "cache", dataset=a)
    assert plugin.info["dataset"] == harvest_module._sha256(a)
    assert harvest_module.dataset_id(fake_handle()) is None


def test_the_key_covers_budgets_seed_context_and_code_version(monkeypatch):
    handle = fake_handle()

    def key(**overrides) -> str:
        args = {"hook": HOOK, "n_train": 3000, "n_eval": 500, "seed": 0, "dataset": None}
        args.update(overrides)
        return harvest_module.cache_key(handle, *args.values())[0]

    keys = {key(), key(hook="blocks.0.hook_mlp_out"), key(n_train=3001), key(n_eval=501)}
    keys |= {key(seed=1), key(dataset="0" * 64)}
    monkeypatch.setattr(harvest_module, "HARVEST_VERSION", harvest_module.HARVEST_VERSION + 1)
    keys.add(key())
    assert len(keys) == 7
    assert (
        harvest_module.cache_key(
            dataclasses.replace(handle, context_size=8), HOOK, 3000, 500, 0, None
        )[0]
        not in keys
    )


# --- 2. the manifest is checked on open ---------------------------------------------------------


def truncate_shard(entry: Path) -> None:
    shard = entry / "train_0000.npy"
    os.truncate(shard, shard.stat().st_size - 1000)


def zero_region(entry: Path) -> None:
    with open(entry / "train_0000.npy", "r+b") as file:
        file.seek(20_000)
        file.write(bytes(4096))


def corrupt_info(entry: Path) -> None:
    (entry / "info.json").write_text('{"key": "broken')


def corrupt_eval(entry: Path) -> None:
    with open(entry / "eval_acts.npy", "r+b") as file:
        file.seek(-64, os.SEEK_END)
        file.write(b"\xff" * 64)


def drop_manifest(entry: Path) -> None:  # the layout of the previous code: no manifest
    (entry / "manifest.json").unlink()


@pytest.mark.parametrize(
    "damage, named",
    [
        (truncate_shard, "train_0000.npy has"),
        (zero_region, "train_0000.npy does not match"),
        (corrupt_info, "info.json has"),
        (corrupt_eval, "eval_acts.npy does not match"),
        (drop_manifest, "no manifest.json"),
    ],
)
def test_a_damaged_entry_is_named_quarantined_and_harvested_again(tmp_path, damage, named):
    cache = tmp_path / "cache"
    first = small_harvest(fake_handle(), cache)
    key, expected = first.info["key"], first.sample(3000, seed=0)
    damage(cache / key)
    with pytest.raises(CacheEntryError, match=named) as error:
        HarvestedStore(cache / key)  # a worker opening the entry by path
    assert key in str(error.value) and "\n" not in str(error.value)
    said: list[str] = []
    second = small_harvest(fake_handle(), cache, echo=said.append)
    assert (
        len(said) == 1 and key in said[0] and named in said[0] and "harvesting it again" in said[0]
    )
    assert torch.equal(second.sample(3000, seed=0), expected)
    assert torch.equal(second.eval_acts, first.eval_acts)
    (quarantined,) = (cache / ".quarantine").iterdir()
    assert (
        quarantined.name.startswith(f"{key}-")
        and named in (quarantined / "QUARANTINED.txt").read_text()
    )
    assert entries(cache) == [key] and hidden(cache) == []


def test_large_files_are_checked_by_sampled_blocks_on_open_and_whole_by_verify(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(harvest_module, "FULL_HASH_ON_OPEN_BYTES", 16 << 10)
    monkeypatch.setattr(harvest_module, "SAMPLE_BLOCK_BYTES", 1 << 10)  # 8 blocks of 1 KiB
    cache = tmp_path / "cache"
    entry = small_harvest(fake_handle(), cache).directory
    shard = entry / "train_0000.npy"
    blocks = harvest_module._sample_ranges(shard.stat().st_size)
    assert (
        len(blocks) == 8
        and "sampled_sha256"
        in json.loads((entry / "manifest.json").read_text())["files"]["train_0000.npy"]
    )
    gap = blocks[3][0] + (1 << 10) + 100  # between two sampled blocks
    with open(shard, "r+b") as file:
        file.seek(gap)
        file.write(bytes(512))
    HarvestedStore(entry)  # not seen by the cheap check on open...
    with pytest.raises(CacheEntryError, match="sha256"):
        HarvestedStore(entry, full=True)  # ... but by a full verify
    with open(shard, "r+b") as file:
        file.seek(blocks[4][0] + 10)
        file.write(bytes(512))
    with pytest.raises(CacheEntryError, match="sampled sha256"):
        HarvestedStore(entry)


def test_an_entry_copied_under_another_key_is_refused(tmp_path):
    import shutil

    cache = tmp_path / "cache"
    store = small_harvest(fake_handle(), cache)
    shutil.copytree(store.directory, cache / ("f" * 20))
    with pytest.raises(CacheEntryError, match="manifest of entry"):
        HarvestedStore(cache / ("f" * 20))


# --- 3. temp dirs of dead harvests --------------------------------------------------------------


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def fake_temp(cache: Path, key: str, owner: str | None, age: float = 0.0) -> Path:
    directory = cache / f".{key}.{abs(hash((owner, age))) % 10**6}.tmp"
    directory.mkdir(parents=True)
    (directory / "train_0000.npy").write_bytes(bytes(1000))
    if owner is not None:
        (directory / ".harvester").write_text(owner)
    stamp = time.time() - age
    for path in [*directory.iterdir(), directory]:
        os.utime(path, (stamp, stamp))
    return directory


def test_harvest_removes_temp_dirs_of_dead_harvests_only(tmp_path):
    cache = tmp_path / "cache"
    host = socket.gethostname()
    dead = fake_temp(cache, "a" * 20, f"{host} {dead_pid()}")
    old_orphan = fake_temp(cache, "b" * 20, None, age=2 * 3600)
    recent_orphan = fake_temp(cache, "c" * 20, None, age=60)
    other_host = fake_temp(cache, "d" * 20, "elsewhere 1234", age=60)
    with harvest_module.key_lock(cache, "e" * 20):  # a live harvest of ours
        live = fake_temp(cache, "e" * 20, f"{host} {os.getpid()}")
        said: list[str] = []
        small_harvest(fake_handle(), cache, echo=said.append)
        assert live.exists()
    assert not dead.exists() and not old_orphan.exists()
    assert recent_orphan.exists() and other_host.exists()
    assert len(said) == 2 and all("left by a dead harvest" in line for line in said)


def _harvest_forever(cache: str) -> None:
    small_harvest(fake_handle(delay=0.5), Path(cache))


def test_a_killed_harvest_leaves_a_temp_dir_the_next_harvest_removes(tmp_path):
    cache = tmp_path / "cache"
    child = multiprocessing.get_context("spawn").Process(
        target=_harvest_forever, args=(str(cache),)
    )
    child.start()
    try:
        deadline = time.time() + 120
        # Kill it once its temp dir carries its owner file (host, pid), mid-harvest.
        while not list(cache.glob(".*.tmp/.harvester")) and time.time() < deadline:
            time.sleep(0.1)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    ((temp, key),) = harvest_module.temp_dirs(cache)
    said: list[str] = []
    store = small_harvest(fake_handle(), cache, echo=said.append)
    assert not temp.exists() and store.info["key"] == key and hidden(cache) == []
    assert any(temp.name in line and "is gone" in line for line in said)


# --- 4. two processes, one harvest --------------------------------------------------------------


def _harvest_in_process(cache: str, calls: str, barrier, results) -> None:
    said: list[str] = []
    barrier.wait()
    store = small_harvest(fake_handle(delay=0.2, calls=Path(calls)), Path(cache), echo=said.append)
    results.put((os.getpid(), store.info["key"], float(store.eval_acts.sum()), said))


def test_two_processes_harvesting_one_cold_entry_share_one_harvest(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    cache, calls = tmp_path / "cache", tmp_path / "calls.txt"
    processes = [
        context.Process(target=_harvest_in_process, args=(str(cache), str(calls), barrier, results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    (_, key_a, sum_a, said_a), (_, key_b, sum_b, said_b) = outcomes
    assert key_a == key_b and sum_a == sum_b
    assert len(set(calls.read_text().split())) == 1, "both processes ran the model"
    waiting = [line for line in said_a + said_b if line.startswith("waiting for another process")]
    assert len(waiting) == 1 and key_a in waiting[0]
    assert entries(cache) == [key_a] and hidden(cache) == []


def test_losing_the_rename_race_uses_the_winners_entry(tmp_path, monkeypatch):
    import shutil

    winner = small_harvest(fake_handle(), tmp_path / "winner")
    cache = tmp_path / "cache"
    real_write_eval = harvest_module._write_eval

    def another_process_publishes_first(directory, *args):
        result = real_write_eval(directory, *args)
        shutil.copytree(winner.directory, cache / winner.directory.name)
        return result

    monkeypatch.setattr(harvest_module, "_write_eval", another_process_publishes_first)
    said: list[str] = []
    store = small_harvest(fake_handle(), cache, echo=said.append)
    assert store.directory == cache / winner.directory.name
    assert said == [
        f"cache entry {store.info['key']} was published by another process first; using that one"
    ]
    assert entries(cache) == [store.info["key"]] and hidden(cache) == []


# --- 5. corpora that cannot fill the budget fail fast -------------------------------------------


@pytest.fixture
def alarm():
    """Fail a test that runs past `seconds` instead of hanging the suite."""

    def expire(signum, frame):
        raise TimeoutError("ran past its time limit: a harvest loop does not terminate")

    previous = signal.signal(signal.SIGALRM, expire)
    yield signal.alarm
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_dataset_of_unknown_words_fails_at_once(toy_handle, tmp_path, alarm):
    dataset = write_lines(tmp_path / "oov.txt", [f"zzqx{i} blorf{i} quux{i}" for i in range(50)])
    handle = dataclasses.replace(toy_handle, corpus=text_file_corpus(dataset))
    cache = tmp_path / "cache"
    alarm(30)  # the old code looped here for minutes: the alarm fails the test instead
    with pytest.raises(ConfigError, match="yields no tokens the model toyworld knows") as error:
        harvest(handle, toy_handle.default_hook, 24_000, 3000, cache_dir=cache, echo=print)
    assert str(dataset) in str(error.value)
    assert "\n" not in str(error.value) and list(cache.iterdir()) == []  # no temp dir, no lock


def test_a_dataset_of_mostly_unknown_words_fails_at_once(tmp_path, alarm):
    # One known word in 1000 lines: 40,000 tokens would take 8,000 requests for more text.
    lines = ["w1"] + [f"zz{i} zy{i}" for i in range(999)]
    handle = fake_handle(text_file_corpus(write_lines(tmp_path / "sparse.txt", lines)))
    alarm(30)
    with pytest.raises(ConfigError, match="yields too few tokens"):
        harvest(handle, HOOK, 40_000, 500, cache_dir=tmp_path / "cache")
    assert hidden(tmp_path / "cache") == []


def test_a_ten_megabyte_line_is_split_into_texts_not_retokenised(toy_handle, tmp_path, alarm):
    import random

    vocabulary = [w for w in toy_handle.tokenizer.get_vocab() if w.isalpha()]
    words = random.Random(0).choices(vocabulary, k=1_800_000)
    dataset = tmp_path / "huge.txt"
    dataset.write_text(" ".join(words)[:10_000_000] + "\n")  # one 10 MB line
    alarm(90)  # a bound on a hang, not a speed measurement
    corpus = text_file_corpus(dataset)
    assert len(corpus.splits["train"]) > 1000 and len(corpus.splits["eval"]) > 100
    handle = dataclasses.replace(toy_handle, corpus=corpus)
    store = harvest(handle, toy_handle.default_hook, 2000, 300, cache_dir=tmp_path / "cache")
    assert store.n_train_tokens == 2000


def test_a_long_text_fills_several_rows_instead_of_being_cut():
    tokens, in_row = harvest_module.pack_texts(FakeTokenizer(), [" ".join(WORDS[:40])], 16)
    assert len(tokens) == 3 and int(in_row.sum()) == 40 + 3  # every token kept, BOS per row


# --- 6. bad --dataset files ---------------------------------------------------------------------


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.with_suffix(".jsonl").write_text("\n".join(lines) + "\n")
    return path.with_suffix(".jsonl")


BAD_DATASETS = {
    "directory": (lambda p: (p.mkdir(), p)[1], "is a directory"),
    "binary": (lambda p: (p.write_bytes(b"\x7fELF\x00\x01\x02" * 50), p)[1], "binary"),
    "latin1": (
        lambda p: (p.write_bytes("café crème\nbrûlée\n".encode("latin-1")), p)[1],
        "not UTF-8",
    ),
    "malformed": (
        lambda p: _jsonl(p, ['{"text": "a"}', '{"text": "b"']),
        "line 2 is not valid JSON",
    ),
    "no_text": (
        lambda p: _jsonl(p, ['{"text": "a"}', '{"body": "b"}']),
        'line 2 has no string "text"',
    ),
    "not_object": (lambda p: _jsonl(p, ['["a"]']), 'line 1 has no string "text"'),
    "empty": (lambda p: (p.write_text("\n  \n"), p)[1], "has no text"),
    "one_line": (lambda p: (p.write_text("mary walked .\n"), p)[1], "too small to split"),
    "one_line_repeated": (
        lambda p: (p.write_text("mary walked .\n" * 30), p)[1],
        "too small to split",
    ),
    "missing": (lambda p: p, "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATASETS))
def test_a_bad_dataset_file_is_one_line_naming_the_file_and_the_fix(tmp_path, case):
    make, expected = BAD_DATASETS[case]
    path = make(tmp_path / "data")
    with pytest.raises(ConfigError, match=expected) as error:
        text_file_corpus(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message and "; " in message


def test_an_empty_dataset_fails_when_the_model_loads_on_a_fresh_cache(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ConfigError, match="has no text"):
        resolve_model("toyworld", "cpu", dataset=str(empty))


def test_train_and_eval_texts_of_a_dataset_are_disjoint(tmp_path):
    corpus = text_file_corpus(write_lines(tmp_path / "two.txt", ["w1 w2", "w3 w4"]))
    assert set(corpus("train", 50, 0)) == {"w1 w2"} and set(corpus("eval", 50, 0)) == {"w3 w4"}
    lines = ["w1", "w2"] * 10  # repeats: a held-out text is held out with all its copies
    corpus = text_file_corpus(write_lines(tmp_path / "dup.txt", lines))
    assert set(corpus("train", 10, 0)) == {"w1"} and set(corpus("eval", 10, 0)) == {"w2"}


# --- 7. model sources and hooks -----------------------------------------------------------------


@pytest.mark.parametrize(
    "source", ["/nonexistent", "./nope", "../nope/either", "~/no-such-model-dir"]
)
def test_an_hf_path_that_does_not_exist_says_no_such_directory(source):
    with pytest.raises(ConfigError, match="no such directory") as error:
        resolve_model(f"hf:{source}", "cpu")
    assert "\n" not in str(error.value) and "save_pretrained" in str(error.value)


def test_a_bare_path_that_does_not_exist_says_no_such_directory(tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        resolve_model(str(tmp_path / "missing-model"), "cpu")
    a_file = tmp_path / "model.bin"
    a_file.write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a directory"):
        resolve_model(f"hf:{a_file}", "cpu")


@pytest.mark.parametrize("hook", ["blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z"])
def test_hooks_that_are_not_one_vector_per_token_are_refused(toy_handle, hook):
    with pytest.raises(ConfigError, match="is not supported") as error:
        validate_hook(toy_handle, hook)
    message = str(error.value)
    assert "hook_resid_pre" in message and "hook_mlp_out" in message and "hook_attn_out" in message
    assert "\n" not in message and "pass one of those as --hook" in message


def test_stream_hooks_are_accepted(toy_handle):
    for hook in ["blocks.0.hook_resid_mid", "blocks.1.hook_mlp_out", "blocks.0.hook_attn_out"]:
        assert validate_hook(toy_handle, hook) == hook


def test_harvest_refuses_activations_that_are_not_one_vector_per_token(tmp_path):
    handle = fake_handle()
    handle.bridge.run_with_cache = lambda batch, names_filter: (
        None,
        {names_filter: torch.zeros(len(batch), 2, 16, 16)},
    )
    with pytest.raises(ConfigError, match="not one vector per token"):
        small_harvest(handle, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


# --- 8. saebench cache ls | verify | clean ------------------------------------------------------


@pytest.fixture
def messy_cache(tmp_path):
    """A cache with an ok entry, a corrupt one, a stale one, a temp leftover and a quarantine."""
    cache = tmp_path / "cache"
    ok = small_harvest(fake_handle(), cache).info["key"]
    corrupt = small_harvest(fake_handle(), cache, seed=1).info["key"]
    zero_region(cache / corrupt)
    stale = small_harvest(fake_handle(), cache, seed=2).info["key"]
    drop_manifest(cache / stale)
    fake_temp(cache, "a" * 20, f"{socket.gethostname()} {dead_pid()}")
    (cache / ".quarantine" / f"{'b' * 20}-x").mkdir(parents=True)
    return cache, ok, corrupt, stale


def cache_command(*args: str, env: dict | None = None):
    from saebench.cli import cli

    return CliRunner().invoke(cli, ["cache", *args], env=env)


def test_cache_ls_lists_every_entry_with_its_status(messy_cache):
    cache, ok, corrupt, stale = messy_cache
    result = cache_command("ls", "--cache", str(cache))
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert "fake" in lines[ok] and HOOK in lines[ok] and "model corpus" in lines[ok]
    assert lines[ok].endswith(" ok") and "3000+" in lines[ok] and "MiB" in lines[ok]
    assert "corrupt" in lines[corrupt] and "stale" in lines[stale]
    assert "1 temp dir(s)" in result.output
    # The cache directory also comes from SAEBENCH_CACHE.
    assert ok in cache_command("ls", env={"SAEBENCH_CACHE": str(cache)}).output


def test_cache_verify_fails_naming_bad_keys_and_quarantines_them(messy_cache):
    cache, ok, corrupt, stale = messy_cache
    result = cache_command("verify", "--cache", str(cache))
    assert result.exit_code == 1 and f"corrupt: {corrupt}" in result.output
    assert f"{ok}  ok" in result.output and f"{stale}  stale" in result.output
    assert cache_command("verify", "--cache", str(cache), ok).exit_code == 0
    result = cache_command("verify", "--cache", str(cache), "--quarantine")
    assert result.exit_code == 1 and "moved to" in result.output
    assert not (cache / corrupt).exists()
    assert cache_command("verify", "--cache", str(cache)).exit_code == 0


def test_cache_clean_removes_leftovers_and_quarantine_and_all_with_all(messy_cache):
    cache, ok, corrupt, stale = messy_cache
    result = cache_command("clean", "--cache", str(cache))
    assert result.exit_code == 0 and "freed" in result.output
    assert hidden(cache) == [] and not (cache / ".quarantine").exists()
    assert entries(cache) == sorted([ok, corrupt, stale])
    cache_command("clean", "--cache", str(cache), "--stale")
    assert entries(cache) == sorted([ok, corrupt])
    cache_command("clean", "--cache", str(cache), "--all")
    assert list(cache.iterdir()) == []


def test_verify_on_open_reads_a_bounded_share_of_a_default_sized_entry(tmp_path, monkeypatch):
    """A synthetic entry of the default preset's size (400k x 128 float32, 215 MB): the check on
    open hashes large shards by sampled blocks only (docs/cache.md has the measured timings;
    tests assert what is read, never a wall-clock time)."""
    entry = tmp_path / ("0" * 20)
    entry.mkdir()
    shard_rows = harvest_module.SHARD_TOKENS
    for index, start in enumerate(range(0, 400_000, shard_rows)):
        rows = min(shard_rows, 400_000 - start)
        np.save(entry / f"train_{index:04d}.npy", np.full((rows, 128), index, dtype=np.float32))
    np.save(entry / "eval_acts.npy", np.ones((20_000, 128), dtype=np.float32))
    np.save(entry / "eval_tokens.npy", np.zeros((400, 64), dtype=np.int64))
    np.save(entry / "eval_mask.npy", np.zeros((400, 64), dtype=bool))
    info = {"key": entry.name, "d_in": 128, "n_train_tokens": 400_000}
    (entry / "info.json").write_text(json.dumps(info))
    harvest_module.write_manifest(entry, entry.name)
    hashed = []
    real_sha256 = harvest_module._sha256

    def counting_sha256(path, ranges=None):
        hashed.append(sum(n for _, n in ranges) if ranges else path.stat().st_size)
        return real_sha256(path, ranges)

    monkeypatch.setattr(harvest_module, "_sha256", counting_sha256)
    harvest_module.verify_entry(entry)
    total = sum(p.stat().st_size for p in entry.iterdir())
    assert 0 < sum(hashed) < 0.2 * total  # sampled, not whole
