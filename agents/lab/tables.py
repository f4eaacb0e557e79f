"""Measured tables of the README and the docs, regenerated from their results JSON (never typed).

A generated table sits between two markers naming the command that prints it::

    <!-- table: python benchmarks/scalable_study.py --table docs/results/scalable.json -->
    ... the command's output ...
    <!-- /table -->

``python -m agents.lab.tables`` reruns every such command (from the repository root, with this Python)
and rewrites the blocks; ``--check`` rewrites nothing and exits 1 naming each block whose text differs
from its command's output (the test suite runs it, so a committed table cannot drift from its JSON). The
commands only read JSON: they are ``python benchmarks/<script>.py ... --table ...`` or ``python -m agents.lab...``
lines, nothing else runs.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/*.md")
"""the files searched for generated tables (globs under the repository root)"""
BLOCK = re.compile(r"(<!-- table: (?P<command>[^\n]*?) -->\n)(?P<body>(?:(?!<!-- /?table)[\s\S])*?)\n?<!-- /table -->")
"""a generated block; its body never spans another marker (an empty block is one marker line after the other)"""
ALLOWED = re.compile(r"^python (benchmarks/[\w/]+\.py|-m agents\.lab\.[\w.]+) [^;&|`$<>]*--table [^;&|`$<>]*$")
"""a block's command: one of our scripts printing a table (no shell: the line is split and run directly)"""


@dataclass(frozen=True)
class Block:
    """One generated table: the file, its command and the text between the markers."""

    path: Path
    command: str
    body: str


def blocks(path: Path) -> list[Block]:
    """The generated tables of one Markdown file."""
    return [Block(path, m["command"], m["body"]) for m in BLOCK.finditer(path.read_text())]


def documents(root: Path = ROOT) -> list[Path]:
    """The Markdown files that may hold generated tables."""
    return sorted({p for pattern in DOCUMENTS for p in root.glob(pattern)})


def render(command: str, root: Path = ROOT) -> str:
    """The command's output, stripped; ``ValueError`` for a command outside :data:`ALLOWED` or one that fails."""
    if not ALLOWED.match(command):
        raise ValueError(f"not a table command this tool runs: {command!r} (python benchmarks/X.py ... --table ...)")
    argv = shlex.split(command)
    done = subprocess.run([sys.executable, *argv[1:]], cwd=root, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise ValueError(f"{command!r} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return done.stdout.strip()


def refresh(path: Path, root: Path = ROOT, check: bool = False) -> list[str]:
    """Rewrite ``path``'s generated tables (or, with ``check``, only compare them); returns the commands
    whose block differed."""
    text = path.read_text()
    stale: list[str] = []

    def replace(match: re.Match) -> str:
        fresh = render(match["command"], root)
        if fresh != match["body"].strip():
            stale.append(match["command"])
        return f"{match.group(1)}{fresh}\n<!-- /table -->"

    new = BLOCK.sub(replace, text)
    if stale and not check:
        path.write_text(new)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.lab.tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="Markdown files (default: README.md and docs/*.md)")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if a table differs from its JSON")
    args = parser.parse_args(argv)
    files = args.files or documents()
    failed = 0
    for path in files:
        try:
            stale = refresh(path, check=args.check)
        except ValueError as err:
            print(f"{path}: {err}", file=sys.stderr)
            failed += 1
            continue
        for command in stale:
            print(f"{path}: {'stale' if args.check else 'regenerated'}: {command}")
        failed += len(stale) if args.check else 0
    count = sum(len(blocks(p)) for p in files)
    print(f"{count} generated tables in {len(files)} files; {failed} {'stale or failing' if args.check else 'failing'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
