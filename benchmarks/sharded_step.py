"""Step time on DTensor parameters (FSDP2's layout), against plain tensors and torch's SGD.

Starts ``--processes`` processes (gloo on CPU, the way torchrun would; NCCL with
``--device cuda``, one GPU per process). Each holds every layer of a ResNet/ViT-shaped
parameter list sharded by rows (``Shard(0)``, as ``fully_shard`` lays parameters out),
and times, interleaved in random order, one optimizer step of:

- tvlars' LARS, TVLARS and LAMB on those DTensors, on the default path (on CPU the C++
  kernels' split steps on the local shards, elsewhere the multi-tensor step; one
  all-reduce for the layer norms either way) and on the multi-tensor path;
- the same optimizers on plain tensors of the local shards' shapes, on the same two
  paths: the same arithmetic without the collective or the DTensor bookkeeping, so the
  ratio to them ("x local, same path") is what sharding costs;
- torch's SGD (momentum, weight decay) on the DTensors, looped and foreach, as an FSDP2
  user would run it: the step that every layer-wise optimizer is measured against.

Prints rank 0's medians (each process's step includes waiting for the others at the
collective) and ratios. The processes share the machine's cores (one thread each).

    python benchmarks/sharded_step.py [--models resnet18 resnet50] [--processes 2]
        [--rounds 21] [--warmup 3] [--device cpu] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _machine import synchronize
from _shapes import MODELS

from tvlars import LAMB, LARS, TVLARS

OURS = {"LARS": LARS, "TVLARS": TVLARS, "LAMB": LAMB}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def contenders(shapes, mesh, device: torch.device, rank: int, processes: int):
    """name -> optimizer whose parameters all have gradients."""
    from torch.distributed.tensor import Shard, distribute_tensor

    generator = torch.Generator().manual_seed(1234)  # the same whole tensors on every process
    wholes = [torch.randn(shape, generator=generator) for _, shape in shapes]

    def sharded():
        params = []
        for whole in wholes:
            param = torch.nn.Parameter(distribute_tensor(whole.to(device), mesh, [Shard(0)]))
            param.grad = distribute_tensor(torch.randn_like(whole).to(device), mesh, [Shard(0)])
            params.append(param)
        return params

    def local_plain():
        params = []
        for whole in wholes:
            local = whole.tensor_split(processes, dim=0)[rank].clone().to(device)
            param = torch.nn.Parameter(local)
            param.grad = torch.randn_like(local)
            params.append(param)
        return params

    made = {}
    for name, make in OURS.items():
        made[f"{name} on DTensors, default"] = make(sharded())
        made[f"{name} on DTensors, foreach"] = make(sharded(), foreach=True)
        made[f"{name} on local tensors, default"] = make(local_plain())
        made[f"{name} on local tensors, foreach"] = make(local_plain(), foreach=True)
    made["torch SGD loop on DTensors"] = torch.optim.SGD(
        sharded(), lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=False
    )
    made["torch SGD foreach on DTensors"] = torch.optim.SGD(
        sharded(), lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=True
    )
    return made


def worker(rank: int, port: int, args: argparse.Namespace) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(args.processes),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)  # as torchrun sets OMP_NUM_THREADS: the processes share the cores
    device = torch.device(args.device if args.device == "cpu" else f"cuda:{rank}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("gloo" if device.type == "cpu" else "nccl")
    try:
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh(device.type, (args.processes,))
        for model in args.models:
            shapes = MODELS[model]()
            optimizers = contenders(shapes, mesh, device, rank, args.processes)
            names = list(optimizers)
            times = {name: [] for name in names}
            rng = random.Random(args.seed)  # the same order on every process
            for round_index in range(args.warmup + args.rounds):
                for name in rng.sample(names, len(names)):
                    synchronize(device)
                    dist.barrier()  # every process starts the step together
                    start = time.perf_counter()
                    optimizers[name].step()
                    synchronize(device)
                    if round_index >= args.warmup:
                        times[name].append(time.perf_counter() - start)
            if rank == 0:
                report(model, shapes, times, args)
    finally:
        dist.destroy_process_group()


def report(model: str, shapes, times: dict[str, list[float]], args) -> None:
    medians = {name: 1e3 * statistics.median(values) for name, values in times.items()}
    sgd = medians["torch SGD loop on DTensors"]
    print(
        f"\n== {model}: {len(shapes)} tensors, each split by rows over {args.processes} "
        f"processes ({args.device}); rank 0, median of {args.rounds} steps =="
    )
    print(f"{'contender':36s} {'median ms':>10s} {'x SGD loop':>11s} {'x local, same path':>19s}")
    for name, median in medians.items():
        local = medians.get(name.replace("on DTensors", "on local tensors"))
        versus_local = f"{median / local:.2f}" if "on DTensors," in name and local else ""
        print(f"{name:36s} {median:10.2f} {median / sgd:11.2f} {versus_local:>19s}".rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18"], choices=sorted(MODELS))
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not dist.is_available():
        raise SystemExit("this torch was built without torch.distributed")
    mp.spawn(worker, args=(free_port(), args), nprocs=args.processes, join=True)


if __name__ == "__main__":
    main()
