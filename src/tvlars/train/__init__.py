"""Training runs: configuration, optimizer set-up, the loop, run folders, torchrun."""

from tvlars.train.config import Plan, RunConfig
from tvlars.train.loop import EXIT_DIVERGED, evaluate, train

__all__ = ["EXIT_DIVERGED", "Plan", "RunConfig", "evaluate", "train"]
