"""The optimizers behave as torch.optim optimizers do: validation, closures, state_dict,
GradScaler, no host-device synchronization, path selection."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
from harness import PATHS, SHAPES, assert_matches, gradients, run_optimizer, run_reference
from reference import ReferenceLARS

from tvlars import LAMB, LARS, TVLARS
from tvlars.optim import _native, _paths

OPTIMIZERS = {
    "lars": lambda params, **kw: LARS(params, lr=0.5, **kw),
    "tvlars": lambda params, **kw: TVLARS(params, lr=0.5, lmbda=0.2, delay_steps=1, **kw),
    "tvlars-nesterov": lambda params, **kw: TVLARS(params, lr=0.5, lmbda=0.2, nesterov=True, **kw),
    "lamb": lambda params, **kw: LAMB(params, lr=0.01, **kw),
    # The clipping options, set so that they clip the test gradients.
    "lars-trust-clip": lambda params, **kw: LARS(params, lr=0.5, eta=0.5, trust_clip=True, **kw),
    "lamb-max-grad-norm": lambda params, **kw: LAMB(params, lr=0.01, max_grad_norm=0.1, **kw),
}


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    )


def train_steps(model, optimizer, steps: int, first_step: int = 0) -> None:
    for step in range(first_step, first_step + steps):
        generator = torch.Generator().manual_seed(step)
        inputs = torch.randn(16, 6, generator=generator)
        targets = torch.randint(0, 3, (16,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()


# ----------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda p: LARS(p, lr=-0.1), "lr"),
        (lambda p: LARS(p, momentum=1.0), "momentum"),
        (lambda p: LARS(p, momentum=-0.1), "momentum"),
        (lambda p: LARS(p, eta=0.0), "eta"),
        (lambda p: LARS(p, eta=-1e-3), "eta"),
        (lambda p: LARS(p, weight_decay=-1.0), "weight_decay"),
        (lambda p: TVLARS(p, lr=-1.0), "lr"),
        (lambda p: TVLARS(p, alpha=0.0), "alpha"),
        (lambda p: TVLARS(p, alpha=-1.0), "alpha"),
        (lambda p: TVLARS(p, momentum=1.5), "momentum"),
        (lambda p: TVLARS(p, eta=0.0), "eta"),
        (lambda p: TVLARS(p, lmbda=-1e-4), "lmbda"),
        (lambda p: TVLARS(p, norm_clamp=0.0), "norm_clamp"),
        (lambda p: LAMB(p, lr=-1e-3), "lr"),
        (lambda p: LAMB(p, betas=(1.0, 0.999)), r"betas\[0\]"),
        (lambda p: LAMB(p, betas=(0.9, 1.0)), r"betas\[1\]"),
        (lambda p: LAMB(p, betas=(-0.1, 0.999)), r"betas\[0\]"),
        (lambda p: LAMB(p, weight_norm_clamp=(2.0, 1.0)), "weight_norm_clamp"),
        (lambda p: LARS(p, foreach=True, fused=True), "foreach/fused"),
        (lambda p: LARS(p, lr=torch.tensor([0.1, 0.2])), "lr"),
        (lambda p: TVLARS(p, lr=torch.tensor(0.1, device="meta")), "lr"),
    ],
)
def test_invalid_hyperparameter_raises_value_error_naming_it(make, argument):
    with pytest.raises(ValueError, match=argument):
        make([torch.zeros(2, 2, requires_grad=True)])


def test_invalid_hyperparameter_in_a_param_group_is_rejected():
    with pytest.raises(ValueError, match="momentum"):
        LARS([{"params": [torch.zeros(2, 2, requires_grad=True)], "momentum": 1.2}])


def test_constructor_defaults_are_the_contract():
    param = [torch.zeros(2, 2, requires_grad=True)]
    assert {
        k: LARS(param).defaults[k]
        for k in ("lr", "momentum", "weight_decay", "eta", "nesterov", "exclude_1d")
    } == {
        "lr": 1.0,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "eta": 1e-3,
        "nesterov": False,
        "exclude_1d": True,
    }
    tv = TVLARS(param).defaults
    assert (
        tv["lmbda"],
        tv["alpha"],
        tv["delay_steps"],
        tv["min_scale"],
        tv["norm_clamp"],
        tv["schedule_excluded"],
    ) == (1e-4, 1.0, 0, 0.0, None, True)
    lamb = LAMB(param).defaults
    assert (
        lamb["lr"],
        lamb["betas"],
        lamb["eps"],
        lamb["weight_decay"],
        lamb["bias_correction"],
        lamb["weight_norm_clamp"],
        lamb["exclude_1d"],
    ) == (1e-3, (0.9, 0.999), 1e-6, 0.01, True, None, True)


# ------------------------------------------------------------------ torch conventions


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_step_returns_the_closure_loss(name):
    model = small_model()
    optimizer = OPTIMIZERS[name](model.parameters())
    inputs, targets = torch.randn(8, 6), torch.randint(0, 3, (8,))

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.requires_grad


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_step_never_modifies_the_gradients(name, path):
    for weight_decay in (0.0, 0.01):
        params = [torch.randn(s, requires_grad=True) for s in SHAPES]
        for param in params:
            param.grad = torch.randn_like(param)
        before = [p.grad.clone() for p in params]
        OPTIMIZERS[name](params, weight_decay=weight_decay, **PATHS[path]).step()
        assert all(torch.equal(p.grad, g) for p, g in zip(params, before))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_parameters_without_gradients_are_skipped(name, path):
    with_grad = torch.randn(4, 3, requires_grad=True)
    without_grad = torch.randn(4, 3, requires_grad=True)
    untouched = without_grad.detach().clone()
    with_grad.grad = torch.randn(4, 3)
    optimizer = OPTIMIZERS[name]([with_grad, without_grad], **PATHS[path])
    optimizer.step()
    assert torch.equal(without_grad.detach(), untouched)
    assert len(optimizer.state[without_grad]) == 0


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_sparse_gradients_are_rejected_with_a_clear_error(name):
    embedding = torch.nn.Embedding(10, 4, sparse=True)
    embedding(torch.tensor([1, 2])).sum().backward()
    optimizer = OPTIMIZERS[name](embedding.parameters(), exclude_1d=False)
    with pytest.raises(RuntimeError, match="sparse gradients"):
        optimizer.step()


def test_param_group_adapt_flag_overrides_the_one_dimensional_rule():
    weight, bias = torch.randn(5, 4, requires_grad=True), torch.randn(4, requires_grad=True)
    for param, grad in zip((weight, bias), gradients(0, [(5, 4), (4,)])):
        param.grad = torch.tensor(grad, dtype=torch.float32)
    start = [weight.detach().double().numpy().copy(), bias.detach().double().numpy().copy()]
    LARS([{"params": [weight], "adapt": False}, {"params": [bias], "adapt": True}], lr=0.5).step()
    grads = gradients(0, [(5, 4), (4,)])
    expected_weight = ReferenceLARS(lr=0.5, adapted=False).step(start[0], grads[0])
    expected_bias = ReferenceLARS(lr=0.5, adapted=True).step(start[1], grads[1])
    assert_matches([weight.detach(), bias.detach()], [expected_weight, expected_bias], rtol=1e-5)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"momentum": 0.0}, {"momentum": 0.9}),
        ({"momentum": 0.0}, {"momentum": 0.9, "nesterov": True}),
        ({"nesterov": False}, {"nesterov": True}),
        ({"nesterov": True}, {"nesterov": False}),
    ],
    ids=["momentum-on", "nesterov-on-from-none", "to-nesterov", "to-heavy-ball"],
)
def test_momentum_changed_mid_run_starts_its_buffer_as_a_fresh_optimizer_would(before, after, path):
    torch.manual_seed(0)
    params = [torch.randn(s, requires_grad=True) for s in SHAPES]
    optimizer = LARS(params, lr=0.5, **{"momentum": 0.9, **before}, **PATHS[path])
    for param in params:
        param.grad = torch.randn_like(param)
    optimizer.step()
    twins = [p.detach().clone().requires_grad_() for p in params]
    fresh = LARS(twins, lr=0.5, **{"momentum": 0.9, **after}, **PATHS[path])
    optimizer.param_groups[0].update(after)
    for _ in range(2):  # the first step with a new buffer has no momentum term: take two
        for param, twin in zip(params, twins):
            param.grad = torch.randn_like(param)
            twin.grad = param.grad.clone()
        optimizer.step()
        fresh.step()
    assert all(torch.equal(p.detach(), t.detach()) for p, t in zip(params, twins))


def test_param_group_added_mid_run_continues_the_step_count():
    first = torch.randn(3, 3, requires_grad=True)
    optimizer = TVLARS([first], lmbda=0.1)
    first.grad = torch.randn(3, 3)
    optimizer.step()
    optimizer.step()
    optimizer.add_param_group({"params": [torch.randn(2, 2, requires_grad=True)]})
    assert optimizer.param_groups[1]["step"] == 2


# ------------------------------------------------------------------------ zero norms


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["lars", "tvlars", "lamb"])
def test_zero_weights_get_trust_ratio_one(name, path):
    weight = torch.zeros(4, 3, requires_grad=True)
    weight.grad = torch.full((4, 3), 0.5)
    optimizer = OPTIMIZERS[name]([weight], **PATHS[path])
    optimizer.record_layer_stats = True
    optimizer.step()
    assert optimizer.layer_stats.trust_ratio[0].item() == 1.0
    assert torch.isfinite(weight).all() and (weight != 0).all()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["lars", "tvlars", "lamb"])
def test_zero_gradients_get_trust_ratio_one_and_leave_weights_finite(name, path):
    weight = torch.randn(4, 3, requires_grad=True)
    weight.grad = torch.zeros(4, 3)
    optimizer = OPTIMIZERS[name]([weight], weight_decay=0.0, **PATHS[path])
    optimizer.record_layer_stats = True
    before = weight.detach().clone()
    optimizer.step()
    assert optimizer.layer_stats.trust_ratio[0].item() == 1.0
    assert torch.equal(weight.detach(), before)


# ----------------------------------------------------------------------------- phi(t)


def test_phi_at_very_large_step_is_exactly_the_floor_and_the_step_is_finite():
    weight = torch.randn(4, 3, requires_grad=True)
    weight.grad = torch.randn(4, 3)
    optimizer = TVLARS([weight], lmbda=0.01, min_scale=0.002)
    optimizer.param_groups[0]["step"] = 10**7
    assert optimizer.phi() == 0.002
    optimizer.step()
    assert torch.isfinite(weight).all()


def test_phi_follows_eq_8_and_advances_once_per_step():
    weight = torch.randn(4, 3, requires_grad=True)
    weight.grad = torch.randn(4, 3)
    optimizer = TVLARS([weight], lmbda=0.5, alpha=2.0, delay_steps=3, min_scale=0.1)
    for t in range(6):
        assert optimizer.phi() == pytest.approx(
            1 / (2.0 + math.exp(0.5 * (t - 3))) + 0.1, rel=1e-15
        )
        optimizer.step()


# ------------------------------------------------------------------------- state_dict


@pytest.mark.parametrize("path", ["single", "foreach"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resumed_run_matches_uninterrupted_run_bit_for_bit(name, path):
    uninterrupted = small_model()
    optimizer = OPTIMIZERS[name](uninterrupted.parameters(), **PATHS[path])
    train_steps(uninterrupted, optimizer, 6)

    first_half = small_model()
    optimizer = OPTIMIZERS[name](first_half.parameters(), **PATHS[path])
    train_steps(first_half, optimizer, 3)
    buffer = io.BytesIO()
    torch.save({"model": first_half.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    resumed = small_model()
    resumed.load_state_dict(checkpoint["model"])
    optimizer = OPTIMIZERS[name](resumed.parameters(), **PATHS[path])
    optimizer.load_state_dict(checkpoint["optimizer"])
    assert optimizer.param_groups[0]["step"] == 3
    train_steps(resumed, optimizer, 3, first_step=3)

    for expected, actual in zip(uninterrupted.parameters(), resumed.parameters()):
        assert torch.equal(expected, actual)


def test_state_dict_carries_the_tvlars_step_count():
    weight = torch.randn(3, 3, requires_grad=True)
    weight.grad = torch.randn(3, 3)
    optimizer = TVLARS([weight])
    for _ in range(4):
        optimizer.step()
    assert optimizer.state_dict()["param_groups"][0]["step"] == 4


# -------------------------------------------------------------------------- GradScaler


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_grad_scaler_skips_a_step_with_inf_gradients_without_advancing_t(name):
    model = small_model()
    optimizer = OPTIMIZERS[name](model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    inputs, targets = torch.randn(8, 6), torch.randint(0, 3, (8,))

    def scaled_backward(inject_inf: bool) -> None:
        optimizer.zero_grad()
        scaler.scale(torch.nn.functional.cross_entropy(model(inputs), targets)).backward()
        if inject_inf:
            next(model.parameters()).grad[0, 0] = float("inf")

    scaled_backward(inject_inf=True)
    before = copy.deepcopy(model.state_dict())
    scaler.step(optimizer)
    scaler.update()
    assert optimizer.param_groups[0]["step"] == 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert scaler.get_scale() == 512.0

    scaled_backward(inject_inf=False)
    scaler.step(optimizer)
    scaler.update()
    assert optimizer.param_groups[0]["step"] == 1
    assert not torch.equal(before["0.weight"], model.state_dict()["0.weight"])


def test_grad_scaler_step_equals_an_unscaled_step():
    scaled_model, plain_model = small_model(), small_model()
    scaled_opt, plain_opt = TVLARS(scaled_model.parameters()), TVLARS(plain_model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    inputs, targets = torch.randn(8, 6), torch.randint(0, 3, (8,))
    scaler.scale(torch.nn.functional.cross_entropy(scaled_model(inputs), targets)).backward()
    scaler.step(scaled_opt)
    torch.nn.functional.cross_entropy(plain_model(inputs), targets).backward()
    plain_opt.step()
    for a, b in zip(scaled_model.parameters(), plain_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# -------------------------------------------------------------------- no host syncs


def _forbid_host_conversions(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("host-device synchronization inside optimizer.step()")

    for method in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, method, forbidden)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_step_makes_no_host_device_synchronization(name, path, monkeypatch):
    params = [torch.randn(s, requires_grad=True) for s in SHAPES]
    for param in params:
        param.grad = torch.randn_like(param)
    optimizer = OPTIMIZERS[name](params, **PATHS[path])
    optimizer.record_layer_stats = True
    optimizer.step()  # the first step allocates state and, on the fused path, compiles
    with monkeypatch.context() as patch:
        _forbid_host_conversions(patch)
        optimizer.step()
        optimizer.step()
    assert optimizer.param_groups[0]["step"] == 3


# --------------------------------------------------------------------- path selection


def test_cpu_groups_default_to_the_native_kernels_whatever_their_size():
    cpu = torch.device("cpu")
    assert _paths.resolve_path(None, None, cpu, 1, native_ok=True) == _paths.NATIVE
    assert _paths.resolve_path(None, None, cpu, 10**9, native_ok=True) == _paths.NATIVE


def test_cpu_groups_the_native_kernels_cannot_take_default_to_foreach_whatever_their_size():
    cpu = torch.device("cpu")
    assert _paths.resolve_path(None, None, cpu, 10_000, native_ok=False) == _paths.FOREACH
    assert _paths.resolve_path(None, None, cpu, 10**9, native_ok=False) == _paths.FOREACH


def test_gpu_groups_default_to_foreach_whatever_their_size(monkeypatch):
    cuda = torch.device("cuda")  # only its type is read: no GPU needed
    monkeypatch.setattr(_paths, "_compiler_present", lambda device_type: True)
    assert _paths.resolve_path(None, None, cuda, 10_000, native_ok=False) == _paths.FOREACH
    assert _paths.resolve_path(None, None, cuda, 10**9, native_ok=False) == _paths.FOREACH


def test_a_device_type_set_to_auto_compile_compiles_large_groups_when_a_compiler_works(
    monkeypatch,
):
    cuda = torch.device("cuda")
    monkeypatch.setattr(_paths, "AUTO_COMPILE_DEVICE_TYPES", frozenset({"cuda"}))
    monkeypatch.setattr(_paths, "_compiler_present", lambda device_type: True)
    assert _paths.resolve_path(None, None, cuda, 10_000, native_ok=False) == _paths.FOREACH
    assert _paths.resolve_path(None, None, cuda, _paths.FUSED_MIN_NUMEL, False) == _paths.FUSED
    monkeypatch.setattr(_paths, "_compiler_present", lambda device_type: False)
    assert _paths.resolve_path(None, None, cuda, 10**9, native_ok=False) == _paths.FOREACH


def test_explicit_path_keywords_are_obeyed():
    cpu = torch.device("cpu")
    assert _paths.resolve_path(False, None, cpu, 10**9, True) == _paths.SINGLE
    assert _paths.resolve_path(True, None, cpu, 10**9, True) == _paths.FOREACH
    assert _paths.resolve_path(None, True, cpu, 1, True) == _paths.NATIVE
    assert _paths.resolve_path(None, True, cpu, 1, False) == _paths.FUSED
    assert _paths.resolve_path(None, "compile", cpu, 1, True) == _paths.FUSED
    assert _paths.resolve_path(None, "native", cpu, 1, True) == _paths.NATIVE
    assert _paths.resolve_path(None, False, cpu, 10**9, True) == _paths.FOREACH


def test_fused_native_where_the_kernels_cannot_run_raises_naming_the_fallback():
    with pytest.raises(RuntimeError, match="fused=True"):
        _paths.resolve_path(None, "native", torch.device("cpu"), 1, native_ok=False)


def test_fused_accepts_only_bools_none_and_the_two_implementations():
    with pytest.raises(ValueError, match="fused"):
        LARS([torch.zeros(2, 2, requires_grad=True)], fused="triton")


def test_default_falls_back_to_foreach_without_a_compiler(monkeypatch):
    monkeypatch.setattr(_paths, "_compiler_present", lambda device_type: False)
    assert _paths.resolve_path(None, None, torch.device("cpu"), 10**9, False) == _paths.FOREACH


def _broken_compiler(function):
    def fail(*args, **kwargs):
        raise RuntimeError("no working compiler")

    return fail


def test_compiler_failure_in_automatic_mode_warns_and_gives_the_eager_result(monkeypatch):
    monkeypatch.setattr(_native, "kernels", lambda: None)
    monkeypatch.setattr(_paths, "compiled", _broken_compiler)
    monkeypatch.setattr(_paths, "FUSED_MIN_NUMEL", 0)
    monkeypatch.setattr(_paths, "AUTO_COMPILE_DEVICE_TYPES", frozenset({"cpu"}))
    monkeypatch.setattr(_paths, "_compile_failed", set())
    monkeypatch.setattr(_paths, "_compiler_present", lambda device_type: True)
    with pytest.warns(RuntimeWarning, match="fall back"):
        ours, _ = run_optimizer(lambda p: LARS(p, lr=0.7), 3)
    expected = run_reference(lambda shape: ReferenceLARS(lr=0.7, adapted=len(shape) > 1), 3)
    assert_matches(ours, expected, rtol=1e-10)


def test_compiler_failure_with_fused_true_raises(monkeypatch):
    monkeypatch.setattr(_paths, "compiled", _broken_compiler)
    monkeypatch.setattr(_paths, "_compile_failed", set())
    with pytest.raises(RuntimeError, match="torch.compile failed"):
        run_optimizer(lambda p: LARS(p, fused="compile"), 1)


@pytest.mark.parametrize("name", ["tvlars", "lamb"])
def test_learning_rate_changed_every_step_does_not_recompile(name):
    params = [torch.randn(s, requires_grad=True) for s in SHAPES]
    for param in params:
        param.grad = torch.randn_like(param)
    optimizer = OPTIMIZERS[name](params, fused="compile")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    optimizer.step()
    scheduler.step()
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(4):
            optimizer.step()
            scheduler.step()
    assert optimizer.param_groups[0]["step"] == 5


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_learning_rate_in_a_tensor_gives_the_steps_of_the_same_float(name, path):
    """torch.optim accepts a 0-d tensor LR (schedulers then fill it in place)."""
    model, twin = small_model(), small_model()
    in_tensor = OPTIMIZERS[name](model.parameters(), **PATHS[path])
    as_float = OPTIMIZERS[name](twin.parameters(), **PATHS[path])
    for group in in_tensor.param_groups:
        # float64: a float32 tensor would round the LR, which a Python float does not
        group["lr"] = torch.tensor(group["lr"], dtype=torch.float64)
    schedulers = [
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
        for optimizer in (in_tensor, as_float)
    ]
    for step in range(3):
        train_steps(model, in_tensor, 1, first_step=step)
        train_steps(twin, as_float, 1, first_step=step)
        for scheduler in schedulers:
            scheduler.step()
    assert isinstance(in_tensor.param_groups[0]["lr"], torch.Tensor)
    for ours, expected in zip(model.parameters(), twin.parameters()):
        assert torch.equal(ours, expected)


@pytest.mark.parametrize("path", ["default", "foreach"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_step_the_user_compiles_never_recompiles_and_gives_the_eager_bits(name, path):
    """torch.compile(optimizer.step), as torch's own optimizers are compiled, with an LR
    scheduler changing the LR at every step: the step runs eagerly inside the compiled
    function (a graph break) instead of recompiling at every step."""
    keywords = {"foreach": True} if path == "foreach" else {}
    model, twin = small_model(), small_model()
    compiled, eager = (OPTIMIZERS[name](m.parameters(), **keywords) for m in (model, twin))
    schedulers = [
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
        for optimizer in (compiled, eager)
    ]
    torch._dynamo.reset()
    compiled_step = torch.compile(compiled.step)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for step in range(5):
            generator = torch.Generator().manual_seed(step)
            inputs = torch.randn(16, 6, generator=generator)
            targets = torch.randint(0, 3, (16,), generator=generator)
            for net, step_function in ((model, compiled_step), (twin, eager.step)):
                net.zero_grad()
                torch.nn.functional.cross_entropy(net(inputs), targets).backward()
                step_function()
            for scheduler in schedulers:
                scheduler.step()
    assert compiled.param_groups[0]["step"] == 5
    for ours, expected in zip(model.parameters(), twin.parameters()):
        assert torch.equal(ours, expected)


# ---------------------------------------------------------------------- layer stats


@pytest.mark.parametrize("path", PATHS)
def test_layer_stats_report_the_norms_and_ratio_the_step_used(path):
    params = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for param in params:
        param.grad = torch.randn_like(param)
    optimizer = LARS(params, lr=0.3, **PATHS[path])
    optimizer.record_layer_stats = True
    weights = [p.detach().clone() for p in params]
    optimizer.step()
    stats = optimizer.layer_stats
    assert [p is q for p, q in zip(stats.params, params[:2])] == [True, True]
    for index, (w, p) in enumerate(zip(weights[:2], params[:2])):
        decayed = p.grad + 5e-4 * w
        assert stats.weight_norm[index].item() == pytest.approx(w.norm().item(), rel=1e-12)
        assert stats.grad_norm[index].item() == pytest.approx(decayed.norm().item(), rel=1e-12)
        assert stats.trust_ratio[index].item() == pytest.approx(
            1e-3 * w.norm().item() / decayed.norm().item(), rel=1e-12
        )
        assert stats.lr[index] == 0.3


def test_layer_stats_are_not_collected_unless_asked():
    weight = torch.randn(3, 3, requires_grad=True)
    weight.grad = torch.randn(3, 3)
    optimizer = LARS([weight])
    optimizer.step()
    assert optimizer.layer_stats is None


def test_float32_reference_harness_is_sensitive():
    """The comparison used above fails when the arithmetic differs (guards the guard)."""
    ours, _ = run_optimizer(lambda p: LARS(p, lr=0.7, eta=1.1e-3), 2)
    expected = run_reference(lambda shape: ReferenceLARS(lr=0.7, adapted=len(shape) > 1), 2)
    with pytest.raises(AssertionError):
        assert_matches(ours, expected, rtol=1e-5)
    assert np.isfinite(expected[0]).all()
