"""The harness and the user's files: a symlinked --out, a user's own results/latest, malformed
snapshots archives, fading at the floor of its range, a full disk and an early Ctrl-C -- each one
line and exit status 2 (130 for Ctrl-C), nothing of the user's lost."""

from __future__ import annotations

import io
import json
import os
import pickle
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import evaluate
from tests.conftest import interrupted_while_starting

ROOT = Path(__file__).resolve().parents[1]
GRID = ["--agents", "master-ap,greedy", "--sizes", "6,1,4,2", "--snapshots", "6", "--chunk-size", "3", "--no-progress"]


def refused(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1, err
    return err[0]


def test_overwrite_through_a_symlink_never_replaces_a_users_own_results(tmp_path, capsys):
    mine = tmp_path / "my-folder"
    mine.mkdir()
    (mine / "results.csv").write_text("my own table")
    link = tmp_path / "link"
    link.symlink_to(mine, target_is_directory=True)
    line = refused([*GRID, "--out", str(link), "--overwrite"], capsys)
    assert "results.csv" in line
    assert (mine / "results.csv").read_text() == "my own table"


def test_overwrite_replaces_what_the_harness_wrote(tmp_path):
    out = tmp_path / "out"
    assert evaluate.main([*GRID, "--out", str(out)]) == 0
    assert evaluate.main([*GRID, "--out", str(out), "--seed", "4", "--overwrite"]) == 0
    assert json.loads((out / ".cfpilot-run.json").read_text())["settings"]["seed"] == 4


def test_a_users_own_latest_link_is_left_with_a_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    elsewhere = tmp_path / "thesis-results"
    elsewhere.mkdir()
    (tmp_path / "results" / "latest").symlink_to(elsewhere, target_is_directory=True)
    assert evaluate.main(GRID) == 0
    assert os.readlink(tmp_path / "results" / "latest") == str(elsewhere)
    assert "latest" in capsys.readouterr().out


def npz_with_member(path: Path, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("beta.npy", data)
    path.with_suffix(".json").write_text(json.dumps({"L": 1, "tau_p": 2}))
    return path


def huge_header() -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (1_000_000, 1_000_000, 4)})
    return buffer.getvalue() + b"\0" * 64


@pytest.mark.parametrize("member, needle", [(pickle.dumps({"beta": 1}), "beta"), (huge_header(), "beta")])
def test_a_malformed_archive_member_is_one_line(tmp_path, capsys, member, needle):
    path = npz_with_member(tmp_path / "f.npz", member)
    line = refused(["--agents", "master-ap", "--snapshots-file", str(path), "--out", str(tmp_path / "o")], capsys)
    assert needle in line and "f.npz" in line


def test_fading_at_the_floor_of_its_range_is_evaluated(tmp_path):
    path = tmp_path / "tiny.npz"
    np.savez(path, beta=np.full((4, 6, 4), 1e-300))
    path.with_suffix(".json").write_text(json.dumps({"L": 1, "tau_p": 2}))
    out = tmp_path / "out"
    assert evaluate.main(["--agents", "master-ap,greedy", "--snapshots-file", str(path), "--no-progress",
                          "--out", str(out)]) == 0
    assert (out / "results.json").exists()


def test_a_full_disk_is_one_line_and_resume_finishes(tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, "evaluate.py", *GRID, "--out", str(out)]

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    full = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, preexec_fn=small_files, timeout=300)
    err = full.stderr.strip().splitlines()
    assert full.returncode == 2 and len(err) == 1 and "--resume" in err[0], full.stderr
    assert not (out / ".cfpilot.lock").exists()
    again = subprocess.run([*argv, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr


def test_ctrl_c_while_starting_is_one_line(tmp_path):
    returncode, err = interrupted_while_starting("evaluate.py", *GRID, "--out", str(tmp_path / "o"))
    assert returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_changed_snapshots_file_names_only_what_changed(tmp_path, capsys):
    path = tmp_path / "f.npz"
    rng = np.random.default_rng(1)
    np.savez(path, beta=rng.uniform(1e-9, 1e-5, (6, 6, 4)))
    path.with_suffix(".json").write_text(json.dumps({"L": 1, "tau_p": 2}))
    argv = ["--agents", "master-ap", "--snapshots-file", str(path), "--no-progress", "--chunk-size", "3",
            "--out", str(tmp_path / "out")]
    assert evaluate.main(argv) == 0
    np.savez(path, beta=rng.uniform(1e-9, 1e-5, (6, 6, 4)))
    line = refused([*argv, "--resume"], capsys)
    assert "snapshots_sha256" in line
    for spurious in ("resume", "sizes", "fail_tasks", "task_timeout"):
        assert spurious not in line.split("differ")[0].split("(")[-1]
