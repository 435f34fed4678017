"""The optimizers under torch.distributed's ZeroRedundancyOptimizer (optimizer state sharded
across processes): each process steps whole layers, so every trust ratio sees its layer's
full norms and the result equals one process's run. (DTensor parameters, FSDP2's:
tests/test_optim_sharded.py.)"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from processes import free_port, join_as_torchrun_rank
from torch.distributed.optim import ZeroRedundancyOptimizer

from tvlars import LAMB, LARS, TVLARS

# A large layer (split between threads by the native kernels) and small and 1-D ones.
SHAPES = [(300, 200), (64, 32, 3, 3), (10, 64), (64,), (10,)]
STEPS = 3
OPTIMIZERS = {
    "lars": (LARS, {"lr": 0.7}),
    "tvlars": (TVLARS, {"lr": 0.7, "lmbda": 0.3}),
    "lamb": (LAMB, {"lr": 0.05}),
}


def initial_params() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=generator).requires_grad_() for s in SHAPES]


def gradients(step: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    return [torch.randn(s, generator=generator) for s in SHAPES]


def train(params: list[torch.Tensor], optimizer) -> None:
    for step in range(STEPS):
        for param, grad in zip(params, gradients(step)):
            param.grad = grad
        optimizer.step()


def _zero_worker(rank: int, port: int, name: str, out: str) -> None:
    join_as_torchrun_rank(rank, port)
    dist.init_process_group("gloo")
    try:
        _zero_steps(rank, name, out)
    finally:
        # The optimizer (which holds the process group) is gone by now: a group's last
        # reference dropped after it was destroyed runs gloo's destructor under the GIL,
        # which can deadlock.
        dist.destroy_process_group()


def _zero_steps(rank: int, name: str, out: str) -> None:
    optimizer_class, keywords = OPTIMIZERS[name]
    params = initial_params()
    optimizer = ZeroRedundancyOptimizer(params, optimizer_class=optimizer_class, **keywords)
    train(params, optimizer)
    optimizer.consolidate_state_dict(to=0)
    if rank == 0:
        state = optimizer.state_dict()
        steps = [group["step"] for group in state["param_groups"]]
        torch.save({"params": [p.detach() for p in params], "steps": steps}, out)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_zero_redundancy_sharding_over_two_processes_matches_one_process(name, tmp_path):
    out = str(tmp_path / "rank0.pt")
    mp.spawn(_zero_worker, args=(free_port(), name, out), nprocs=2, join=True)
    optimizer_class, keywords = OPTIMIZERS[name]
    params = initial_params()
    train(params, optimizer_class(params, **keywords))
    sharded = torch.load(out)
    assert sharded["steps"] == [STEPS]  # the consolidated state continues phi(t) correctly
    for ours, alone in zip(sharded["params"], params):
        torch.testing.assert_close(ours, alone.detach(), rtol=0, atol=0)


class FlatParameter(torch.Tensor):  # stands in for FSDP1's: the rule goes by type name
    pass


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fsdp1_flat_parameters_are_refused_with_the_ways_out(name):
    optimizer_class, keywords = OPTIMIZERS[name]
    flat = torch.randn(12).as_subclass(FlatParameter).requires_grad_()
    with pytest.raises(ValueError, match="flat parameter.*fully_shard.*ZeroRedundancyOptimizer"):
        optimizer_class([flat], **keywords)


def test_a_refused_group_added_later_leaves_the_optimizer_as_it_was():
    optimizer = LARS([torch.randn(3, 3, requires_grad=True)])
    flat = torch.randn(9).as_subclass(FlatParameter).requires_grad_()
    with pytest.raises(ValueError, match="flat parameter"):
        optimizer.add_param_group({"params": [flat]})
    assert len(optimizer.param_groups) == 1
