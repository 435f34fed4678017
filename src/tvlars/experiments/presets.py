"""Named sweeps: the paper's grids, its ablations, and their CPU-scale versions.

- ``paper-cifar10``, ``paper-tinyimagenet``: Table I's grid exactly (Section VI-A): batch
  512 to 16384 with the paper's three target LRs each, LARS and LAMB with warm-up and
  TVLARS, 100 epochs (warm-up 20, phi delayed by 10), weight decay 5e-4, momentum 0.9,
  Xavier Uniform init (Table I's caption; Section VI-A says Kaiming Uniform, the caption
  is the more specific statement), classification with lambda 1e-4 and Barlow Twins with
  lambda 1e-5 (1000 pre-training and 100 evaluation epochs). ResNet-18 on CIFAR-10,
  ResNet-34 on Tiny ImageNet. For GPUs and the data (``--data-dir``).
- ``ablation-lambda``, ``ablation-lr``, ``ablation-init``: Section VI-C (Figures 6-8) on
  the CPU-scale protocol; ``paper-ablation-*`` on the paper's.
- ``cpu``: the whole study on MNIST-1D in at most 30 minutes on 2 cores; ``quick``: a
  subset (batch 4096 and 16384, four methods, one seed) in at most 3 minutes.

The CPU-scale protocol: 62,500 generated MNIST-1D samples, split 80/20 by the loader into
50,000 training samples (CIFAR-10's count, so each batch size takes CIFAR-10's steps per
epoch: 97 at 512, 3 at 16384) and 12,500 test; the 1-D ResNet (``mnist1d-resnet``, ~7.5K
parameters; the BN-free CNN is erratic at these LRs); 15 epochs (warm-up 3, delay 1.5);
micro-batches of 4096; one thread per cell, two cells at once. The ``cpu`` preset (81 cells):
Table I's rows plus NOWA-LARS at every batch size (top LR of each set, one seed); three
seeds at 1024, 4096 and 16384 for the LARS comparisons; the excluded group's LR at eta =
1e-3 as well as 1 at 16384; Figure 6 at 1024 and 16384; Figures 7 and 8 at 16384.

At 15 instead of 100 epochs, the paper's literal per-step lambda hardly moves phi(t).
Cells marked "paper shape" set ``tv_decay`` K = lambda x (the paper's steps after the
delay at that batch size), so their phi(t) follows the curve the paper's run followed.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvlars.experiments.grid import SweepSpec
from tvlars.experiments.paper_table import LEARNING_RATES

PAPER_EPOCHS = 100
PAPER_DELAY_EPOCHS = 10
CIFAR10_TRAIN = 50_000
PAPER_METHODS = ("WA-LARS", "WA-LAMB", "TVLARS")
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
        f"Table I on {dataset}: 6 batch sizes x 3 LRs x 3 methods x 2 tasks, 100 epochs",
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

CPU_LAMBDA_BATCHES = (1024, 16384)
CPU_LAMBDAS = (1e-5, 1e-4, 1e-3, 1e-2)
# Ablations beyond Figure 6 run at the largest batch only, where the paper's effects are
# largest, to keep the cpu preset near 80 cells.
CPU_INIT_BATCHES = (16384,)
CPU_LR_BATCHES = (16384,)
CPU_SEED_BATCHES = (1024, 4096, 16384)
CPU_EXCLUDED_BATCHES = (16384,)
#: eta: the excluded group's LR as the trust ratio's coefficient would set it.
SMALL_EXCLUDED_LR_SCALE = 1e-3


def cpu_ablation_lambda() -> list[SweepSpec]:
    """Figure 6 at CPU scale: TVLARS with the paper's lambdas in paper shape."""
    batches = {b: (top_lr(b),) for b in CPU_LAMBDA_BATCHES}
    return _paper_shape_specs(
        "ablation-lambda", ("TVLARS",), batches, CPU_LAMBDAS, base=dict(CPU_BASE)
    )


def cpu_ablation_lr() -> list[SweepSpec]:
    """Figure 7 at CPU scale (and the LAMB-at-small-LR claim): every LR of two batch sizes."""
    return [
        SweepSpec(
            name="ablation-lr",
            methods=("WA-LARS", "WA-LAMB", "TVLARS"),
            batches={b: LEARNING_RATES[b] for b in CPU_LR_BATCHES},
            base=dict(CPU_BASE),
        )
    ]


def cpu_ablation_init() -> list[SweepSpec]:
    """Figure 8 at CPU scale: four inits at the two largest batch sizes."""
    return [
        SweepSpec(
            name="ablation-init",
            methods=("WA-LARS", "TVLARS"),
            batches={b: (top_lr(b),) for b in CPU_INIT_BATCHES},
            inits=ALL_INITS,
            base=dict(CPU_BASE),
        )
    ]


def quick_specs() -> list[SweepSpec]:
    return [
        SweepSpec(
            name="quick",
            methods=("WA-LARS", "NOWA-LARS", "WA-LAMB", "TVLARS"),
            batches={b: (top_lr(b),) for b in (4096, 16384)},
            base=dict(CPU_BASE),
        )
    ]


def cpu_specs() -> list[SweepSpec]:
    """The whole study at CPU scale (see the module docstring for the protocol)."""
    every_batch = {b: (top_lr(b),) for b in LEARNING_RATES}
    seeded = {b: (top_lr(b),) for b in CPU_SEED_BATCHES}
    excluded = {b: (top_lr(b),) for b in CPU_EXCLUDED_BATCHES}
    return [
        *quick_specs(),
        # Table I's rows (and NOWA-LARS) at every batch size, the top LR of each set.
        SweepSpec(
            name="table",
            methods=("WA-LARS", "NOWA-LARS", "WA-LAMB", "TVLARS"),
            batches=every_batch,
            base=dict(CPU_BASE),
        ),
        *_paper_shape_specs(
            "table-paper-shape", ("TVLARS",), every_batch, (1e-4,), base=dict(CPU_BASE)
        ),
        # Three seeds where the claims compare LARS variants.
        SweepSpec(
            name="seeds",
            methods=("WA-LARS", "NOWA-LARS", "TVLARS"),
            batches=seeded,
            seeds=(0, 1, 2),
            base=dict(CPU_BASE),
        ),
        *_paper_shape_specs(
            "seeds-paper-shape", ("TVLARS",), seeded, (1e-4,), seeds=(0, 1, 2), base=dict(CPU_BASE)
        ),
        # The excluded group's LR decides WA-LARS against TVLARS at batch 16384: both settings.
        SweepSpec(
            name="excluded-lr",
            methods=("WA-LARS", "TVLARS"),
            batches=excluded,
            seeds=(0, 1, 2),
            excluded_lr_scales=(SMALL_EXCLUDED_LR_SCALE,),
            base=dict(CPU_BASE),
        ),
        *_paper_shape_specs(
            "excluded-lr-paper-shape",
            ("TVLARS",),
            excluded,
            (1e-4,),
            seeds=(0, 1, 2),
            excluded_lr_scales=(SMALL_EXCLUDED_LR_SCALE,),
            base=dict(CPU_BASE),
        ),
        *cpu_ablation_lambda(),
        *cpu_ablation_lr(),
        *cpu_ablation_init(),
    ]


def _build() -> dict[str, Preset]:
    presets = [
        Preset(
            "quick",
            "CPU scale, batch 4096 and 16384, WA-LARS, NOWA-LARS, WA-LAMB, TVLARS, one seed",
            tuple(quick_specs()),
        ),
        Preset(
            "cpu",
            "the whole study on MNIST-1D: Table I's layout, 3 seeds for the LARS comparisons, "
            "both excluded-LR settings, lambda/LR/init ablations",
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
