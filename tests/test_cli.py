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
