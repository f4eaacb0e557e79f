"""The README's two commands stay true: CI runs the same test command, the snippets run."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)


def test_readme_has_setup_and_test_commands():
    blocks = bash_blocks()
    assert len(blocks) >= 2
    assert all(b.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0")
               for b in blocks[:2])


def test_ci_runs_the_readme_test_command():
    test_command = bash_blocks()[1].split("&&")[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in [line.strip() for line in ci if not line.startswith("#")]


ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
"""small snippets run faster single-threaded on a 2-core machine (no thread-pool contention)"""


def test_readme_python_snippets_run():
    for block in re.findall(r"```python\n(.*?)\n```", README, flags=re.S):
        subprocess.run([sys.executable, "-c", block], check=True, cwd=ROOT, capture_output=True, env=ONE_THREAD)


def test_examples_run():
    for script in sorted((ROOT / "examples").glob("*.py")):
        out = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, (script, out.stderr)
