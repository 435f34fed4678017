"""Training-step time of the MNIST-1D ResNet: channels-last (N, C, 1, L) against (N, C, L).

``MNIST1DResNet`` computes every layer on (N, C, 1, L) channels-last tensors
(``tvlars.models.signal_layers``). Its layers also accept plain (N, C, L) signals, which
take PyTorch's 1-D kernels; this script times one forward and backward pass (cross-entropy
on random signals) both ways, on the same weights, interleaved round by round, and prints
the medians and the median of the per-round ratios. Usage::

    python benchmarks/signal_layout.py [--batch 4096] [--rounds 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from torch.nn import functional as F

from tvlars.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = build_model("mnist1d-resnet", 10, generator=torch.Generator().manual_seed(0))
    signals = torch.randn(args.batch, 40)
    labels = torch.randint(0, 10, (args.batch,))

    def channels_last_step() -> None:
        F.cross_entropy(model(signals), labels).backward()

    def plain_step() -> None:
        # The same layers on (N, C, L): each takes its 3-D (nn.Conv1d / BatchNorm1d) route.
        x = torch.relu(model.bn1(model.conv1(signals.unsqueeze(1))))
        logits = model.fc(model.blocks(x).mean(dim=-1))
        F.cross_entropy(logits, labels).backward()

    contenders = {"(N, C, 1, L) channels-last": channels_last_step, "(N, C, L)": plain_step}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for step in contenders.values():  # warm-up
        step()
    order = list(contenders)
    for _ in range(args.rounds):
        random.shuffle(order)
        for name in order:
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)

    print(
        f"MNIST-1D ResNet, batch {args.batch}, {args.threads} thread(s), "
        f"{args.rounds} interleaved rounds: forward + backward"
    )
    for name, values in times.items():
        print(f"  {name:28s} median {1e3 * statistics.median(values):8.1f} ms")
    ratios = [
        plain / fast for plain, fast in zip(times["(N, C, L)"], times["(N, C, 1, L) channels-last"])
    ]
    print(f"  (N, C, L) / channels-last: {statistics.median(ratios):.2f}x (median of rounds)")


if __name__ == "__main__":
    main()
