"""The README's two commands stay true: CI runs the same test command; every python block of the README and
the documentation site runs; the site builds strictly."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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

SNIPPET_TIMEOUT_S = 600
"""a guard against a hung snippet, not a speed test (tests never fail on time; the snippets take
seconds, the RL one about 20 s on 2 cores)"""


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
"""the README and the documentation site's pages: every python block in them runs"""


def python_blocks() -> list[tuple[str, str]]:
    """Every ```python block of the README and the site's pages, with ``file:line`` where its code starts."""
    blocks = []
    for page in PAGES:
        text = page.read_text()
        blocks += [(f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, m.start(1)) + 1}", m.group(1))
                   for m in re.finditer(r"```python\n(.*?)\n```", text, flags=re.S)]
    return blocks


def test_readme_and_site_have_python_blocks():
    assert len([b for b in python_blocks() if b[0].startswith("README.md")]) >= 2
    assert len(python_blocks()) >= 6


@pytest.mark.parametrize("where, block", python_blocks(), ids=[w for w, _ in python_blocks()])
def test_python_block_runs_as_written(where, block, tmp_path):
    """Each block runs on its own, as a reader would paste it: a fresh interpreter, the repository
    importable (PYTHONPATH) but the working directory a temporary one, so nothing lands in the repo."""
    env = {**ONE_THREAD, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=SNIPPET_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the python block at {where} did not finish within {SNIPPET_TIMEOUT_S} s")
    assert out.returncode == 0, f"the python block at {where} does not run as written:\n{out.stderr[-2000:]}"


def test_the_documentation_site_builds_strictly(tmp_path):
    """``mkdocs build --strict`` (MkDocs, Material, mkdocstrings: the dev extra): a broken link, a missing
    page or an API reference that does not resolve fails it."""
    pytest.importorskip("mkdocs", reason="the dev extra installs MkDocs")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=SNIPPET_TIMEOUT_S,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").read_text().count("SystemConfig") > 10


def test_readme_stays_short():
    """The README introduces and links; the documentation lives in docs/."""
    assert len(README.splitlines()) <= 200


def test_examples_run():
    for script in sorted((ROOT / "examples").glob("*.py")):
        out = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, (script, out.stderr)


def test_citation_and_changelog_name_the_package_version():
    """CITATION.cff's version and the CHANGELOG's newest released entry follow ``cfenv.__version__``
    (an ``Unreleased`` section may come first)."""
    from cfenv import __version__

    citation = re.search(r"^version:\s*(\S+)\s*$", (ROOT / "CITATION.cff").read_text(), re.MULTILINE)
    assert citation is not None and citation.group(1) == __version__
    newest = re.search(r"^## (?!Unreleased$)(\S+)", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert newest is not None and newest.group(1) == __version__
