"""The CUDA code paths, run on a machine without a GPU: on fake CUDA tensors.

torch's FakeTensorMode makes tensors that carry a device and a shape but no data, and
raises when an op mixes devices it cannot mix. A step on fake CUDA parameters therefore
walks the branches a GPU takes (the path choice, the multi-tensor path's device buckets,
its norms and per-step values) and fails on a tensor made on the wrong device, which the
CPU tests cannot see. Numbers are not checked here: tests/test_cuda.py does that on a GPU.
torch.compile's path (fused="compile") needs a CUDA build and is left to test_cuda.py.
"""

from __future__ import annotations

import pytest
import torch

from tvlars import LAMB, LARS, TVLARS
from tvlars.optim import _multi_tensor

fake_tensor = pytest.importorskip("torch._subclasses.fake_tensor")

OPTIMIZERS = {
    "lars": lambda params, **path: LARS(params, lr=0.7, **path),
    "tvlars": lambda params, **path: TVLARS(params, lr=0.7, lmbda=0.3, norm_clamp=2.0, **path),
    "tvlars-nesterov": lambda params, **path: TVLARS(params, lr=0.7, nesterov=True, **path),
    "lars-no-momentum": lambda params, **path: LARS(params, lr=0.7, momentum=0.0, **path),
    "lamb": lambda params, **path: LAMB(params, lr=0.05, weight_norm_clamp=(0.0, 10.0), **path),
    "lars-trust-clip": lambda params, **path: LARS(params, lr=0.7, trust_clip=True, **path),
    "lamb-max-grad-norm": lambda params, **path: LAMB(params, lr=0.05, max_grad_norm=1.0, **path),
}
PATHS = {"default": {}, "foreach": {"foreach": True}, "single": {"foreach": False}}


@pytest.fixture
def fake_cuda(monkeypatch):
    """A FakeTensorMode in which tensors can be made on "cuda"; torch's fused SGD kernel,
    which has no fake implementation, is left out (its three-op fallback runs instead)."""
    monkeypatch.setattr(_multi_tensor, "_FUSED_SGD_DEVICES", {"cpu"})
    mode = fake_tensor.FakeTensorMode()
    with mode:
        try:
            torch.empty(1, device="cuda")
        except (RuntimeError, AssertionError) as error:  # a torch whose fake CUDA differs
            pytest.skip(f"no fake CUDA tensors here: {error}")
        yield


def cuda_parameters() -> list[torch.nn.Parameter]:
    """A convolution weight, a linear weight in bfloat16 (its own bucket), a bias."""
    shapes_and_dtypes = [
        ((8, 4, 3, 3), torch.float32),
        ((5, 8), torch.bfloat16),
        ((8,), torch.float32),
    ]
    params = []
    for shape, dtype in shapes_and_dtypes:
        param = torch.nn.Parameter(torch.empty(shape, device="cuda", dtype=dtype))
        param.grad = torch.empty(shape, device="cuda", dtype=dtype)
        params.append(param)
    return params


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_gpu_steps_keep_every_tensor_on_the_gpu(fake_cuda, name, path):
    if name == "tvlars-nesterov" and path == "single":
        pytest.skip("Tensor.copy_ between fake CUDA tensors needs a CUDA build of torch")
    params = cuda_parameters()
    optimizer = OPTIMIZERS[name](params, **PATHS[path])
    optimizer.record_layer_stats = True
    for _ in range(2):
        optimizer.step()
    expected_path = "single" if path == "single" else "foreach"  # GPU groups default to foreach
    assert optimizer.last_step_paths == (expected_path,)
    for state in optimizer.state.values():
        assert all(
            value.device.type == "cuda" for value in state.values() if torch.is_tensor(value)
        )
    stats = optimizer.layer_stats
    assert len(stats.params) == 2  # the two adapted layers
    assert {t.device.type for t in (*stats.weight_norm, *stats.trust_ratio)} == {"cuda"}
    if stats.global_grad_norm is not None:
        assert {stats.global_grad_norm.device.type, stats.clip_factor.device.type} == {"cuda"}
