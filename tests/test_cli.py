"""The ``tvlars`` command line as a whole."""

from __future__ import annotations

import pytest

from tvlars.cli import COMMAND_MODULES, main


@pytest.mark.parametrize("command", [name.rsplit(".", 1)[1] for name in COMMAND_MODULES])
def test_every_subcommand_prints_its_help(command, capsys):
    # argparse formats help lazily: a stray '%' in a help string fails only here.
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: tvlars {command}" in capsys.readouterr().out


def test_tvlars_without_a_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_sweep_dry_run_shows_the_lr_the_optimizer_gets_where_it_differs_from_the_column(capsys):
    assert main(["sweep", "quick", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    eta = [line for line in lines if "WA-LAMB·η" in line]
    lars = [line for line in lines if " WA-LARS " in line]
    assert eta and all("lr=19 (optimizer 0.019)" in line for line in eta)
    assert lars and not any("optimizer" in line for line in lars)
