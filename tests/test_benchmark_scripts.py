"""The benchmark scripts run end to end on tiny inputs and print their tables.

Not timings: the figures these runs print mean nothing at this size. The point is that a
change to the library does not leave a script that no longer runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tvlars.optim import _native

ROOT = Path(__file__).resolve().parents[1]
needs_native = pytest.mark.skipif(_native.kernels() is None, reason="no C++ compiler here")


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def output_of(name: str, *args: str) -> str:
    """The script's standard output; it must have succeeded."""
    result = run_script(name, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@needs_native
def test_step_time_prints_its_table_targets_and_telemetry_control():
    out = output_of(
        "step_time.py", "--models", "mnist1d_resnet", "--rounds", "1", "--warmup", "1",
        "--skip-compile", "--telemetry", "--only", "LARS default|floor",
    )  # fmt: skip
    expected = ["torch SGD loop", "one fused pass (floor)", "LARS default",
                "a second copy (control)", "LayerRecorder overhead", "x the floor"]  # fmt: skip
    assert [text for text in expected if text not in out] == []


@needs_native
def test_layer_size_prints_a_row_per_size_and_the_model():
    out = output_of(
        "layer_size.py", "--sizes", "4096", "65536", "--total-mib", "1", "--rounds", "2"
    )
    assert "model (all bandwidth-bound): LARS/floor 1.40" in out
    rows = [line for line in out.splitlines() if line.lstrip().startswith(("4,096", "65,536"))]
    assert len(rows) == 2


@needs_native
def test_host_overhead_prints_every_optimizer():
    out = output_of("host_overhead.py", "--models", "mnist1d_resnet", "--steps", "20")
    for name in ("LARS", "TVLARS", "LAMB", "LAMB + LayerRecorder"):
        assert re.search(rf"^mnist1d_resnet\s+{re.escape(name)}\s+\d+\s+\d+$", out, re.M)


@needs_native
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_kernel_ab_compares_a_revision_with_the_working_tree():
    known = subprocess.run(
        ["git", "merge-base", "--is-ancestor", "cce673a", "HEAD"], cwd=ROOT, capture_output=True
    )
    if known.returncode != 0:
        pytest.skip("this checkout lacks the history kernel_ab.py compares against")
    out = output_of(
        "kernel_ab.py", "--against", "HEAD", "--models", "mnist1d_resnet", "--rounds", "2"
    )
    assert "new / old (median of same-round ratios): LARS" in out


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_kernel_ab_refuses_a_revision_with_another_calling_convention():
    result = run_script("kernel_ab.py", "--against", "no-such-rev")
    assert result.returncode != 0
    assert "other arguments than today's code passes" in result.stderr


def test_step_time_names_the_path_that_finishes_a_run_first_compilation_included(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _compile_time
    import _timing

    def summary(ms: float):
        return _timing.Summary([ms], ms, ms, ms, ms)

    summaries = {"LARS foreach": summary(30.0), "LARS compiled": summary(20.0)}
    # Compiled saves 10 ms a step and costs 15 s to build: foreach wins 1,000 steps
    # (30 s against 35 s), compiled wins 10,000 (215 s against 300 s).
    timings = [_compile_time.CompileTiming("LARS compiled", 15.1, 15.0, 4.1, 4.0)]
    (line,) = _compile_time.run_length_lines(timings, summaries, "foreach")
    assert "1,000 steps: foreach (foreach 30.0 s, compiled 35.0 s)" in line
    assert "10,000 steps: compiled (foreach 300.0 s, compiled 215.0 s)" in line
    assert line.endswith("The automatic choice here: foreach.")


def test_sharded_step_prints_every_contender_with_its_ratios():
    pytest.importorskip("torch.distributed.tensor")
    out = output_of(
        "sharded_step.py", "--models", "mnist1d_resnet", "--rounds", "1", "--warmup", "0"
    )
    assert "split by rows over 2 processes" in out
    for name in ("LARS", "TVLARS", "LAMB"):
        for path in ("default", "foreach"):
            # On DTensors: median, x SGD loop, x the same optimizer and path on local tensors.
            on_dtensors = rf"^{name} on DTensors, {path}\s+[\d.]+\s+[\d.]+\s+[\d.]+$"
            assert re.search(on_dtensors, out, re.M)
            on_local = rf"^{name} on local tensors, {path}\s+[\d.]+\s+[\d.]+$"
            assert re.search(on_local, out, re.M)
    assert re.search(r"^torch SGD loop on DTensors\s+[\d.]+\s+1\.00$", out, re.M)


def test_path_overhead_prints_every_path_against_foreach():
    out = output_of("path_overhead.py", "--models", "mnist1d_resnet", "--rounds", "2")
    for name in ("LARS foreach", "LARS compiled per layer", "LARS single", "LAMB foreach",
                 "LAMB compiled per layer", "LARS group-compiled"):  # fmt: skip
        assert re.search(rf"^{name}\s+[\d.]+\s+[\d.]+\s+[\d.]+$", out, re.M), name
    assert re.search(r"^LARS foreach\s+[\d.]+\s+[\d.]+\s+1\.00$", out, re.M)


def test_train_step_prints_each_contender_inside_a_training_step():
    out = output_of(
        "train_step.py", "--model", "mnist1d-resnet", "--batch-size", "4", "--rounds", "2",
        "--warmup", "1", "--only", "^(LARS default|TVLARS default.*)$",
    )  # fmt: skip
    # step ms, IQR, x SGD step, x floor (absent without the native kernels), fwd+bwd ms,
    # step share, training x SGD
    n = r"[\d.]+"
    row = rf"\s+{n}\s+{n}-{n}\s+{n}x\s+(?:{n}x|-)\s+{n}\s+{n}%\s+{n}x$"
    assert re.search(rf"^torch SGD loop{row}", out, re.M)
    for name in ("LARS default", "TVLARS default", "TVLARS default \\+ LayerRecorder"):
        assert re.search(rf"^{name}{row}", out, re.M), name
    assert not re.search(r"^LAMB default", out, re.M)  # --only left it out
    # The recorded contender recorded every adapted layer at each of its 3 steps.
    (recorded,) = re.findall(r"LayerRecorder: (\d+) rows recorded over 3 steps", out)
    assert int(recorded) > 0 and int(recorded) % 3 == 0
