"""The gate for real, on the smoke preset against the committed baseline: this repository's own
quality gate (an unchanged method passes), and a deliberately degraded TopK fails naming the
metric. scripts/ci_gate.sh runs the same `saebench check --rerun` with 3 seeds and writes
Markdown/JUnit reports."""

from __future__ import annotations

import pytest
import torch
from reference_results import GATE_BASELINE

from saebench import plugins
from saebench.hookspecs import hookimpl
from saebench.specs import MethodSpec
from saebench_plugins.topk import TrainableTopKSAE

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
# The committed baseline was made with one torch thread, as scripts/ci_gate.sh reruns it.

BASELINE = GATE_BASELINE  # the committed baseline
DECODER_NOISE = 0.5  # relative norm of the noise added to every decoder row


class NoisyDecoderTopK(TrainableTopKSAE):
    """TopK whose decoder gets fixed random noise after training: what a broken PR could do."""

    def fold_input_scale(self, scale: float) -> None:
        super().fold_input_scale(scale)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            noise = torch.randn(self.W_dec.shape, generator=generator).to(self.W_dec.device)
            row_norms = self.W_dec.norm(dim=1, keepdim=True)
            self.W_dec.add_(DECODER_NOISE * noise * row_norms / self.d_in**0.5)


class NoisyTopKPlugin:
    """Registers the degraded method under the name `topk`, in place of the built-in."""

    @hookimpl
    def register_methods(self, register):
        from saebench_plugins import topk

        spec = next(iter(_collect_specs(topk)))
        register(
            MethodSpec(
                name="topk",
                description="TopK with a noisy decoder (test only)",
                knob=spec.knob,
                sweeps=spec.sweeps,
                knob_is_integer=True,
                knob_min=1,
                build=lambda d_in, d_sae, knob: NoisyDecoderTopK(d_in, d_sae, k=int(knob)),
            )
        )


def _collect_specs(module):
    specs = []
    module.register_methods(register=specs.append)
    return specs


@pytest.fixture(scope="module")
def activation_cache(tmp_path_factory):
    """Both runs harvest the same activations: do it once."""
    return tmp_path_factory.mktemp("gate_cache")


def test_current_methods_pass_the_committed_smoke_baseline(tmp_path, activation_cache, monkeypatch):
    """What scripts/ci_gate.sh runs, with one seed: `saebench check --rerun BASELINE`."""
    from click.testing import CliRunner

    from saebench.cli import cli

    monkeypatch.setattr("saebench.harvest.DEFAULT_CACHE", activation_cache)
    junit = tmp_path / "gate.xml"
    result = CliRunner().invoke(
        cli,
        ["check", "--rerun", str(BASELINE), "--device", "cpu", "--out", str(tmp_path / "run")]
        + ["--junit", str(junit)],
    )
    assert result.exit_code == 0, result.output
    assert "quality gate: PASS" in result.output and junit.exists()


@pytest.fixture
def degraded_topk():
    plugins.load_plugins()
    builtin_name = "saebench_plugins.topk"
    builtin = plugins.pm.unregister(name=builtin_name)
    noisy = NoisyTopKPlugin()
    plugins.pm.register(noisy, name="test-noisy-topk")
    try:
        yield
    finally:
        plugins.pm.unregister(noisy)
        plugins.pm.register(builtin, name=builtin_name)


def test_degraded_topk_fails_the_committed_smoke_baseline(
    tmp_path, degraded_topk, activation_cache
):
    from saebench.gate import run_and_check

    assert plugins.get_method("topk").description.endswith("(test only)")
    with pytest.raises(AssertionError) as failure:
        run_and_check(BASELINE, tmp_path / "run", seeds=1, device="cpu", cache_dir=activation_cache)
    message = str(failure.value)
    regressed = [line for line in message.splitlines() if line.startswith("REGRESSED")]
    assert any(" topk " in line and " fvu " in line for line in regressed), message
    # The untouched method stays within noise: the gate blames the right method.
    assert not any(" gated " in line for line in regressed), message
