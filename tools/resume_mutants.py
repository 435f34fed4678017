"""Print the names of mutmut's mutants of ``tvlars.train.driver._drive`` (the epoch driver
both tasks share) that change its resume block, one a line: the lines from ``checkpoint =
folder.load_checkpoint(...)`` to the
``resuming ...`` log line. Used by tools/mutation.sh loop-resume, from its work folder (mutmut
reads its setup.cfg there); the mutants are made in memory, as ``mutmut run`` makes them.

    python tools/resume_mutants.py src/tvlars/train/driver.py
"""

from __future__ import annotations

import ast
import difflib
import sys
from pathlib import Path

FUNCTION = "_drive"
PREFIX = f"x_{FUNCTION}__mutmut_"
FIRST, LAST = "checkpoint = folder.load_checkpoint(", 'log(f"resuming'


def function_sources(loop_py: Path) -> dict[str, list[str]]:
    from mutmut.mutation.file_mutation import mutate_file_contents

    text = mutate_file_contents(str(loop_py), loop_py.read_text()).code
    tree = ast.parse(text)
    return {
        node.name: ast.get_source_segment(text, node).splitlines()
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith(PREFIX)
    }


def resume_block(lines: list[str]) -> range:
    first = next(i for i, line in enumerate(lines) if FIRST in line)
    last = next(i for i, line in enumerate(lines) if LAST in line)
    return range(first, last + 1)


def changed_lines(original: list[str], mutant: list[str]) -> set[int]:
    """Indexes into ``original`` of the lines the mutant replaces or deletes (the line
    before an insertion)."""
    changed: set[int] = set()
    matcher = difflib.SequenceMatcher(a=original[1:], b=mutant[1:], autojunk=False)
    for tag, a0, a1, _, _ in matcher.get_opcodes():
        if tag != "equal":
            changed.update(range(a0 + 1, max(a1, a0 + 1) + 1))
    return changed


def main(driver_py: Path) -> None:
    sources = function_sources(driver_py)
    original = sources.pop(PREFIX + "orig")
    block = set(resume_block(original))
    for name, lines in sorted(sources.items(), key=lambda item: int(item[0].rsplit("_", 1)[1])):
        if changed_lines(original, lines) & block:
            print(f"tvlars.train.driver.{name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
