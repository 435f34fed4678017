"""tvlars.telemetry: per-layer norms (LWN, LGN, LNR), trust ratio and step size per step."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tvlars.optim import _multi_tensor, _native
from tvlars.optim._stats import LayerStats
from tvlars.telemetry import COLUMNS, LayerRecorder, plot_layers, read_layers, split_by_layer

try:
    from tvlars import LAMB, LARS, TVLARS
except ImportError:  # the optimizers land separately; the contract tests wait for them
    LARS = TVLARS = LAMB = None

needs_optimizers = pytest.mark.skipif(LARS is None, reason="tvlars.LARS/TVLARS/LAMB not built")

WEIGHTS = ["0.weight", "2.weight", "4.weight"]
RTOL = 2e-6  # values pass through a float32 buffer and 9-digit text


def make_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def train(model, optimizer, steps, before_step=None, seed=1):
    """Run ``steps`` optimizer steps; ``before_step(i)`` may inspect or edit gradients."""
    generator = torch.Generator().manual_seed(seed)
    for i in range(steps):
        optimizer.zero_grad()
        x = torch.randn(12, 6, generator=generator)
        y = torch.randn(12, 3, generator=generator)
        nn.functional.mse_loss(model(x), y).backward()
        if before_step is not None:
            before_step(i)
        optimizer.step()


def rows_of(data, layer):
    return split_by_layer(data)[layer]


def capture_layer_stats(optimizer):
    """Post-hook (registered after the recorder's) keeping a float copy of each step's stats."""
    captured = []
    steps = []

    def hook(opt, args, kwargs):
        steps.append(len(steps))
        stats = opt.layer_stats
        if stats is not None:
            captured.append(
                {
                    "step": steps[-1],
                    "params": [id(p) for p in stats.params],
                    "weight_norm": [float(t) for t in stats.weight_norm],
                    "grad_norm": [float(t) for t in stats.grad_norm],
                    "trust_ratio": [float(t) for t in stats.trust_ratio],
                    "lr": list(stats.lr),
                }
            )

    optimizer.register_step_post_hook(hook)
    return captured


# ---------------------------------------------------------------- plain optimizers


@pytest.mark.parametrize("norms_by", ["native kernels", "multi-tensor", "one tensor per chunk"])
def test_sgd_rows_are_norms_of_weights_and_decayed_grads_before_the_step(
    tmp_path, monkeypatch, norms_by
):
    # On CPU the recorder takes a plain optimizer's norms with the native kernels' norm
    # pass where they exist, else as the multi-tensor path does (large layers alone in
    # scratch memory); every way gives the same rows.
    if norms_by == "native kernels" and _native.kernels() is None:
        pytest.skip("no C++ compiler here")
    native_calls = []
    if norms_by == "native kernels":
        native_norms = _native.layer_norms
        monkeypatch.setattr(
            _native, "layer_norms", lambda *a: native_calls.append(1) or native_norms(*a)
        )
    else:
        monkeypatch.setattr(_native, "kernels", lambda: None)
    if norms_by == "one tensor per chunk":
        monkeypatch.setattr(_multi_tensor, "CPU_CHUNK_NUMEL", 1)
    model = make_model()
    wd, lr = 0.01, 0.05
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    params = dict(model.named_parameters())
    expected = []

    def before_step(i):
        for name in WEIGHTS:
            w, g = params[name].detach(), params[name].grad
            expected.append((i, name, w.norm().item(), (g + wd * w).norm().item()))

    with LayerRecorder(optimizer, model.named_parameters(), tmp_path / "l.csv") as recorder:
        train(model, optimizer, 4, before_step)
    assert recorder.layer_names == WEIGHTS

    data = read_layers(tmp_path / "l.csv")
    assert [(int(s), str(n)) for s, n in zip(data["step"], data["layer"], strict=True)] == [
        (i, n) for i, n, _, _ in expected
    ]
    w_norm = np.array([e[2] for e in expected])
    g_norm = np.array([e[3] for e in expected])
    np.testing.assert_allclose(data["weight_norm"], w_norm, rtol=RTOL)
    np.testing.assert_allclose(data["grad_norm"], g_norm, rtol=RTOL)
    np.testing.assert_allclose(data["norm_ratio"], w_norm / g_norm, rtol=RTOL)
    np.testing.assert_array_equal(data["trust_ratio"], 1.0)
    np.testing.assert_allclose(data["step_size"], lr, rtol=RTOL)
    assert (len(native_calls) == 4) == (norms_by == "native kernels")


def test_default_layers_are_the_multidimensional_tensors_a_layerwise_optimizer_adapts(tmp_path):
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters())
    with LayerRecorder(optimizer, model, tmp_path / "l.csv") as recorder:
        assert recorder.layer_names == WEIGHTS


def test_layers_can_be_chosen_by_predicate_or_by_names(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    by_predicate = LayerRecorder(
        optimizer, model, tmp_path / "a.csv", layers=lambda name: name.endswith("bias")
    )
    by_names = LayerRecorder(optimizer, model, tmp_path / "b.csv", layers=["4.weight", "0.bias"])
    train(model, optimizer, 2)
    by_predicate.close()
    by_names.close()
    assert by_predicate.layer_names == ["0.bias", "2.bias", "4.bias"]
    # Column order follows named_parameters, not the order of the names given.
    assert by_names.layer_names == ["0.bias", "4.weight"]
    data = read_layers(tmp_path / "b.csv")
    assert data["layer"].tolist() == ["0.bias", "4.weight"] * 2
    np.testing.assert_array_equal(data["trust_ratio"], 1.0)


def test_unknown_layer_names_are_rejected(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="9.weight"):
        LayerRecorder(optimizer, model, tmp_path / "l.csv", layers=["9.weight"])


def test_parameters_not_named_are_not_recorded(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    named = [(n, p) for n, p in model.named_parameters() if n.startswith("2.")]
    with LayerRecorder(optimizer, named, tmp_path / "l.csv") as recorder:
        train(model, optimizer, 2)
    assert recorder.layer_names == ["2.weight"]
    assert read_layers(tmp_path / "l.csv")["layer"].tolist() == ["2.weight", "2.weight"]


def test_every_n_records_only_every_nth_step(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with LayerRecorder(optimizer, model, tmp_path / "l.csv", every=3) as recorder:
        train(model, optimizer, 10)
    assert recorder.next_step == 10
    steps = read_layers(tmp_path / "l.csv")["step"]
    assert sorted(set(steps.tolist())) == [0, 3, 6, 9]


def test_csv_has_the_header_and_one_row_per_step_and_layer(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with LayerRecorder(optimizer, model, tmp_path / "l.csv"):
        train(model, optimizer, 3)
    lines = (tmp_path / "l.csv").read_text().splitlines()
    assert lines[0] == "step,layer,weight_norm,grad_norm,norm_ratio,trust_ratio,step_size"
    assert ",".join(COLUMNS) == lines[0]
    assert [tuple(line.split(",")[:2]) for line in lines[1:]] == [
        (str(s), n) for s in range(3) for n in WEIGHTS
    ]
    assert all(len(line.split(",")) == 7 for line in lines)


def test_layer_names_with_commas_and_quotes_are_quoted_and_read_back(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    weight = dict(model.named_parameters())["0.weight"]
    odd_names = ['head,"main" weight', "plain"]
    named = [(odd_names[0], weight), (odd_names[1], dict(model.named_parameters())["2.weight"])]
    with LayerRecorder(optimizer, named, tmp_path / "l.csv"):
        train(model, optimizer, 2)
    data = read_layers(tmp_path / "l.csv")
    assert data["layer"].tolist() == odd_names * 2
    assert np.isfinite(data["weight_norm"]).all()


def test_a_buffer_smaller_than_the_run_flushes_several_times_and_keeps_every_row_in_order(
    tmp_path,
):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "l.csv"
    recorder = LayerRecorder(optimizer, model, path, capacity=2)
    line_counts = []
    train(model, optimizer, 7, before_step=lambda i: line_counts.append(len(path.read_text())))
    written_before_close = read_layers(path)["step"].tolist()
    recorder.close()
    # Full buffers were written during the run, after steps 1, 3 and 5.
    assert written_before_close == [s for s in range(6) for _ in WEIGHTS]
    assert len(set(line_counts)) == 4
    data = read_layers(path)
    assert data["step"].tolist() == [s for s in range(7) for _ in WEIGHTS]
    assert data["layer"].tolist() == WEIGHTS * 7


def test_flush_writes_buffered_rows_before_close(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "l.csv"
    with LayerRecorder(optimizer, model, path) as recorder:
        train(model, optimizer, 2)
        assert len(read_layers(path)["step"]) == 0
        recorder.flush()
        assert read_layers(path)["step"].tolist() == [0, 0, 0, 1, 1, 1]
    assert read_layers(path)["step"].tolist() == [0, 0, 0, 1, 1, 1]


HOST_SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__array__")


def forbid_host_syncs(monkeypatch):
    def refuse(name):
        def method(self, *args, **kwargs):
            raise AssertionError(f"Tensor.{name} called on the step path")

        return method

    for name in HOST_SYNCS:
        monkeypatch.setattr(torch.Tensor, name, refuse(name))


def test_recorded_steps_never_transfer_to_the_host(tmp_path, monkeypatch):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    with LayerRecorder(optimizer, model, tmp_path / "l.csv", capacity=16) as recorder:
        for i in range(3):
            optimizer.zero_grad()
            model(torch.randn(4, 6)).square().mean().backward()
            with monkeypatch.context() as patch:
                forbid_host_syncs(patch)
                optimizer.step()
            scheduler.step()
            assert recorder.next_step == i + 1
    data = read_layers(tmp_path / "l.csv")
    # The learning rate changed every step and reached the rows without a tensor copy.
    np.testing.assert_allclose(data["step_size"], np.repeat([0.1, 0.05, 0.025], 3), rtol=RTOL)


def test_close_detaches_from_the_optimizer(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    recorder = LayerRecorder(optimizer, model, tmp_path / "l.csv")
    train(model, optimizer, 2)
    recorder.close()
    recorder.close()  # a second close is a no-op
    train(model, optimizer, 3)
    assert recorder.next_step == 2
    assert read_layers(tmp_path / "l.csv")["step"].tolist() == [0, 0, 0, 1, 1, 1]
    assert not optimizer._optimizer_step_pre_hooks
    assert not optimizer._optimizer_step_post_hooks


def test_start_step_numbers_rows_from_it_and_appends_to_the_file(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "l.csv"
    with LayerRecorder(optimizer, model, path):
        train(model, optimizer, 2)
    with LayerRecorder(optimizer, model, path, start_step=2, every=2):
        train(model, optimizer, 4)
    text = path.read_text()
    assert text.count("step,layer") == 1
    assert read_layers(path)["step"].tolist() == [s for s in (0, 1, 2, 4) for _ in WEIGHTS]


def test_resuming_from_an_earlier_step_drops_the_rows_written_after_it(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "l.csv"
    with LayerRecorder(optimizer, model, path):
        train(model, optimizer, 5)
    first = read_layers(path)
    # As if a crash lost the run after its checkpoint at step 3, and a partial line was cut.
    with open(path, "a") as f:
        f.write("5,0.weight,1.0")
    with LayerRecorder(optimizer, model, path, start_step=3):
        train(model, optimizer, 2, seed=7)
    data = read_layers(path)
    assert data["step"].tolist() == [s for s in range(5) for _ in WEIGHTS]
    kept = first["step"] < 3
    np.testing.assert_array_equal(data["weight_norm"][kept], first["weight_norm"][kept])
    assert not np.array_equal(data["grad_norm"][~kept], first["grad_norm"][~kept])


def test_a_file_that_is_not_layer_telemetry_is_not_touched(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,loss\n0,1.5\n")
    model = make_model()
    with pytest.raises(ValueError, match="not a layer telemetry file"):
        LayerRecorder(torch.optim.SGD(model.parameters(), lr=0.1), model, path)
    assert path.read_text() == "epoch,loss\n0,1.5\n"


def test_zero_gradient_gives_an_infinite_norm_ratio_that_survives_the_csv(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def zero_last_layer(i):
        model[4].weight.grad.zero_()

    with LayerRecorder(optimizer, model, tmp_path / "l.csv"):
        train(model, optimizer, 1, zero_last_layer)
    assert "inf" in (tmp_path / "l.csv").read_text()
    last = rows_of(read_layers(tmp_path / "l.csv"), "4.weight")
    assert last["grad_norm"].tolist() == [0.0]
    assert last["norm_ratio"].tolist() == [math.inf]


def test_a_layer_without_gradient_at_a_step_is_nan_in_that_row(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def drop_first_layer_once(i):
        if i == 1:
            model[0].weight.grad = None

    with LayerRecorder(optimizer, model, tmp_path / "l.csv"):
        train(model, optimizer, 3, drop_first_layer_once)
    first = rows_of(read_layers(tmp_path / "l.csv"), "0.weight")
    assert first["step"].tolist() == [0, 1, 2]
    for column in ("weight_norm", "grad_norm", "norm_ratio", "trust_ratio", "step_size"):
        assert np.isnan(first[column]).tolist() == [False, True, False], column


def test_a_step_skipped_by_the_grad_scaler_has_no_row_and_is_not_counted(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    with LayerRecorder(optimizer, model, tmp_path / "l.csv") as recorder:
        for i in range(3):
            optimizer.zero_grad()
            scaler.scale(model(torch.randn(4, 6)).square().mean()).backward()
            if i == 1:
                model[2].weight.grad[0, 0] = math.inf
            scaler.step(optimizer)
            scaler.update()
        assert recorder.next_step == 2
    assert read_layers(tmp_path / "l.csv")["step"].tolist() == [0, 0, 0, 1, 1, 1]


# ------------------------------------------------- optimizers that publish LayerStats


class PublishingSGD(torch.optim.Optimizer):
    """Plain SGD following the LayerStats contract with made-up values, to tell reuse from
    recomputation: weight norm 10+k, grad norm 4, trust ratio 0.5 for the k-th adapted
    parameter (ndim > 1), lr of its group.

    (Not a subclass of torch.optim.SGD: calling a parent's ``step`` that torch has also
    wrapped would fire the step hooks twice.)
    """

    record_layer_stats = False
    layer_stats = None

    def __init__(self, params, lr, reports=lambda p: p.ndim > 1):
        super().__init__(params, {"lr": lr})
        self.flags_seen = []
        self.reports = reports

    @torch.no_grad()
    def step(self, closure=None):
        self.flags_seen.append(self.record_layer_stats)
        stats = LayerStats([], [], [], [], []) if self.record_layer_stats else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.add_(p.grad, alpha=-group["lr"])
                if stats is not None and self.reports(p):
                    stats.params.append(p)
                    stats.weight_norm.append(torch.tensor(10.0 + len(stats.params) - 1))
                    stats.grad_norm.append(torch.tensor(4.0))
                    stats.trust_ratio.append(torch.tensor(0.5))
                    stats.lr.append(group["lr"])
        self.layer_stats = stats


def test_published_layer_stats_are_recorded_as_is_not_recomputed(tmp_path):
    model = make_model()
    optimizer = PublishingSGD(model.parameters(), lr=0.2)
    with LayerRecorder(optimizer, model, tmp_path / "l.csv", every=2) as recorder:
        train(model, optimizer, 5)
    assert recorder.layer_names == WEIGHTS
    data = read_layers(tmp_path / "l.csv")
    assert data["step"].tolist() == [s for s in (0, 2, 4) for _ in WEIGHTS]
    np.testing.assert_array_equal(data["weight_norm"], [10.0, 11.0, 12.0] * 3)
    np.testing.assert_array_equal(data["grad_norm"], 4.0)
    np.testing.assert_array_equal(data["norm_ratio"], [2.5, 2.75, 3.0] * 3)
    np.testing.assert_array_equal(data["trust_ratio"], 0.5)
    np.testing.assert_allclose(data["step_size"], 0.1, rtol=RTOL)


def test_the_stats_flag_is_on_only_during_recorded_steps(tmp_path):
    model = make_model()
    optimizer = PublishingSGD(model.parameters(), lr=0.2)
    with LayerRecorder(optimizer, model, tmp_path / "l.csv", every=3):
        train(model, optimizer, 7)
        assert optimizer.record_layer_stats is False
    assert optimizer.flags_seen == [True, False, False, True, False, False, True]
    train(model, optimizer, 1)
    assert optimizer.flags_seen[-1] is False


def test_reported_layers_outside_the_adaptation_rule_are_flagged_once(tmp_path):
    model = make_model()
    optimizer = PublishingSGD(model.parameters(), lr=0.1, reports=lambda p: True)
    with LayerRecorder(optimizer, model, tmp_path / "l.csv") as recorder:
        with pytest.warns(RuntimeWarning, match="0.bias"):
            train(model, optimizer, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            train(model, optimizer, 2)
    assert recorder.layer_names == WEIGHTS


def test_a_step_that_ignores_the_stats_flag_is_an_error(tmp_path):
    class Silent(torch.optim.Optimizer):
        record_layer_stats = False
        layer_stats = None

        def step(self, closure=None):
            pass

    model = make_model()
    optimizer = Silent(model.parameters(), {"lr": 0.1})
    LayerRecorder(optimizer, model, tmp_path / "l.csv")
    with pytest.raises(RuntimeError, match="did not set layer_stats"):
        train(model, optimizer, 1)


# ------------------------------------------------------------ LARS, TVLARS, LAMB


def record_with(optimizer, model, path, steps=4, **kwargs):
    recorder = LayerRecorder(optimizer, model, path, **kwargs)
    captured = capture_layer_stats(optimizer)
    train(model, optimizer, steps)
    recorder.close()
    return recorder, read_layers(path), captured


def assert_rows_match_layer_stats(recorder, data, captured, model):
    """Each row holds the optimizer's own numbers for that step and layer."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    pairs = zip(data["step"].tolist(), data["layer"].tolist(), strict=True)
    rows = {pair: i for i, pair in enumerate(pairs)}
    assert len(rows) == len(captured) * len(recorder.layer_names)
    for stats in captured:
        for k, pid in enumerate(stats["params"]):
            i = rows[(stats["step"], by_id[pid])]
            w, g, t = stats["weight_norm"][k], stats["grad_norm"][k], stats["trust_ratio"][k]
            assert data["weight_norm"][i] == pytest.approx(w, rel=RTOL)
            assert data["grad_norm"][i] == pytest.approx(g, rel=RTOL)
            assert data["norm_ratio"][i] == pytest.approx(w / g, rel=RTOL)
            assert data["trust_ratio"][i] == pytest.approx(t, rel=RTOL)
            assert data["step_size"][i] == pytest.approx(stats["lr"][k] * t, rel=RTOL)


@needs_optimizers
def test_lars_rows_are_its_layer_stats_with_trust_eta_times_weight_over_decayed_grad_norm(
    tmp_path,
):
    model = make_model()
    eta, wd, lr = 0.01, 1e-3, 0.5
    optimizer = LARS(model.parameters(), lr=lr, eta=eta, weight_decay=wd)
    params = dict(model.named_parameters())
    expected = []  # per step: {layer: (|w|, |g + wd*w|)} before the update

    def norms_before_step(opt, args, kwargs):
        with torch.no_grad():
            expected.append(
                {
                    n: (params[n].norm().item(), (params[n].grad + wd * params[n]).norm().item())
                    for n in WEIGHTS
                }
            )

    optimizer.register_step_pre_hook(norms_before_step)
    recorder, data, captured = record_with(optimizer, model, tmp_path / "l.csv")
    assert recorder.layer_names == WEIGHTS
    assert len(captured) == 4
    assert_rows_match_layer_stats(recorder, data, captured, model)
    for i, (step, name) in enumerate(zip(data["step"], data["layer"], strict=True)):
        w, g = expected[int(step)][name]
        assert data["weight_norm"][i] == pytest.approx(w, rel=RTOL)
        assert data["grad_norm"][i] == pytest.approx(g, rel=RTOL)
        assert data["trust_ratio"][i] == pytest.approx(eta * w / g, rel=1e-5)
        assert data["step_size"][i] == pytest.approx(lr * eta * w / g, rel=1e-5)


@needs_optimizers
def test_tvlars_rows_are_its_layer_stats_with_step_size_lr_times_trust(tmp_path):
    model = make_model()
    eta, lr, lmbda, alpha = 0.01, 0.5, 0.5, 1.0
    optimizer = TVLARS(
        model.parameters(), lr=lr, eta=eta, lmbda=lmbda, alpha=alpha, weight_decay=1e-3
    )
    recorder, data, captured = record_with(optimizer, model, tmp_path / "l.csv", every=2)
    assert sorted(set(data["step"].tolist())) == [0, 2]
    assert_rows_match_layer_stats(recorder, data, captured, model)
    # phi(t) = 1/(alpha + exp(lambda*t)) is inside the trust ratio: trust/LNR = eta*phi(t).
    for step in (0, 2):
        at = data["step"] == step
        phi = 1.0 / (alpha + math.exp(lmbda * step))
        np.testing.assert_allclose(
            data["trust_ratio"][at] / data["norm_ratio"][at], eta * phi, rtol=1e-5
        )


@needs_optimizers
def test_lamb_rows_are_its_layer_stats_with_trust_weight_over_direction_norm(tmp_path):
    model = make_model()
    optimizer = LAMB(model.parameters(), lr=0.01)
    recorder, data, captured = record_with(optimizer, model, tmp_path / "l.csv")
    assert recorder.layer_names == WEIGHTS
    assert_rows_match_layer_stats(recorder, data, captured, model)
    np.testing.assert_allclose(data["trust_ratio"], data["norm_ratio"], rtol=1e-5)
    np.testing.assert_allclose(data["step_size"], 0.01 * data["trust_ratio"], rtol=1e-5)


@needs_optimizers
def test_an_lr_changed_every_step_gives_each_rows_step_size_its_own_lr(tmp_path):
    model = make_model()
    optimizer = TVLARS(model.parameters(), lr=1.0, eta=0.01, lmbda=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    recorder = LayerRecorder(optimizer, model, tmp_path / "l.csv", capacity=2)
    captured = capture_layer_stats(optimizer)
    for _ in range(5):
        train(model, optimizer, 1)
        scheduler.step()
    recorder.close()
    data = read_layers(tmp_path / "l.csv")
    assert_rows_match_layer_stats(recorder, data, captured, model)
    for step in range(5):
        at, lr = data["step"] == step, 0.5**step
        np.testing.assert_allclose(data["step_size"][at], lr * data["trust_ratio"][at], rtol=1e-6)


@needs_optimizers
@pytest.mark.parametrize("optimizer_name", ["TVLARS", "torch SGD"])
def test_a_recorder_on_a_step_the_user_compiles_writes_the_eager_steps_rows(
    tmp_path, optimizer_name
):
    """The recorder's hooks run eagerly around a compiled step (traced, the post-hook of
    our optimizers read a stale layer_stats and raised)."""

    def make(model):
        if optimizer_name == "TVLARS":
            return TVLARS(model.parameters(), lr=1.0, eta=0.01, lmbda=0.1)
        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    model, twin = make_model(), make_model()
    compiled, eager = make(model), make(twin)
    recorders = [
        LayerRecorder(optimizer, net, tmp_path / f"{label}.csv")
        for optimizer, net, label in ((compiled, model, "compiled"), (eager, twin, "eager"))
    ]
    torch._dynamo.reset()
    compiled_step = torch.compile(compiled.step)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(12, 6, generator=generator), torch.randn(12, 3, generator=generator)
        for net, step in ((model, compiled_step), (twin, eager.step)):
            net.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
            step()
    for recorder in recorders:
        recorder.close()
    ours, expected = (read_layers(tmp_path / f"{label}.csv") for label in ("compiled", "eager"))
    assert len(ours["step"]) == 3 * len(WEIGHTS)
    for column in ("step", "weight_norm", "grad_norm", "trust_ratio", "step_size"):
        np.testing.assert_allclose(ours[column], expected[column], rtol=1e-5, err_msg=column)


@needs_optimizers
def test_rows_of_steps_on_different_paths_keep_their_step_order(tmp_path):
    # The native path hands the recorder one stacked tensor per step, kept until the
    # flush; the multi-tensor path hands 0-d tensors, written at once.
    model = make_model()
    optimizer = LARS(model.parameters(), lr=0.5, eta=0.01)
    recorder = LayerRecorder(optimizer, model, tmp_path / "l.csv", capacity=4)
    captured = capture_layer_stats(optimizer)
    for foreach in (None, True, None, True, True, None):
        optimizer.param_groups[0]["foreach"] = foreach
        train(model, optimizer, 1)
    recorder.close()
    data = read_layers(tmp_path / "l.csv")
    assert data["step"].tolist() == [s for s in range(6) for _ in WEIGHTS]
    assert_rows_match_layer_stats(recorder, data, captured, model)


@needs_optimizers
def test_param_groups_with_their_own_lr_give_each_layer_its_own_step_size(tmp_path):
    model = make_model()
    groups = [
        {"params": [model[4].weight], "lr": 0.2},  # reported first, recorded last
        {"params": [p for n, p in model.named_parameters() if n != "4.weight"], "lr": 0.5},
    ]
    optimizer = LARS(groups, eta=0.01)
    recorder, data, captured = record_with(optimizer, model, tmp_path / "l.csv")
    assert recorder.layer_names == WEIGHTS
    assert_rows_match_layer_stats(recorder, data, captured, model)
    for name, lr in (("0.weight", 0.5), ("2.weight", 0.5), ("4.weight", 0.2)):
        rows = rows_of(data, name)
        np.testing.assert_allclose(rows["step_size"], lr * rows["trust_ratio"], rtol=1e-6)


@needs_optimizers
def test_a_chosen_subset_of_adapted_layers_records_each_layers_own_values(tmp_path):
    model = make_model()
    optimizer = LARS(model.parameters(), lr=0.3, eta=0.01)
    recorder, data, captured = record_with(
        optimizer, model, tmp_path / "l.csv", layers=["4.weight", "0.weight"]
    )
    assert recorder.layer_names == ["0.weight", "4.weight"]
    by_id = {id(p): n for n, p in model.named_parameters()}
    for stats in captured:
        at_step = data["step"] == stats["step"]
        for k, pid in enumerate(stats["params"]):
            rows = at_step & (data["layer"] == by_id[pid])
            if by_id[pid] == "2.weight":
                assert not rows.any()
                continue
            assert data["weight_norm"][rows] == pytest.approx(stats["weight_norm"][k], rel=RTOL)
            assert data["grad_norm"][rows] == pytest.approx(stats["grad_norm"][k], rel=RTOL)
            assert data["trust_ratio"][rows] == pytest.approx(stats["trust_ratio"][k], rel=RTOL)


@needs_optimizers
def test_layers_are_those_the_layerwise_optimizer_adapts(tmp_path):
    model = make_model()
    every_tensor = LAMB(model.parameters(), exclude_1d=False)
    with LayerRecorder(every_tensor, model, tmp_path / "a.csv") as recorder:
        assert recorder.layer_names == [n for n, _ in model.named_parameters()]
    groups = [
        {"params": [model[0].weight], "adapt": False},
        {"params": [p for n, p in model.named_parameters() if n != "0.weight"]},
    ]
    with LayerRecorder(LARS(groups, lr=0.1), model, tmp_path / "b.csv") as recorder:
        assert recorder.layer_names == ["2.weight", "4.weight"]
    with pytest.raises(ValueError, match="not adapted"):
        LayerRecorder(LARS(model.parameters()), model, tmp_path / "c.csv", layers=["0.bias"])


@needs_optimizers
def test_lars_steps_with_a_recorder_never_transfer_to_the_host(tmp_path, monkeypatch):
    model = make_model()
    optimizer = LARS(model.parameters(), lr=0.1, foreach=True)
    with LayerRecorder(optimizer, model, tmp_path / "l.csv", capacity=16):
        for _ in range(2):
            optimizer.zero_grad()
            model(torch.randn(4, 6)).square().mean().backward()
            with monkeypatch.context() as patch:
                forbid_host_syncs(patch)
                optimizer.step()
    assert read_layers(tmp_path / "l.csv")["step"].tolist() == [0, 0, 0, 1, 1, 1]


# ------------------------------------------------------------------------- plotting


def test_plot_layers_writes_a_png_with_a_test_loss_panel(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with LayerRecorder(optimizer, model, tmp_path / "l.csv"):
        train(model, optimizer, 6)
    out = plot_layers(
        tmp_path / "l.csv", tmp_path / "fig" / "layers.png", test_loss=[(0, 2.0), (5, 1.0)]
    )
    assert Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_layers_draws_many_layers_from_read_data(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(12)])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with LayerRecorder(optimizer, model, tmp_path / "l.csv"):
        train_steps = 3
        for _ in range(train_steps):
            optimizer.zero_grad()
            model(torch.randn(3, 4)).square().sum().backward()
            optimizer.step()
    data = read_layers(tmp_path / "l.csv")
    out = plot_layers(data, tmp_path / "many.png", layers=lambda n: not n.startswith("11."))
    assert out.stat().st_size > 1000
