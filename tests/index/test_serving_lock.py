"""One serving process per collections folder: shared inside a process, refused to another one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from arcsearch.index.serving_lock import LOCK_FILE, serving_lock
from tests.bundles import REPO

TRY_LOCK = ("import sys; from arcsearch.index.serving_lock import serving_lock\n"
            "with serving_lock(sys.argv[1]): print('held')")


def other_process(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(folder)], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(REPO)})


def test_another_process_is_refused_with_the_holders_pid_until_the_lock_is_released(tmp_path: Path) -> None:
    folder = tmp_path / "collections"
    with serving_lock(folder), serving_lock(folder):  # two apps of one process share it
        refused = other_process(folder)
        assert refused.returncode != 0 and "FolderInUseError" in refused.stderr
        assert str(folder) in refused.stderr and f"pid {os.getpid()}" in refused.stderr
        assert (folder / LOCK_FILE).is_file()
    assert other_process(folder).stdout.strip() == "held"


def test_the_lock_is_held_until_the_last_user_in_the_process_leaves(tmp_path: Path) -> None:
    with serving_lock(tmp_path):
        with serving_lock(tmp_path):
            pass
        assert other_process(tmp_path).returncode != 0
    assert other_process(tmp_path).returncode == 0

