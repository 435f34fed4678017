"""plot_schedules: the schedules figure as a library call (Figures 1 and 5)."""

from __future__ import annotations

import pytest

from tvlars.schedule_plot import plot_schedules

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plot_schedules_writes_a_png_where_asked(tmp_path):
    target = tmp_path / "figures" / "schedules.png"
    written = plot_schedules(target, total_steps=200, steps_per_epoch=20, lmbdas=[1e-2, 1e-3])
    assert written == target
    assert target.read_bytes().startswith(PNG_SIGNATURE)


def test_plot_schedules_refuses_a_warmup_as_long_as_the_run(tmp_path):
    with pytest.raises(ValueError, match="warm"):
        plot_schedules(tmp_path / "x.png", total_steps=100, steps_per_epoch=10, warmup_steps=100)


def test_plot_schedules_needs_a_lambda(tmp_path):
    with pytest.raises(ValueError, match="lambda"):
        plot_schedules(tmp_path / "x.png", total_steps=100, steps_per_epoch=10, lmbdas=[])
