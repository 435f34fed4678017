"""Named sweeps: the paper's grids, its ablations, and their CPU-scale versions.

- ``paper-cifar10``, ``paper-tinyimagenet``: Table I's grid exactly (Section VI-A): batch
  512 to 16384 with the paper's three target LRs each, LARS and both LAMBs with warm-up and
  TVLARS, 100 epochs (warm-up 20, phi delayed by 10), weight decay 5e-4, momentum 0.9,
  Xavier Uniform init (Table I's caption; Section VI-A says Kaiming Uniform, the caption
  is the more specific statement), classification with lambda 1e-4 and Barlow Twins with
  lambda 1e-5 (1000 pre-training and 100 evaluation epochs). ResNet-18 on CIFAR-10,
  ResNet-34 on Tiny ImageNet. For GPUs and the data (``--data-dir``).
- ``ablation-lambda``, ``ablation-lr``, ``ablation-init``: Section VI-C (Figures 6-8) on
  the CPU-scale protocol; ``paper-ablation-*`` on the paper's.
- ``cpu``: the whole study on MNIST-1D in about 32 minutes on 2 cores; ``quick``: the
  paper's question at the largest batch (16384, LR 19): WA-LARS, both LAMBs and TVLARS,
  three paired seeds, 12 epochs, in about 3 minutes.

Table I's LAMB is run twice: ``WA-LAMB``, the authors' arithmetic (``LAMB.official``) at
the paper's LR, and ``WA-LAMB·η``, the standard LAMB at the LR x eta (1e-3), the fair
baseline (:data:`~tvlars.experiments.grid.LAMB_ETA`).

The CPU-scale protocol: 62,500 generated MNIST-1D samples, split 80/20 by the loader into
50,000 training samples (CIFAR-10's count, so each batch size takes CIFAR-10's steps per
epoch: 97 at 512, 3 at 16384) and 12,500 test; the 1-D ResNet (``mnist1d-resnet``, ~7.5K
parameters; the BN-free CNN is erratic at these LRs); 15 epochs (warm-up 3, delay 1.5);
micro-batches of 4096; one thread per cell, two cells at once. The ``cpu`` preset (129
cells): Table I's rows (both LAMBs) at every batch size (top LR, seed 0); three paired
seeds for every method (and NOWA-LARS) at 1024, 4096 and 16384, for the excluded group's LR
at eta = 1e-3 at 16384, for the ends of Figure 6's lambdas (1024 and 16384), for every LR
at 16384 (Figure 7) and for two of Figure 8's inits; Barlow Twins (10 pre-training, 20
probe epochs) with WA-LARS, both LAMBs and TVLARS at 1024, 4096 and 16384, three seeds for
WA-LARS and TVLARS at 4096.

At 15 instead of 100 epochs, the paper's literal per-step lambda hardly moves phi(t).
Cells marked "paper shape" set ``tv_decay`` K = lambda x (the paper's steps after the
delay at that batch size), so their phi(t) follows the curve the paper's run followed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tvlars.experiments.grid import SweepSpec
from tvlars.experiments.paper_table import LEARNING_RATES

PAPER_EPOCHS = 100
PAPER_DELAY_EPOCHS = 10
CIFAR10_TRAIN = 50_000
PAPER_METHODS = ("WA-LARS", "WA-LAMB", "WA-LAMB·η", "TVLARS")
ALL_INITS = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")

PAPER_BASE = {"epochs": PAPER_EPOCHS, "weight_decay": 5e-4, "momentum": 0.9}
# Barlow Twins: 1000 pre-training and 100 evaluation epochs; its lambda (1e-5) comes from
# SweepSpec.lambdas["barlow-twins"].
PAPER_PRETRAIN = {"pretrain_epochs": 1000, "eval_epochs": 100}
CPU_BASE = {
    "num_samples": 62_500,
    "model": "mnist1d-resnet",
    "epochs": 15,
    "micro_batch": 4096,
    "weight_decay": 5e-4,
    "momentum": 0.9,
}
CPU_THREADS_PER_CELL = 1
CPU_JOBS = 2


@dataclass(frozen=True)
class Preset:
    """A named sweep: its grids, and whether its cells sit on the paper's own datasets
    (then the report prints Table I's numbers beside ours)."""

    name: str
    description: str
    specs: tuple[SweepSpec, ...]
    mirrors_paper: bool = False


def top_lr(batch_size: int) -> float:
    """The largest of the paper's target LRs for this batch size."""
    return LEARNING_RATES[batch_size][-1]


def paper_shape_decay(batch_size: int, lmbda: float) -> float:
    """The tv_decay K that gives phi(t) the shape the paper's CIFAR-10 run had at this batch
    size: K = lambda x (steps after the delay in 100 epochs of 50,000 images)."""
    per_epoch = CIFAR10_TRAIN // batch_size
    return lmbda * per_epoch * (PAPER_EPOCHS - PAPER_DELAY_EPOCHS)


def _paper_shape_specs(
    name: str, methods, batches: dict[int, tuple[float, ...]], lmbdas, **axes
) -> list[SweepSpec]:
    """TVLARS-type cells whose tv_decay mimics each paper lambda, one spec per batch size
    and lambda (K depends on both)."""
    return [
        SweepSpec(
            name=f"{name}-b{batch}-lambda{lmbda:g}",
            methods=tuple(methods),
            batches={batch: lrs},
            lambdas={"classification": ()},
            tv_decays=(paper_shape_decay(batch, lmbda),),
            labels={"paper_lambda": lmbda},
            **axes,
        )
        for batch, lrs in batches.items()
        for lmbda in lmbdas
    ]


# --- the paper's scale ---------------------------------------------------------------------


def paper_table(dataset: str) -> Preset:
    spec = SweepSpec(
        name=f"paper-{dataset}",
        methods=PAPER_METHODS,
        batches=dict(LEARNING_RATES),
        tasks=("classification", "barlow-twins"),
        datasets=(dataset,),
        base=dict(PAPER_BASE),
        pretrain=dict(PAPER_PRETRAIN),
    )
    return Preset(
        f"paper-{dataset}",
        f"Table I on {dataset}: 6 batch sizes x 3 LRs x 4 methods (WA-LAMB, WA-LAMB·η) "
        "x 2 tasks, 100 epochs",
        (spec,),
        mirrors_paper=True,
    )


def paper_ablation(kind: str) -> Preset:
    big = {b: LEARNING_RATES[b] for b in (8192, 16384)}
    if kind == "lambda":
        specs = (
            SweepSpec(
                name="paper-ablation-lambda",
                methods=("TVLARS",),
                batches={b: (top_lr(b),) for b in (1024, 16384)},
                datasets=("cifar10",),
                lambdas={"classification": (1e-2, 5e-3, 1e-3, 1e-4, 1e-5, 1e-6)},
                base=dict(PAPER_BASE),
            ),
        )
        text = "Figure 6: TVLARS's lambda at batch 1024 and 16384 on CIFAR-10"
    elif kind == "lr":
        specs = (
            SweepSpec(
                name="paper-ablation-lr",
                methods=("TVLARS",),
                batches=dict(LEARNING_RATES),
                datasets=("cifar10",),
                base=dict(PAPER_BASE),
            ),
        )
        text = "Figure 7: TVLARS (lambda 1e-4) at every batch size and LR on CIFAR-10"
    else:
        specs = (
            SweepSpec(
                name="paper-ablation-init",
                methods=("WA-LARS", "TVLARS"),
                batches={b: (lrs[-1],) for b, lrs in big.items()},
                datasets=("cifar10", "tinyimagenet"),
                inits=ALL_INITS,
                base=dict(PAPER_BASE),
            ),
        )
        text = "Figure 8: four weight inits at batch 8192 and 16384, CIFAR-10 and Tiny ImageNet"
    return Preset(f"paper-ablation-{kind}", text, specs, mirrors_paper=True)


# --- the CPU scale -------------------------------------------------------------------------

CPU_SEEDS = (0, 1, 2)
#: Where the claims compare methods: every method, three paired seeds.
CPU_SEED_BATCHES = (1024, 4096, 16384)
CPU_EXCLUDED_BATCHES = (16384,)
CPU_LAMBDA_BATCHES = (1024, 16384)
#: Figure 6's lambdas; claim 5 compares the two ends (three seeds), the middle ones draw
#: the figure (one seed).
CPU_LAMBDAS = (1e-5, 1e-4, 1e-3, 1e-2)
CPU_LAMBDA_ENDS = (1e-5, 1e-2)
# Ablations beyond Figure 6 run at the largest batch only, where the paper's effects are
# largest.
CPU_INIT_BATCHES = (16384,)
#: Inits with three seeds (claim 6 compares them); the other two draw Figure 8 (one seed).
CPU_SEEDED_INITS = ("xavier_uniform", "kaiming_normal")
CPU_LR_BATCHES = (16384,)
#: eta: the excluded group's LR as the trust ratio's coefficient would set it.
SMALL_EXCLUDED_LR_SCALE = 1e-3
CPU_METHODS = ("WA-LARS", "NOWA-LARS", "WA-LAMB", "WA-LAMB·η", "TVLARS")
#: Barlow Twins at CPU scale: Table I's right half on MNIST-1D (linear probe on the frozen
#: backbone beside a random backbone's probe). Biases and norms at 0.024 x the LR (the
#: reference Barlow Twins ratio; see :mod:`tvlars.pretrain.config`).
CPU_BT_BATCHES = (1024, 4096, 16384)
CPU_BT_SEEDED_BATCH = 4096
CPU_BT_METHODS = ("WA-LARS", "WA-LAMB", "WA-LAMB·η", "TVLARS")
CPU_BT_PRETRAIN = {"pretrain_epochs": 10, "eval_epochs": 20, "knn_every": 0}
CPU_BT_EXCLUDED_LR_SCALE = 0.024


def cpu_ablation_lambda(seeds: tuple[int, ...] = (0,)) -> list[SweepSpec]:
    """Figure 6 at CPU scale: TVLARS with the paper's lambdas in paper shape; with
    ``seeds``, the two ends of the lambda range get them (claim 5's comparison)."""
    batches = {b: (top_lr(b),) for b in CPU_LAMBDA_BATCHES}
    specs = _paper_shape_specs(
        "ablation-lambda", ("TVLARS",), batches, CPU_LAMBDAS, base=dict(CPU_BASE)
    )
    if seeds != (0,):
        specs += _paper_shape_specs(
            "ablation-lambda-seeds",
            ("TVLARS",),
            batches,
            CPU_LAMBDA_ENDS,
            seeds=seeds,
            base=dict(CPU_BASE),
        )
    return specs


def cpu_ablation_lr(seeds: tuple[int, ...] = (0,)) -> list[SweepSpec]:
    """Figure 7 at CPU scale (and LAMB at the smaller LRs, claim 2): every LR of the
    largest batch size."""
    return [
        SweepSpec(
            name="ablation-lr",
            methods=("WA-LARS", "WA-LAMB", "WA-LAMB·η", "TVLARS"),
            batches={b: LEARNING_RATES[b] for b in CPU_LR_BATCHES},
            seeds=seeds,
            base=dict(CPU_BASE),
        )
    ]


def cpu_ablation_init(seeds: tuple[int, ...] = (0,)) -> list[SweepSpec]:
    """Figure 8 at CPU scale: four inits at the largest batch size; with ``seeds``, two of
    them get them (claim 6's comparison)."""
    specs = [
        SweepSpec(
            name="ablation-init",
            methods=("WA-LARS", "TVLARS"),
            batches={b: (top_lr(b),) for b in CPU_INIT_BATCHES},
            inits=ALL_INITS,
            base=dict(CPU_BASE),
        )
    ]
    if seeds != (0,):
        specs.append(
            dataclasses.replace(
                specs[0], name="ablation-init-seeds", inits=CPU_SEEDED_INITS, seeds=seeds
            )
        )
    return specs


#: ``quick``: the largest batch at its largest LR, the four arms of Table I's question,
#: three paired seeds, 12 epochs: 12 cells in about 4 minutes on 2 cores.
QUICK_BATCH = 16384
QUICK_METHODS = ("WA-LARS", "WA-LAMB", "WA-LAMB·η", "TVLARS")
QUICK_SEEDS = (0, 1, 2)
QUICK_EPOCHS = 12


def quick_specs() -> list[SweepSpec]:
    return [
        SweepSpec(
            name="quick",
            methods=QUICK_METHODS,
            batches={QUICK_BATCH: (top_lr(QUICK_BATCH),)},
            seeds=QUICK_SEEDS,
            base={**CPU_BASE, "epochs": QUICK_EPOCHS},
        )
    ]


def cpu_barlow_twins() -> list[SweepSpec]:
    """Table I's right half at CPU scale: Barlow Twins with each method at three batch
    sizes (TVLARS with the paper's lambda 1e-5), three paired seeds for WA-LARS and
    TVLARS (claim 1's comparison) at one of them."""
    spec = SweepSpec(
        name="barlow-twins",
        methods=CPU_BT_METHODS,
        batches={b: (top_lr(b),) for b in CPU_BT_BATCHES},
        tasks=("barlow-twins",),
        excluded_lr_scales=(CPU_BT_EXCLUDED_LR_SCALE,),
        base=dict(CPU_BASE),
        pretrain=dict(CPU_BT_PRETRAIN),
    )
    seeded = dataclasses.replace(
        spec,
        name="barlow-twins-seeds",
        methods=("WA-LARS", "TVLARS"),
        batches={CPU_BT_SEEDED_BATCH: (top_lr(CPU_BT_SEEDED_BATCH),)},
        seeds=CPU_SEEDS,
    )
    return [spec, seeded]


def cpu_specs() -> list[SweepSpec]:
    """The whole study at CPU scale (see the module docstring for the protocol)."""
    every_batch = {b: (top_lr(b),) for b in LEARNING_RATES}
    seeded = {b: (top_lr(b),) for b in CPU_SEED_BATCHES}
    return [
        # Table I's rows (both LAMBs) at every batch size, top LR, seed 0.
        SweepSpec(
            name="table",
            methods=tuple(m for m in CPU_METHODS if m != "NOWA-LARS"),
            batches=every_batch,
            base=dict(CPU_BASE),
        ),
        # Three paired seeds where the claims compare methods.
        SweepSpec(
            name="seeds", methods=CPU_METHODS, batches=seeded, seeds=CPU_SEEDS, base=dict(CPU_BASE)
        ),
        # The excluded group's LR decides WA-LARS against TVLARS at batch 16384: both settings.
        SweepSpec(
            name="excluded-lr",
            methods=("WA-LARS", "TVLARS"),
            batches={b: (top_lr(b),) for b in CPU_EXCLUDED_BATCHES},
            seeds=CPU_SEEDS,
            excluded_lr_scales=(SMALL_EXCLUDED_LR_SCALE,),
            base=dict(CPU_BASE),
        ),
        *cpu_ablation_lambda(CPU_SEEDS),
        *cpu_ablation_lr(CPU_SEEDS),
        *cpu_ablation_init(CPU_SEEDS),
        *cpu_barlow_twins(),
    ]


def _build() -> dict[str, Preset]:
    presets = [
        Preset(
            "quick",
            "CPU scale, batch 16384 at lr 19, WA-LARS, WA-LAMB, WA-LAMB·η, TVLARS, "
            "3 paired seeds, 12 epochs",
            tuple(quick_specs()),
        ),
        Preset(
            "cpu",
            "the whole study on MNIST-1D: Table I's layout with both LAMBs, 3 paired seeds "
            "where the claims compare, both excluded-LR settings, lambda/LR/init ablations, "
            "Barlow Twins at 3 batch sizes",
            tuple(cpu_specs()),
        ),
        Preset("ablation-lambda", "Figure 6 at CPU scale", tuple(cpu_ablation_lambda())),
        Preset("ablation-lr", "Figure 7 at CPU scale", tuple(cpu_ablation_lr())),
        Preset("ablation-init", "Figure 8 at CPU scale", tuple(cpu_ablation_init())),
        paper_table("cifar10"),
        paper_table("tinyimagenet"),
        paper_ablation("lambda"),
        paper_ablation("lr"),
        paper_ablation("init"),
    ]
    return {preset.name: preset for preset in presets}


PRESETS: dict[str, Preset] = _build()


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
