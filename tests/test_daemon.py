"""A study submitted with the CLI to a real AiiDA daemon on the ZeroMQ broker, as a user would."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.daemon, pytest.mark.lammps]

TINY_STUDY = Path(__file__).parent / "data" / "tiny_study.yaml"
BIN = Path(sys.executable).parent
PROFILE = "lifdiff-daemon-test"


def command(env: dict, *args: str, timeout: float = 180) -> str:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def process_state(env: dict, pk: int) -> tuple[str, int | None]:
    script = (
        f"from aiida import load_profile, orm; load_profile({PROFILE!r}); n = orm.load_node({pk}); "
        "print(n.process_state.value if n.process_state else 'none', n.exit_status)"
    )
    state, exit_status = command(env, str(BIN / "python"), "-c", script).split()
    return state, None if exit_status == "None" else int(exit_status)


def test_study_submitted_to_the_daemon_finishes(tmp_path):
    env = dict(os.environ, AIIDA_PATH=str(tmp_path), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    command(env, str(BIN / "verdi"), "presto", "--profile-name", PROFILE, "--use-zeromq")
    command(env, str(BIN / "aiida-lifdiff"), "-p", PROFILE, "setup", "localhost")
    command(env, str(BIN / "verdi"), "-p", PROFILE, "daemon", "start", "1")
    try:
        output = command(env, str(BIN / "aiida-lifdiff"), "-p", PROFILE, "submit", str(TINY_STUDY))
        pk = int(re.search(r"DiffusionWorkChain<(\d+)>", output).group(1))
        deadline = time.monotonic() + 900
        state, exit_status = process_state(env, pk)
        while state not in ("finished", "excepted", "killed") and time.monotonic() < deadline:
            time.sleep(5)
            state, exit_status = process_state(env, pk)
        report = command(env, str(BIN / "verdi"), "-p", PROFILE, "process", "report", str(pk))
        assert state == "finished" and exit_status == 0, f"state {state}, exit {exit_status}\n{report}"

        rows = json.loads(command(env, str(BIN / "aiida-lifdiff"), "-p", PROFILE, "results", "--format", "json"))
        assert len(rows) == 1
        row = rows[0]
        assert row["pk"] == pk and row["status"] == "ok"
        assert math.isfinite(row["Ea_eV"]) and row["Ea_err_eV"] > 0
    finally:
        subprocess.run([str(BIN / "verdi"), "-p", PROFILE, "daemon", "stop"], env=env, capture_output=True)
        shutil.rmtree(tmp_path / ".aiida" / "scratch", ignore_errors=True)
