"""A float64 reference of the binding arithmetic (shared/spec/algorithms.md), in numpy.

Written from the spec alone, one parameter at a time, independent of the package's torch
code, so that the tests compare two implementations rather than one with itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def norm(x: np.ndarray) -> float:
    return float(np.sqrt(np.sum(x.astype(np.float64) ** 2)))


def phi(t: int, lmbda: float, alpha: float, delay: int, floor: float) -> float:
    exponent = lmbda * (t - delay)
    if exponent > 700:
        return floor
    return 1.0 / (alpha + math.exp(exponent)) + floor


@dataclass
class ReferenceLARS:
    """LARS (scale = 1) and TVLARS (scale = phi(t)) for one parameter."""

    lr: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    eta: float = 1e-3
    nesterov: bool = False
    adapted: bool = True
    tv: bool = False
    lmbda: float = 1e-4
    alpha: float = 1.0
    delay_steps: int = 0
    min_scale: float = 0.0
    norm_clamp: float | None = None
    schedule_excluded: bool = True
    trust_clip: bool = False
    t: int = 0
    buffer: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def tvlars_official(cls, lr: float, lmbda: float, **kwargs) -> ReferenceLARS:
        """The authors' published TVLARS (``TVLARS.official``)."""
        return cls(
            lr=lr,
            tv=True,
            lmbda=lmbda,
            alpha=0.1,
            delay_steps=-1,
            min_scale=0.0,
            norm_clamp=10.0,
            schedule_excluded=False,
            **kwargs,
        )

    def step(self, w: np.ndarray, g: np.ndarray) -> np.ndarray:
        w = w.astype(np.float64)
        g = g.astype(np.float64)
        scale = (
            phi(self.t, self.lmbda, self.alpha, self.delay_steps, self.min_scale)
            if self.tv
            else 1.0
        )
        if self.adapted:
            g_decayed = g + self.weight_decay * w
            w_norm, g_norm = norm(w), norm(g_decayed)
            if self.norm_clamp is not None:
                w_norm, g_norm = min(w_norm, self.norm_clamp), min(g_norm, self.norm_clamp)
            trust = self.eta * scale * w_norm / g_norm if (w_norm > 0 and g_norm > 0) else 1.0
            if self.trust_clip:
                trust = min(trust / self.lr, 1.0) if self.lr > 0 else 1.0
            d = trust * g_decayed
        else:
            d = (scale if (self.tv and self.schedule_excluded) else 1.0) * g
        if self.momentum == 0:
            w = w - self.lr * d
        elif self.nesterov:
            if self.buffer is None:
                self.buffer = w.copy()
            y = w - self.lr * d
            w = y + self.momentum * (y - self.buffer)
            self.buffer = y
        else:
            if self.buffer is None:
                self.buffer = np.zeros_like(w)
            self.buffer = self.momentum * self.buffer + d
            w = w - self.lr * self.buffer
        self.t += 1
        return w


@dataclass
class ReferenceLAMB:
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-6
    weight_decay: float = 0.01
    bias_correction: bool = True
    weight_norm_clamp: tuple[float, float] | None = None
    adapted: bool = True
    t: int = 0
    m: np.ndarray | None = field(default=None, repr=False)
    v: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def official(cls, lr: float) -> ReferenceLAMB:
        """The authors' published LAMB (``LAMB.official``): every layer adapted."""
        return cls(
            lr=lr,
            weight_decay=5e-4,
            bias_correction=False,
            weight_norm_clamp=(0.0, 10.0),
            eps=1e-6,
            adapted=True,
        )

    def step(self, w: np.ndarray, g: np.ndarray) -> np.ndarray:
        w = w.astype(np.float64)
        g = g.astype(np.float64)
        if self.m is None:
            self.m, self.v = np.zeros_like(w), np.zeros_like(w)
        self.m = self.beta1 * self.m + (1 - self.beta1) * g
        self.v = self.beta2 * self.v + (1 - self.beta2) * g * g
        s = self.t + 1
        if self.bias_correction:
            mh, vh = self.m / (1 - self.beta1**s), self.v / (1 - self.beta2**s)
        else:
            mh, vh = self.m, self.v
        u = mh / (np.sqrt(vh) + self.eps)
        trust = 1.0
        if self.adapted:
            u = u + self.weight_decay * w
            r = norm(w)
            if self.weight_norm_clamp is not None:
                r = min(max(r, self.weight_norm_clamp[0]), self.weight_norm_clamp[1])
            u_norm = norm(u)
            trust = r / u_norm if (r > 0 and u_norm > 0) else 1.0
        self.t += 1
        return w - self.lr * trust * u


def clip_by_global_norm(grads: list[np.ndarray], max_norm: float) -> list[np.ndarray]:
    """LAMB's global gradient clipping: every g divided by max(G / c, 1), G the norm of all
    of them together."""
    total = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    divisor = max(total / max_norm, 1.0)
    return [g.astype(np.float64) / divisor for g in grads]
