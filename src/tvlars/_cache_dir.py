"""Where tvlars keeps what it builds once per machine: generated and decoded datasets
(:mod:`tvlars.data.cache`) and the native optimizer kernels (:mod:`tvlars.optim._native`)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "TVLARS_CACHE"


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$TVLARS_CACHE``, else ``~/.cache/tvlars``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from_env = os.environ.get(CACHE_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "tvlars"
