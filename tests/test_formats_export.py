"""`saebench export RUN_DIR --format saelens|dictionary_learning`: every SAE a run saved, in the
anchor's layout, reloading to the same outputs; what cannot be written is reported, not hidden.
(The per-format layouts are checked against the anchors' definitions in test_formats_saelens.py
and test_formats_dictionary_learning.py.)"""

import json

import click
import pytest
import torch
from click.testing import CliRunner

from saebench.architectures import GatedSAE, JumpReLUSAE, TopKSAE
from saebench.export_cli import export, register_commands, run_saes
from saebench.sae import SAE
from saebench.saved_format import load_sae, save_sae

D, M = 6, 12
METADATA = {
    "model_name": "toyworld",
    "hook_name": "blocks.1.hook_resid_pre",
    "context_size": 64,
    "prepend_bos": True,
}


def randomised(sae, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            if name == "threshold":
                p.abs_()
    return sae


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    saes = {
        "l1/0.001/seed0": SAE(D, M),
        "l1/0.01/seed0": SAE(D, M, apply_b_dec_to_input=False),
        "gated/0.01/seed1": GatedSAE(D, M),
        "topk/4/seed0": TopKSAE(D, M, k=4),
        "jumprelu/0.1/seed0": JumpReLUSAE(D, M),
    }
    for i, (relative, sae) in enumerate(saes.items()):
        randomised(sae, i).cfg = {"method": relative.split("/")[0], "knob": 1.0}
        save_sae(sae, run / "saes" / relative, METADATA)
    # Not SAEs of the run: a task's artifacts, an SAE set aside as unreadable, a temp dir.
    save_sae(SAE(D, M), run / "saes" / "l1" / "0.001" / "seed0" / "artifacts" / "x" / "sae")
    save_sae(SAE(D, M), run / "saes" / "l1" / "0.001" / ".seed1.unreadable.20250101")
    (run / "run.json").write_text("{}")
    return run


def test_run_saes_lists_the_saved_saes_only(run_dir):
    found = [p.relative_to(run_dir / "saes").as_posix() for p in run_saes(run_dir)]
    assert found == sorted(
        [
            "gated/0.01/seed1",
            "jumprelu/0.1/seed0",
            "l1/0.001/seed0",
            "l1/0.01/seed0",
            "topk/4/seed0",
        ]
    )


@pytest.mark.parametrize(
    "format_, marker", [("saelens", "sae_weights.safetensors"), ("dictionary_learning", "ae.pt")]
)
def test_export_writes_every_sae_in_the_anchor_layout(run_dir, tmp_path, format_, marker):
    out = tmp_path / "out"
    result = CliRunner().invoke(export, [str(run_dir), "--format", format_, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "5 SAE(s) written" in result.output
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["format"] == format_ and not manifest["failed"]
    x = torch.randn(32, D, generator=torch.Generator().manual_seed(9))
    for entry in manifest["saes"]:
        original = load_sae(run_dir / "saes" / entry["path"])
        exported = out / entry["path"]
        assert (exported / marker).exists()
        loaded = load_sae(exported)
        assert loaded.architecture == original.architecture
        assert loaded.metadata["hook_name"] == METADATA["hook_name"]
        with torch.no_grad():
            assert torch.allclose(loaded(x), original(x), atol=1e-5), entry["path"]
            f, f_original = loaded.encode(x), original.encode(x)
            if (
                format_ == "dictionary_learning"
                and entry["architecture"] == "standard"
                and (original.apply_b_dec_to_input)
            ):
                f_original = f_original * original.W_dec.norm(dim=1)  # AutoEncoder's unit decoder
            assert torch.allclose(f, f_original, atol=1e-5), entry["path"]


def test_default_out_and_failures_are_reported(run_dir):
    sae = randomised(JumpReLUSAE(D, M), 7)
    with torch.no_grad():
        sae.threshold[3] = -0.2  # SAELens would compute it differently: refused
    save_sae(sae, run_dir / "saes" / "jumprelu" / "0.2" / "seed0", METADATA)
    result = CliRunner().invoke(export, [str(run_dir), "--format", "saelens"])
    assert result.exit_code == 1
    assert "not exported jumprelu/0.2/seed0" in result.output and "threshold" in result.output
    manifest = json.loads((run_dir / "export" / "saelens" / "export.json").read_text())
    assert len(manifest["saes"]) == 5 and len(manifest["failed"]) == 1


def test_a_directory_without_saes_is_an_error(tmp_path):
    result = CliRunner().invoke(export, [str(tmp_path), "--format", "saelens"])
    assert result.exit_code != 0 and "no saved SAEs" in result.output


def test_registers_the_command():
    group = click.Group()
    register_commands(group)
    assert "export" in group.commands
