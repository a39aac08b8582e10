"""envs.fileio: atomic writes (the old file survives a failed write) and stale-temp cleanup by owner."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from envs.fileio import atomic_path, atomic_write_text, remove_stale_temps, temp_path


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    atomic_write_text(target, "a,b\n")
    atomic_write_text(target, "a,b\n1,2\n")
    assert target.read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path):
    target = tmp_path / "model.zip"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        assert tmp.name == f"model.tmp-{os.getpid()}.zip"  # the suffix stays last, for writers that check it
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"]


def test_stale_temps_of_this_process_and_of_dead_writers_go_live_writers_temps_stay(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited
    mine = temp_path(tmp_path / "replay.pkl")
    theirs = temp_path(tmp_path / "checkpoint.zip", pid=os.getppid())  # a live process
    gone = temp_path(tmp_path / "checkpoint.zip", pid=dead_pid)
    other = tmp_path / "notes.txt"
    for path in (mine, theirs, gone, other):
        path.write_text("x")
    removed = remove_stale_temps(tmp_path)
    assert sorted(removed) == sorted([mine, gone])
    assert theirs.exists() and other.exists() and not mine.exists() and not gone.exists()


def test_envs_imports_nothing_of_aime_agent():
    code = "import sys, envs, envs.dataset, envs.collect; print([m for m in sys.modules if m.startswith('aime_agent')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
