"""The GPU checks: what only a CUDA device can show. Skipped where there is none.

On a machine with a GPU: ``python -m pytest -q tests/test_cuda.py`` (a few minutes, most of
it torch.compile building the triton kernels of the fused path once).
"""

from __future__ import annotations

import json

import pytest
import torch

from tvlars import LAMB, LARS, TVLARS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

SHAPES = [(64, 32, 3, 3), (10, 64), (64,), (10,)]
OPTIMIZERS = {
    "lars": lambda params, **path: LARS(params, lr=0.7, **path),
    "tvlars": lambda params, **path: TVLARS(params, lr=0.7, lmbda=0.3, **path),
    "lamb": lambda params, **path: LAMB(params, lr=0.05, **path),
}
GPU_PATHS = {"foreach": {"foreach": True}, "fused": {"fused": True}, "default": {}}
# Only on the multi-tensor path (each compiled form costs the GPU run minutes to build).
NESTEROV = {
    "tvlars-nesterov": lambda params, **path: TVLARS(
        params, lr=0.7, lmbda=0.3, nesterov=True, **path
    )
}

# The clipping options, each set so that it acts on these weights and gradients (LARC caps
# trust ratios near 10; the gradients' global norm is about 140).
CLIPPING = {
    "lars-trust-clip": lambda params, **path: LARS(
        params, lr=0.7, eta=10.0, trust_clip=True, **path
    ),
    "tvlars-trust-clip": lambda params, **path: TVLARS(
        params, lr=0.7, lmbda=0.3, eta=10.0, trust_clip=True, **path
    ),
    "lamb-max-grad-norm": lambda params, **path: LAMB(params, lr=0.05, max_grad_norm=10.0, **path),
}


def run(
    name: str, device: str, steps: int = 3, lay_out=None, gather=None, **path
) -> list[torch.Tensor]:
    """Parameters after ``steps`` steps with seeded weights and gradients (each weight and
    gradient passed through ``lay_out`` first when given, e.g. to make it a DTensor, and
    each parameter through ``gather`` at the end, default ``full_tensor()`` of DTensors)."""
    lay_out = lay_out or (lambda tensor: tensor)
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(s, generator=generator) for s in SHAPES]
    grads = [[torch.randn(s, generator=generator) for s in SHAPES] for _ in range(steps)]
    params = [torch.nn.Parameter(lay_out(w.to(device))) for w in weights]
    optimizer = {**OPTIMIZERS, **NESTEROV, **CLIPPING}[name](params, **path)
    for step_grads in grads:
        for param, grad in zip(params, step_grads):
            param.grad = lay_out(grad.to(device))
        optimizer.step()
    gather = gather or (lambda p: p.full_tensor() if hasattr(p, "full_tensor") else p)
    whole = [gather(p) for p in params]
    return [p.detach().cpu() for p in whole]


@pytest.mark.parametrize("path", GPU_PATHS)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_gpu_paths_give_the_cpu_reference_numbers(name, path):
    expected = run(name, "cpu", foreach=False)
    for ours, reference in zip(run(name, "cuda", **GPU_PATHS[path]), expected):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", ["foreach", "default"])
@pytest.mark.parametrize("name", CLIPPING)
def test_the_clipping_options_give_the_cpu_reference_numbers_on_the_gpu(name, path):
    expected = run(name, "cpu", foreach=False)
    for ours, reference in zip(run(name, "cuda", **GPU_PATHS[path]), expected):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CLIPPING)
def test_the_clipping_options_never_synchronize_with_the_host(name):
    params = [torch.randn(s, device="cuda", requires_grad=True) for s in SHAPES]
    for param in params:
        param.grad = torch.randn_like(param)
    optimizer = CLIPPING[name](params, foreach=True)
    step_three_times_without_a_sync(optimizer)
    assert optimizer.param_groups[0]["step"] == 4


def test_the_gpu_multi_tensor_nesterov_step_gives_the_cpu_reference_numbers():
    # Algorithm 1's form builds its lookahead in the step's own tensors (no compile here).
    expected = run("tvlars-nesterov", "cpu", foreach=False)
    for ours, reference in zip(run("tvlars-nesterov", "cuda", foreach=True), expected):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def step_three_times_without_a_sync(optimizer) -> None:
    """One step (state allocated, kernels compiled), then three in which any host-device
    synchronization raises."""
    optimizer.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            optimizer.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("path", GPU_PATHS)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_gpu_steps_never_synchronize_with_the_host(name, path, tmp_path):
    from tvlars.telemetry import LayerRecorder

    params = [torch.randn(s, device="cuda", requires_grad=True) for s in SHAPES]
    for param in params:
        param.grad = torch.randn_like(param)
    optimizer = OPTIMIZERS[name](params, **GPU_PATHS[path])
    named = [(f"p{i}", p) for i, p in enumerate(params)]
    recorder = LayerRecorder(optimizer, named, tmp_path / "layers.csv", capacity=8)
    step_three_times_without_a_sync(optimizer)
    recorder.close()
    assert optimizer.param_groups[0]["step"] == 4


@pytest.mark.parametrize("name", ["tvlars", "lamb"])
def test_an_lr_changed_every_step_does_not_recompile_on_the_gpu(name):
    params = [torch.randn(s, device="cuda", requires_grad=True) for s in SHAPES]
    for param in params:
        param.grad = torch.randn_like(param)
    optimizer = OPTIMIZERS[name](params, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    optimizer.step()
    scheduler.step()
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(4):
            optimizer.step()
            scheduler.step()


def test_device_batches_live_on_the_gpu():
    from tvlars.data import DeviceBatches

    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (64,))
    batches = DeviceBatches(
        images, labels, micro_batch=16, device="cuda", padding=4, flip=True,
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
    )  # fmt: skip
    seen = 0
    for inputs, targets in batches.epoch(0):
        assert inputs.is_cuda and targets.is_cuda
        assert inputs.shape == (16, 3, 32, 32) and inputs.dtype == torch.float32
        seen += len(targets)
    assert seen == 64


def test_a_tiny_training_run_on_the_gpu(tmp_path):
    from tvlars.train import RunConfig, train

    config = RunConfig(
        dataset="mnist1d", num_samples=1000, model="mnist1d-resnet", batch_size=128,
        epochs=2, warmup_epochs=1, delay_epochs=1, lr=1.0, out=str(tmp_path), device="cuda",
    )  # fmt: skip
    summary = train(config, progress=False)
    assert summary["device"].startswith("cuda")
    assert json.loads((tmp_path / "summary.json").read_text())["final_test_acc"] > 10.0


@pytest.fixture
def nccl_mesh_of_one(monkeypatch):
    """A one-process NCCL group and its CUDA mesh, as torchrun would set up rank 0 of 1."""
    import torch.distributed as dist
    from processes import free_port

    if not dist.is_available() or not dist.is_nccl_available():
        pytest.skip("this torch has no NCCL")
    tensor_api = pytest.importorskip("torch.distributed.tensor")
    from torch.distributed.device_mesh import init_device_mesh

    environment = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    environment.update(WORLD_SIZE="1", RANK="0", LOCAL_RANK="0")
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    dist.init_process_group("nccl")
    try:
        yield tensor_api, init_device_mesh("cuda", (1,))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_dtensor_parameters_on_the_gpu_give_the_cpu_reference_numbers(nccl_mesh_of_one, name):
    # The sharded multi-tensor path (local shards, one NCCL all-reduce of the norms).
    tensor_api, mesh = nccl_mesh_of_one

    def lay_out(tensor):
        return tensor_api.distribute_tensor(tensor, mesh, [tensor_api.Shard(0)])

    expected = run(name, "cpu", foreach=False)
    for ours, reference in zip(run(name, "cuda", lay_out=lay_out), expected):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_cpu_offloaded_dtensor_shards_of_a_gpu_mesh_give_the_cpu_reference_numbers(
    nccl_mesh_of_one, name
):
    # FSDP2's CPU offload: each shard lives on the CPU, its mesh (and NCCL) on the GPU.
    tensor_api, mesh = nccl_mesh_of_one

    def lay_out(tensor):
        return tensor_api.DTensor.from_local(tensor, mesh, [tensor_api.Shard(0)], run_check=False)

    expected = run(name, "cpu", foreach=False)
    # On a mesh of one the local shard is the whole tensor (no gather over NCCL of a CPU one).
    stepped = run(name, "cpu", lay_out=lay_out, gather=lambda p: p.to_local())
    for ours, reference in zip(stepped, expected):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_dtensor_steps_on_the_gpu_never_synchronize_with_the_host(nccl_mesh_of_one, name):
    tensor_api, mesh = nccl_mesh_of_one
    params = []
    for shape in SHAPES:
        weight = tensor_api.distribute_tensor(
            torch.randn(shape, device="cuda"), mesh, [tensor_api.Shard(0)]
        )
        params.append(torch.nn.Parameter(weight))
    for param in params:
        param.grad = tensor_api.distribute_tensor(
            torch.randn(param.shape, device="cuda"), mesh, [tensor_api.Shard(0)]
        )
    optimizer = OPTIMIZERS[name](params)
    step_three_times_without_a_sync(optimizer)
    assert optimizer.last_step_paths == ("foreach",)
