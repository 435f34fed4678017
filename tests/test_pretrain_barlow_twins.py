"""The Barlow Twins loss: its definition, the invariances it must have, and exactness over
the batch of several processes."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from processes import free_port
from torch import nn

from tvlars.pretrain.barlow_twins import barlow_twins_loss, cross_correlation
from tvlars.pretrain.projector import BarlowTwinsNetwork, build_projector, parse_projector


def embeddings(n: int = 12, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=generator, dtype=torch.float64)
    z2 = z1 + 0.5 * torch.randn(n, d, generator=generator, dtype=torch.float64)
    return z1, z2


def direct_loss(z1: torch.Tensor, z2: torch.Tensor, bt_lambda: float, eps: float) -> float:
    """The paper's definition, written out with loops over the batch and the dimensions."""
    n, d = z1.shape

    def normalized(z, i):
        column = [float(z[b, i]) for b in range(n)]
        mean = sum(column) / n
        variance = sum((value - mean) ** 2 for value in column) / n
        return [(value - mean) / (variance + eps) ** 0.5 for value in column]

    zhat1 = [normalized(z1, i) for i in range(d)]
    zhat2 = [normalized(z2, j) for j in range(d)]
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(zhat1[i][b] * zhat2[j][b] for b in range(n)) / n
            loss += (1 - c) ** 2 if i == j else bt_lambda * c**2
    return loss


def test_the_loss_is_the_papers_definition_written_out():
    z1, z2 = embeddings()
    for bt_lambda in (0.0051, 0.5):
        expected = direct_loss(z1, z2, bt_lambda, eps=1e-5)
        actual = barlow_twins_loss(z1, z2, bt_lambda)
        assert actual.item() == pytest.approx(expected, rel=1e-12)


def test_identical_decorrelated_views_give_almost_zero_loss():
    # Orthonormal centred columns: the cross-correlation is the identity.
    z = torch.randn(64, 8, dtype=torch.float64)
    q, _ = torch.linalg.qr(z - z.mean(dim=0))
    assert barlow_twins_loss(q, q, eps=0.0).item() < 1e-20


def test_permuting_the_samples_alike_in_both_views_leaves_the_loss_unchanged():
    z1, z2 = embeddings()
    order = torch.randperm(len(z1), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(barlow_twins_loss(z1[order], z2[order]), barlow_twins_loss(z1, z2))


def test_swapping_the_two_views_leaves_the_loss_unchanged():
    z1, z2 = embeddings()
    torch.testing.assert_close(barlow_twins_loss(z2, z1), barlow_twins_loss(z1, z2))
    # C becomes its transpose: the diagonal and the off-diagonal sums stay.
    torch.testing.assert_close(cross_correlation(z2, z1), cross_correlation(z1, z2).T)


def test_scaling_or_shifting_an_embedding_dimension_leaves_the_loss_unchanged():
    z1, z2 = embeddings()
    scale = torch.tensor([3.0, 0.5, 10.0, 1.0, 7.0], dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.0, 5.0, 0.3], dtype=torch.float64)
    # Only the eps under the square root sees the scale: relative effect ~ eps / variance.
    torch.testing.assert_close(
        barlow_twins_loss(z1 * scale + shift, z2), barlow_twins_loss(z1, z2), rtol=1e-4, atol=0
    )


def test_half_precision_embeddings_are_correlated_in_float32():
    z1, z2 = embeddings()
    loss = barlow_twins_loss(z1.to(torch.bfloat16), z2.to(torch.bfloat16))
    assert loss.dtype == torch.float32


def test_the_projector_stacks_linear_batch_norm_relu_blocks_and_a_final_linear():
    projector = build_projector(32, "64-64-16")
    kinds = [type(layer) for layer in projector]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear]
    assert projector[-1].out_features == 16 and projector[0].in_features == 32
    assert parse_projector("2048-2048-4096") == (2048, 2048, 4096)
    with pytest.raises(ValueError, match="projector"):
        parse_projector("2048x4096")


# --- two processes -----------------------------------------------------------------------

BATCH, FEATURES = 16, 6


def _network_and_views():
    torch.manual_seed(0)
    # No batch norm before the loss: its own batch normalization is the one made exact.
    network = BarlowTwinsNetwork(nn.Linear(FEATURES, 8), nn.Linear(8, 5, bias=False))
    generator = torch.Generator().manual_seed(1)
    x1 = torch.randn(BATCH, FEATURES, generator=generator)
    x2 = x1 + 0.3 * torch.randn(BATCH, FEATURES, generator=generator)
    return network, x1, x2


def _worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        _ddp_step(rank, out)
    finally:
        # DDP and its reducer are gone by now: freeing a reducer after its process group
        # was destroyed runs gloo's destructor under the GIL, which can deadlock.
        dist.destroy_process_group()


def _ddp_step(rank: int, out: str) -> None:
    network, x1, x2 = _network_and_views()
    ddp = nn.parallel.DistributedDataParallel(network)
    half = slice(rank * BATCH // 2, (rank + 1) * BATCH // 2)
    z1, z2 = ddp(x1[half], x2[half])
    loss = barlow_twins_loss(z1, z2)
    loss.backward()
    grads = {name: p.grad for name, p in network.named_parameters()}
    torch.save({"loss": loss.detach(), "grads": grads}, f"{out}/rank{rank}.pt")


def test_two_gloo_processes_get_the_one_process_gradient_of_the_combined_batch(tmp_path):
    network, x1, x2 = _network_and_views()
    loss = barlow_twins_loss(*network(x1, x2))
    loss.backward()
    mp.start_processes(
        _worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        # The same loss on every process: that of the combined batch.
        torch.testing.assert_close(result["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
        for name, param in network.named_parameters():
            torch.testing.assert_close(
                result["grads"][name], param.grad, rtol=1e-5, atol=1e-6, msg=name
            )
