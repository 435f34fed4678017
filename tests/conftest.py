"""Test-wide fixtures."""

from __future__ import annotations

import pytest

from tvlars.optim import _multi_tensor


@pytest.fixture(autouse=True)
def every_tensor_its_own_chunk(request, monkeypatch):
    """For tests run on harness.PATHS["foreach-chunked"]: one tensor per multi-tensor chunk."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("path") == "foreach-chunked":
        monkeypatch.setattr(_multi_tensor, "CPU_CHUNK_NUMEL", 1)
