"""The optimizer and LR schedule a run config asks for.

Parameters fall into two param groups: the adapted ones (``ndim > 1``: conv and linear
weights), and the excluded ones (biases, normalization), whose learning rate is
``excluded_lr_scale`` times the target. With LARS-type optimizers the excluded group
takes plain momentum SGD steps, so that one multiplier decides how fast biases and
batch-norm scales move at large batch: 1.0 is the authors' code, reference Barlow Twins
uses far less. The run records it.
"""

from __future__ import annotations

import torch
from torch import nn

from tvlars.optim import LAMB, LARS, TVLARS
from tvlars.schedules import ScheduleLR, constant, nowa_schedule, tv_schedule, wa_schedule
from tvlars.train.config import Plan, RunConfig


def param_groups(model: nn.Module, config: RunConfig, plan: Plan) -> list[dict]:
    adapted = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    excluded = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": adapted, "lr": plan.target_lr, "name": "adapted"}]
    if excluded:
        excluded_group = {
            "params": excluded,
            "lr": plan.target_lr * config.excluded_lr_scale,
            "name": "excluded",
        }
        if config.optimizer in ("sgd", "adamw"):
            excluded_group["weight_decay"] = 0.0  # as the layer-wise optimizers do
        groups.append(excluded_group)
    return groups


def build_optimizer(model: nn.Module, config: RunConfig, plan: Plan) -> torch.optim.Optimizer:
    groups = param_groups(model, config, plan)
    lr, wd = plan.target_lr, config.weight_decay
    if config.optimizer == "tvlars":
        if config.preset == "official":
            return TVLARS.official(
                groups, lr=lr, lmbda=plan.lmbda, weight_decay=wd, trust_clip=config.trust_clip
            )
        return TVLARS(
            groups,
            lr=lr,
            momentum=config.momentum,
            weight_decay=wd,
            lmbda=plan.lmbda,
            delay_steps=plan.delay_steps,
            min_scale=plan.min_scale,
            trust_clip=config.trust_clip,
        )
    if config.optimizer == "lars":
        return LARS(
            groups,
            lr=lr,
            momentum=config.momentum,
            weight_decay=wd,
            trust_clip=config.trust_clip,
        )
    if config.optimizer == "lamb":
        if config.preset == "official":
            return LAMB.official(groups, lr=lr, weight_decay=wd, max_grad_norm=config.max_grad_norm)
        return LAMB(groups, lr=lr, weight_decay=wd, max_grad_norm=config.max_grad_norm)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, config: RunConfig, plan: Plan) -> ScheduleLR:
    """Per-step LR multiplier: WA (warm-up + cosine to 1e-3), NOWA (polynomial), TVLARS's
    phi(t) for any optimizer, or constant."""
    if config.schedule == "warmup-cosine":
        schedule = wa_schedule(plan.total_steps, plan.warmup_steps)
    elif config.schedule == "poly":
        schedule = nowa_schedule(plan.total_steps)
    elif config.schedule == "tv":
        schedule = tv_schedule(plan.lmbda, delay=plan.delay_steps, floor=plan.min_scale)
    else:
        schedule = constant
    return ScheduleLR(optimizer, schedule)
