"""The optimizers on DTensor parameters (FSDP2's ``fully_shard``, tensor parallelism): two
processes that each hold shards of the layers take the same steps as one process that
holds the whole tensors, because every trust ratio sees its whole layer's norms.

Each optimizer's two-process run happens once (a module-scoped fixture) and the tests
below read what it saved.
"""

from __future__ import annotations

import datetime

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from processes import free_port, join_as_torchrun_rank
from torch.distributed.device_mesh import init_device_mesh

from tvlars import LAMB, LARS, TVLARS
from tvlars.optim import _native
from tvlars.telemetry import LayerRecorder, read_layers

tensor_api = pytest.importorskip("torch.distributed.tensor")  # public from torch 2.5 on
fsdp_api = pytest.importorskip("torch.distributed.fsdp")
if not hasattr(fsdp_api, "fully_shard"):  # FSDP2's entry point, public from torch 2.6 on
    pytest.skip("this torch has no torch.distributed.fsdp.fully_shard", allow_module_level=True)

STEPS = 3
OPTIMIZERS = {
    "lars": (LARS, {"lr": 0.7}),
    "tvlars": (TVLARS, {"lr": 0.7, "lmbda": 0.3, "nesterov": True}),
    "lamb": (LAMB, {"lr": 0.05}),
    # The clipping options, set so that they clip this model's layers and gradients.
    "lars-trust-clip": (LARS, {"lr": 0.7, "eta": 2.0, "trust_clip": True}),
    "lamb-max-grad-norm": (LAMB, {"lr": 0.05, "max_grad_norm": 0.01}),
}
# default: on CPU the native kernels' split steps (the multi-tensor path where no C++
# compiler works); foreach: the multi-tensor path; single: the reference on DTensors.
PATHS = {"default": {}, "foreach": {"foreach": True}, "single": {"foreach": False}}
# Whole-tensor shapes and how the two-process run lays each out on a mesh of 2: split by
# rows, by columns, copied whole, split unevenly with a 1-D (excluded) layer, a plain
# tensor beside the DTensors, and HSDP's layout on a 1x2 mesh (copied along the first
# mesh dimension, split along the second: the norm is summed over the second only).
LAYOUTS = [((6, 5), "shard0"), ((5, 7), "shard1"), ((3, 4), "replicate"), ((7,), "shard0"),
           ((4, 3), "plain"), ((5, 6), "hsdp")]  # fmt: skip
BATCH = 8


def make_model() -> torch.nn.Module:
    """Linear layers whose rows split 4/3 over two processes, and one (a single row) that
    leaves the second process an empty shard."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 6), torch.nn.Tanh(),
        torch.nn.Linear(6, 1),
    )  # fmt: skip


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(10 + step)
    return torch.randn(BATCH, 5, generator=generator), torch.randn(BATCH, 1, generator=generator)


def whole_tensors(seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for shape, _ in LAYOUTS]


def make_optimizer(name: str, path: str, params):
    optimizer_class, keywords = OPTIMIZERS[name]
    optimizer = optimizer_class(params, **keywords, **PATHS[path])
    optimizer.record_layer_stats = True
    return optimizer


def count_all_reduces(monkeypatch_target, counter: list[int]):
    real = monkeypatch_target.all_reduce

    def counting(*args, **kwargs):
        counter[0] += 1
        return real(*args, **kwargs)

    monkeypatch_target.all_reduce = counting
    return real


def all_ranks(value) -> list:
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def train_fsdp(name: str, path: str, rank: int) -> dict:
    """FSDP2 over two processes, each with half of every batch (gradients averaged)."""
    model = make_model()
    fsdp_api.fully_shard(model)
    optimizer = make_optimizer(name, path, model.parameters())
    all_reduces_per_step = []
    for step in range(STEPS):
        inputs, targets = batch(step)
        half = slice(rank * BATCH // 2, (rank + 1) * BATCH // 2)
        torch.nn.functional.mse_loss(model(inputs[half]), targets[half]).backward()
        counter = [0]
        real = count_all_reduces(dist, counter)
        try:
            optimizer.step()
        finally:
            dist.all_reduce = real
        all_reduces_per_step.append(counter[0])
        optimizer.zero_grad()
    stats = optimizer.layer_stats
    return {
        "params": [p.full_tensor() for p in model.parameters()],
        "weight_norms": torch.stack(stats.weight_norm),
        "grad_norms": torch.stack(stats.grad_norm),
        "local_shapes": all_ranks([tuple(p.to_local().shape) for p in model.parameters()]),
        "all_reduces_per_step": all_reduces_per_step,
        "paths": optimizer.last_step_paths,
    }


def train_layouts(name: str, path: str) -> dict:
    """The LAYOUTS as DTensors (and one plain tensor) in one param group."""
    mesh = init_device_mesh("cpu", (2,))
    mesh_1x2 = init_device_mesh("cpu", (1, 2), mesh_dim_names=("replicate", "shard"))

    def lay_out(tensor: torch.Tensor, layout: str) -> torch.Tensor:
        if layout == "plain":
            return tensor.clone()
        if layout == "hsdp":
            placements = [tensor_api.Replicate(), tensor_api.Shard(0)]
            return tensor_api.distribute_tensor(tensor.clone(), mesh_1x2, placements)
        placement = {
            "shard0": tensor_api.Shard(0),
            "shard1": tensor_api.Shard(1),
            "replicate": tensor_api.Replicate(),
        }[layout]
        return tensor_api.distribute_tensor(tensor.clone(), mesh, [placement])

    layouts = [layout for _, layout in LAYOUTS]
    params = [torch.nn.Parameter(lay_out(t, lo)) for t, lo in zip(whole_tensors(0), layouts)]
    optimizer = make_optimizer(name, path, params)
    for step in range(STEPS):
        for param, grad, layout in zip(params, whole_tensors(100 + step), layouts):
            param.grad = lay_out(grad, layout)
        optimizer.step()
    whole = [p.full_tensor() if isinstance(p, tensor_api.DTensor) else p.detach() for p in params]
    result = {"params": whole, "weight_norms": torch.stack(optimizer.layer_stats.weight_norm)}
    # A later step whose gradient is laid out unlike its parameter (copied whole, not split
    # by rows) is refused on every process, before any collective.
    params[0].grad = lay_out(whole_tensors(200)[0], "replicate")
    try:
        optimizer.step()
    except ValueError as error:
        result["refusal"] = str(error)
    return result


def record_fsdp(name: str, rank: int, folder: str) -> None:
    """FSDP2 training with a LayerRecorder on every process (rank r writes layers{r}.csv),
    for the optimizer under test and for torch's SGD, whose norms the recorder computes
    (with the native norm pass, and with the multi-tensor arithmetic that stands in for it
    where no C++ compiler works)."""
    for recorded in (name, "sgd", "sgd-multi-tensor"):
        model = make_model()
        fsdp_api.fully_shard(model)
        optimizer = make_recorded_optimizer(recorded.split("-")[0], model.parameters())
        csv = f"{folder}/{recorded}-layers{rank}.csv"
        available = _native.available
        if recorded == "sgd-multi-tensor":
            _native.available = lambda params, grads: False
        try:
            with LayerRecorder(optimizer, model, csv):
                train_steps(model, optimizer, range(STEPS), rank)
        finally:
            _native.available = available


def make_recorded_optimizer(name: str, params):
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    optimizer_class, keywords = OPTIMIZERS[name]
    return optimizer_class(params, **keywords)


def train_steps(model, optimizer, steps, rank: int) -> None:
    for step in steps:
        inputs, targets = batch(step)
        half = slice(rank * BATCH // 2, (rank + 1) * BATCH // 2)
        torch.nn.functional.mse_loss(model(inputs[half]), targets[half]).backward()
        optimizer.step()
        optimizer.zero_grad()


def resume_fsdp(name: str, rank: int, folder: str) -> dict:
    """STEPS + 1 steps straight through, and the same resumed after 2 from a distributed
    checkpoint (torch.distributed.checkpoint, as FSDP2 users save one)."""
    import torch.distributed.checkpoint as checkpoint
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    def fresh():
        model = make_model()
        fsdp_api.fully_shard(model)
        return model, make_recorded_optimizer(name, model.parameters())

    model, optimizer = fresh()
    train_steps(model, optimizer, range(STEPS + 1), rank)
    uninterrupted = [p.full_tensor() for p in model.parameters()]

    model, optimizer = fresh()
    train_steps(model, optimizer, range(2), rank)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    saved = {"model": model_state, "optimizer": optimizer_state}
    checkpoint.save(saved, checkpoint_id=f"{folder}/checkpoint")
    model, optimizer = fresh()
    model_state, optimizer_state = get_state_dict(model, optimizer)
    loaded = {"model": model_state, "optimizer": optimizer_state}
    checkpoint.load(loaded, checkpoint_id=f"{folder}/checkpoint")
    set_state_dict(
        model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optimizer"]
    )
    step_after_load = optimizer.param_groups[0]["step"]
    train_steps(model, optimizer, range(2, STEPS + 1), rank)
    return {
        "uninterrupted": uninterrupted,
        "resumed": [p.full_tensor() for p in model.parameters()],
        "step_after_load": step_after_load,
    }


def telemetry_on_rank_0_only(name: str, path: str, rank: int) -> torch.Tensor:
    """FSDP2 steps with the step's norms recorded on the first process only: the steps must
    make the same collectives either way (else they would wait for each other forever)."""
    model = make_model()
    fsdp_api.fully_shard(model)
    optimizer = make_optimizer(name, path, model.parameters())
    optimizer.record_layer_stats = rank == 0
    train_steps(model, optimizer, range(STEPS), rank)
    return torch.stack(optimizer.layer_stats.weight_norm) if rank == 0 else None


def _worker(rank: int, port: int, name: str, folder: str) -> None:
    join_as_torchrun_rank(rank, port)
    # A collective one process makes and the other does not fails after this long instead
    # of waiting for the default half hour.
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    try:
        results = {}
        for path in PATHS:
            results["fsdp", path] = train_fsdp(name, path, rank)
            results["layouts", path] = train_layouts(name, path)
            results["rank 0 records", path] = telemetry_on_rank_0_only(name, path, rank)
        record_fsdp(name, rank, folder)
        results["resume"] = resume_fsdp(name, rank, folder)
        if rank == 0:
            torch.save(results, f"{folder}/rank0.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module", params=sorted(OPTIMIZERS))
def sharded_run(request, tmp_path_factory):
    """(optimizer name, what its two-process runs saved, the folder they wrote in)."""
    folder = tmp_path_factory.mktemp(request.param)
    mp.spawn(_worker, args=(free_port(), request.param, str(folder)), nprocs=2, join=True)
    return request.param, torch.load(folder / "rank0.pt"), folder


def whole_fsdp_run(name: str, path: str) -> dict:
    model = make_model()
    optimizer = make_optimizer(name, path, model.parameters())
    for step in range(STEPS):
        inputs, targets = batch(step)
        torch.nn.functional.mse_loss(model(inputs), targets).backward()
        optimizer.step()
        optimizer.zero_grad()
    return {
        "params": [p.detach() for p in model.parameters()],
        "weight_norms": torch.stack(optimizer.layer_stats.weight_norm),
        "grad_norms": torch.stack(optimizer.layer_stats.grad_norm),
    }


def whole_layouts_run(name: str, path: str) -> dict:
    params = [torch.nn.Parameter(t) for t in whole_tensors(0)]
    optimizer = make_optimizer(name, path, params)
    for step in range(STEPS):
        for param, grad in zip(params, whole_tensors(100 + step)):
            param.grad = grad
        optimizer.step()
    return {
        "params": [p.detach() for p in params],
        "weight_norms": torch.stack(optimizer.layer_stats.weight_norm),
    }


# float32 through different summation orders (gradients averaged across processes, norms
# summed from shards): the spec's float32 tolerance.
CLOSE = dict(rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_fsdp2_model_takes_the_steps_of_one_process_with_the_whole_batch(sharded_run, path):
    name, results, _ = sharded_run
    sharded, whole = results["fsdp", path], whole_fsdp_run(name, path)
    # Rows split 4/3 and 1/0: the second process holds an empty shard of the last weight.
    assert [shapes[0] for shapes in sharded["local_shapes"]] == [(4, 5), (3, 5)]
    assert [shapes[-2] for shapes in sharded["local_shapes"]] == [(1, 6), (0, 6)]
    for ours, alone in zip(sharded["params"], whole["params"], strict=True):
        torch.testing.assert_close(ours, alone, **CLOSE)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_telemetry_of_sharded_layers_reports_whole_layer_norms(sharded_run, path):
    name, results, _ = sharded_run
    sharded, whole = results["fsdp", path], whole_fsdp_run(name, path)
    torch.testing.assert_close(sharded["weight_norms"], whole["weight_norms"], **CLOSE)
    torch.testing.assert_close(sharded["grad_norms"], whole["grad_norms"], **CLOSE)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_shards_by_rows_columns_copies_hsdp_and_plain_tensors_match_whole_tensors(
    sharded_run, path
):
    name, results, _ = sharded_run
    sharded, whole = results["layouts", path], whole_layouts_run(name, path)
    # A replicated layer summed over its copies would have a norm sqrt(2) too large.
    torch.testing.assert_close(sharded["weight_norms"], whole["weight_norms"], **CLOSE)
    for ours, alone in zip(sharded["params"], whole["params"], strict=True):
        torch.testing.assert_close(ours, alone, **CLOSE)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_recording_on_one_process_only_leaves_the_steps_collectives_alike(sharded_run, path):
    name, results, _ = sharded_run
    whole = whole_fsdp_run(name, path)
    torch.testing.assert_close(results["rank 0 records", path], whole["weight_norms"], **CLOSE)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_later_gradient_laid_out_unlike_its_parameter_is_refused(sharded_run, path):
    _, results, _ = sharded_run
    assert "gradient is DTensor (Replicate()" in results["layouts", path].get("refusal", "")


@pytest.mark.parametrize("path", ["default", "foreach"])
def test_steps_on_local_shards_make_one_all_reduce_each(sharded_run, path):
    name, results, _ = sharded_run
    # LAMB's global gradient norm needs one more for the whole step, before the moments
    # (tvlars.optim._grad_clip): the layer norms' collective follows the moments.
    expected = 2 if name == "lamb-max-grad-norm" else 1
    assert results["fsdp", path]["all_reduces_per_step"] == [expected] * STEPS


def test_the_default_path_on_cpu_is_the_native_kernels_where_they_build(sharded_run):
    _, results, _ = sharded_run
    expected = "native" if _native.kernels() is not None else "foreach"
    assert results["fsdp", "default"]["paths"] == (expected,)
    assert results["fsdp", "foreach"]["paths"] == ("foreach",)


def test_fsdp2_run_resumed_from_a_distributed_checkpoint_matches_an_uninterrupted_one(
    sharded_run,
):
    _, results, _ = sharded_run
    resume = results["resume"]
    assert resume["step_after_load"] == 2  # TVLARS's phi(t) continues where it stopped
    for resumed, uninterrupted in zip(resume["resumed"], resume["uninterrupted"], strict=True):
        torch.testing.assert_close(resumed, uninterrupted, rtol=0, atol=0)


@pytest.mark.parametrize("recorded", ["ours", "sgd", "sgd-multi-tensor"])
def test_layer_recorder_on_every_process_writes_whole_layer_norms(sharded_run, recorded, tmp_path):
    name, _, folder = sharded_run
    recorded = name if recorded == "ours" else recorded
    model = make_model()
    optimizer = make_recorded_optimizer(recorded.split("-")[0], model.parameters())
    with LayerRecorder(optimizer, model, tmp_path / "whole.csv"):
        for step in range(STEPS):
            inputs, targets = batch(step)
            torch.nn.functional.mse_loss(model(inputs), targets).backward()
            optimizer.step()
            optimizer.zero_grad()
    whole = read_layers(tmp_path / "whole.csv")
    for rank in (0, 1):  # each process's file holds the same, whole-layer values
        sharded = read_layers(folder / f"{recorded}-layers{rank}.csv")
        assert list(sharded["layer"]) == list(whole["layer"])
        assert list(sharded["step"]) == list(whole["step"])
        for column in ("weight_norm", "grad_norm", "trust_ratio"):
            torch.testing.assert_close(
                torch.from_numpy(sharded[column]), torch.from_numpy(whole[column]), **CLOSE
            )


# ------------------------------------------------------------ refusals (one process)


@pytest.fixture
def mesh_of_one(monkeypatch):
    """A one-process gloo group and its mesh, as torchrun would set up rank 0 of 1."""
    environment = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    environment.update(WORLD_SIZE="1", RANK="0", LOCAL_RANK="0")
    for variable, value in environment.items():  # restored after the test
        monkeypatch.setenv(variable, value)
    dist.init_process_group("gloo")
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


def sharded_weight(mesh, placement=None) -> torch.nn.Parameter:
    placement = placement or tensor_api.Shard(0)
    return torch.nn.Parameter(tensor_api.distribute_tensor(torch.randn(4, 4), mesh, [placement]))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_compiled_fused_path_refuses_dtensor_parameters_and_names_the_paths_that_take_them(
    mesh_of_one, name
):
    optimizer_class, keywords = OPTIMIZERS[name]
    with pytest.raises(ValueError, match="cannot step DTensor.*fused=None.*foreach=False"):
        optimizer_class([sharded_weight(mesh_of_one)], fused="compile", **keywords)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_group_of_excluded_dtensor_layers_only_steps_as_plain_tensors_do(mesh_of_one, name):
    # e.g. the no-weight-decay group of biases and normalization layers users often make
    optimizer_class, keywords = OPTIMIZERS[name]
    generator = torch.Generator().manual_seed(0)
    bias, grad = torch.randn(5, generator=generator), torch.randn(5, generator=generator)
    plain = torch.nn.Parameter(bias.clone())
    plain.grad = grad.clone()
    shard = [tensor_api.Shard(0)]
    sharded = torch.nn.Parameter(tensor_api.distribute_tensor(bias.clone(), mesh_of_one, shard))
    sharded.grad = tensor_api.distribute_tensor(grad.clone(), mesh_of_one, shard)
    for param in (plain, sharded):
        optimizer_class([{"params": [param], "weight_decay": 0.0}], **keywords).step()
    torch.testing.assert_close(sharded.to_local(), plain.detach(), rtol=0, atol=0)


@pytest.mark.skipif(_native.kernels() is None, reason="no C++ compiler here")
@pytest.mark.parametrize("fused", [True, "native"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_native_fused_path_steps_cpu_dtensor_shards(mesh_of_one, name, fused):
    optimizer_class, keywords = OPTIMIZERS[name]
    weight = sharded_weight(mesh_of_one)
    weight.grad = tensor_api.distribute_tensor(
        torch.randn(4, 4), mesh_of_one, [tensor_api.Shard(0)]
    )
    optimizer = optimizer_class([weight], fused=fused, **keywords)
    optimizer.step()
    assert optimizer.last_step_paths == ("native",)


def test_native_fused_path_without_the_kernels_raises_naming_the_fallback(mesh_of_one, monkeypatch):
    monkeypatch.setattr(_native, "sharded_available", lambda params, grads: False)
    weight = sharded_weight(mesh_of_one)
    weight.grad = tensor_api.distribute_tensor(
        torch.randn(4, 4), mesh_of_one, [tensor_api.Shard(0)]
    )
    optimizer = LARS([weight], fused="native")
    with pytest.raises(RuntimeError, match="native CPU kernels.*fused=None"):
        optimizer.step()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_gradient_laid_out_unlike_its_parameter_is_refused_at_the_step(mesh_of_one, name):
    optimizer_class, keywords = OPTIMIZERS[name]
    weight = sharded_weight(mesh_of_one)
    weight.grad = tensor_api.distribute_tensor(
        torch.randn(4, 4), mesh_of_one, [tensor_api.Replicate()]
    )
    optimizer = optimizer_class([weight], **keywords)
    with pytest.raises(ValueError, match="gradient is DTensor.*Replicate.*redistribute"):
        optimizer.step()


def test_plain_gradient_of_a_dtensor_parameter_is_refused_at_the_step(mesh_of_one):
    weight = sharded_weight(mesh_of_one)
    weight.grad = torch.randn(4, 4)
    with pytest.raises(ValueError, match="gradient is a plain tensor"):
        LARS([weight]).step()


def test_parameter_with_a_partial_placement_is_refused_at_the_step(mesh_of_one):
    partial = tensor_api.DTensor.from_local(torch.randn(4, 4), mesh_of_one, [tensor_api.Partial()])
    weight = torch.nn.Parameter(partial)
    weight.grad = tensor_api.DTensor.from_local(
        torch.randn(4, 4), mesh_of_one, [tensor_api.Partial()]
    )
    with pytest.raises(ValueError, match="Partial placement"):
        LARS([weight]).step()


def test_a_step_the_user_compiles_takes_dtensor_parameters(mesh_of_one):
    generator = torch.Generator().manual_seed(0)
    wholes = [torch.randn(6, 4, generator=generator), torch.randn(4, generator=generator)]
    grads = [torch.randn_like(whole) for whole in wholes]
    plain = [torch.nn.Parameter(whole.clone()) for whole in wholes]
    sharded = [
        torch.nn.Parameter(
            tensor_api.distribute_tensor(w.clone(), mesh_of_one, [tensor_api.Shard(0)])
        )
        for w in wholes
    ]
    for param, grad in zip(plain, grads):
        param.grad = grad.clone()
    for param, grad in zip(sharded, grads):
        param.grad = tensor_api.distribute_tensor(grad.clone(), mesh_of_one, [tensor_api.Shard(0)])
    eager, compiled = LARS(plain, lr=0.7, foreach=True), LARS(sharded, lr=0.7)
    compiled_step = torch.compile(compiled.step)
    for _ in range(2):
        eager.step()
        compiled_step()
    for ours, expected in zip(sharded, plain):
        torch.testing.assert_close(ours.full_tensor(), expected.detach(), rtol=1e-5, atol=1e-6)


NATIVE_CASES = {
    "lars-float32": (LARS, {"lr": 0.7}, torch.float32),
    "lars-no-momentum": (LARS, {"lr": 0.7, "momentum": 0.0}, torch.float32),
    "tvlars-nesterov-float64": (TVLARS, {"lr": 0.7, "lmbda": 0.3, "nesterov": True}, torch.float64),
    "tvlars-clamped-bfloat16": (TVLARS, {"lr": 0.7, "norm_clamp": 1.0}, torch.bfloat16),
    "lamb-float32": (LAMB, {"lr": 0.05}, torch.float32),
    "lamb-clamped-float64": (LAMB, {"lr": 0.05, "weight_norm_clamp": (0.0, 1.0)}, torch.float64),
    "lars-trust-clip-float32": (LARS, {"lr": 0.01, "eta": 0.5, "trust_clip": True}, torch.float32),
    "tvlars-trust-clip-bfloat16": (
        TVLARS,
        {"lr": 0.01, "eta": 0.1, "trust_clip": True},
        torch.bfloat16,
    ),
    "lamb-max-grad-norm-float32": (LAMB, {"lr": 0.05, "max_grad_norm": 1.0}, torch.float32),
    "lamb-max-grad-norm-bfloat16": (LAMB, {"lr": 0.05, "max_grad_norm": 1.0}, torch.bfloat16),
}


@pytest.mark.skipif(_native.kernels() is None, reason="no C++ compiler here")
@pytest.mark.parametrize("case", sorted(NATIVE_CASES))
def test_split_native_step_of_a_mesh_of_one_gives_the_bits_of_the_whole_native_step(
    mesh_of_one, case
):
    optimizer_class, keywords, dtype = NATIVE_CASES[case]
    generator = torch.Generator().manual_seed(0)
    shapes = [(300, 200), (16, 8, 3, 3), (10,)]  # split between threads, small, excluded
    wholes = [torch.randn(s, generator=generator).to(dtype) for s in shapes]
    grads = [[torch.randn(s, generator=generator).to(dtype) for s in shapes] for _ in range(3)]
    plain = [torch.nn.Parameter(w.clone()) for w in wholes]
    shard = [tensor_api.Shard(0)]
    sharded = [
        torch.nn.Parameter(tensor_api.distribute_tensor(w.clone(), mesh_of_one, shard))
        for w in wholes
    ]
    whole_step, split_step = (
        optimizer_class(plain, **keywords),
        optimizer_class(sharded, **keywords),
    )
    for step_grads in grads:
        for param, grad in zip(plain, step_grads):
            param.grad = grad.clone()
        for param, grad in zip(sharded, step_grads):
            param.grad = tensor_api.distribute_tensor(grad.clone(), mesh_of_one, shard)
        whole_step.step()
        split_step.step()
    assert whole_step.last_step_paths == split_step.last_step_paths == ("native",)
    for ours, expected in zip(sharded, plain):
        torch.testing.assert_close(ours.to_local(), expected.detach(), rtol=0, atol=0)
