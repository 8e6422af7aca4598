"""The lab stage: a PostgreSQL + RabbitMQ profile and a SLURM GPU computer, on the services `make lab` starts.

With ``LIFDIFF_LAB=require`` (what `make test` and CI set) services that are down fail the stage with
scripts/lab/status.sh's reasons; otherwise these tests skip, saying how to start the services.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECRETS = REPO / ".lab" / "secrets.env"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.lab)


def _read_secrets() -> dict[str, str]:
    values = {}
    for line in SECRETS.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


@dataclass
class Lab:
    """A profile on the lab services, with its own AIIDA_PATH, and helpers to drive it from outside."""

    profile: str
    env: dict
    secrets: dict
    root: Path

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert result.returncode == 0, (
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def verdi(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "verdi"), "-p", self.profile, *args, **kwargs)

    def lifdiff(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "aiida-lifdiff"), "-p", self.profile, *args, **kwargs)

    def python(self, code: str, timeout: float = 300):
        """Run ``code`` with the profile loaded; it must print one JSON document, which is returned."""
        script = f"import json\nfrom aiida import load_profile, orm\nload_profile({self.profile!r})\n{code}"
        return json.loads(self.run(str(BIN / "python"), "-c", script, timeout=timeout).stdout.strip().splitlines()[-1])

    def wait_terminated(self, pks: list[int], timeout: float) -> dict[int, list]:
        """Poll until every process in ``pks`` is terminated; ``{pk: [state, exit_status]}``."""
        deadline = time.monotonic() + timeout
        code = (
            f"pks = {pks!r}\n"
            "print(json.dumps({pk: [orm.load_node(pk).process_state.value, orm.load_node(pk).exit_status] "
            "for pk in pks}))"
        )
        while True:
            states = {int(k): v for k, v in self.python(code).items()}
            if all(state in ("finished", "excepted", "killed") for state, _ in states.values()):
                return states
            if time.monotonic() > deadline:
                pytest.fail(f"not finished after {timeout} s: {states}")
            time.sleep(5)


@pytest.fixture(scope="session")
def lab_services():
    status = subprocess.run(["bash", str(REPO / "scripts" / "lab" / "status.sh")], capture_output=True, text=True)
    if status.returncode != 0 or not SECRETS.is_file():
        message = f"lab services are not running (start them with `make lab`):\n{status.stdout}{status.stderr}"
        if os.environ.get("LIFDIFF_LAB") == "require":
            pytest.fail(message)
        pytest.skip(message)
    return _read_secrets()


@pytest.fixture(scope="session")
def lab(lab_services, tmp_path_factory):
    """A fresh profile (core.psql_dos + core.rabbitmq) in its own database, the `gpu` SLURM computer, a daemon."""
    secrets = lab_services
    root = tmp_path_factory.mktemp("lab")
    profile = f"lifdiff-lab-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, AIIDA_PATH=str(root), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("LIFDIFF_LAB", None)
    pg_env = dict(env, PGPASSWORD=secrets["LAB_PG_PASSWORD"])
    psql = [
        "psql", "-X", "-q", "-h", secrets["LAB_PG_HOST"], "-p", secrets["LAB_PG_PORT"],
        "-U", secrets["LAB_PG_USER"], "-d", "postgres", "-c",
    ]  # fmt: skip
    created = subprocess.run(
        psql + [f"CREATE DATABASE \"{profile}\" TEMPLATE template0 ENCODING 'UTF8' "
                "LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"],
        env=pg_env, capture_output=True, text=True,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    lab = Lab(profile=profile, env=env, secrets=secrets, root=root)
    try:
        # The password reaches verdi through its option here (a throw-away test database); docs/lab.md uses a
        # mode-600 --config file instead, which keeps it out of the shell history and the process list.
        lab.run(
            str(BIN / "verdi"), "profile", "setup", "core.psql_dos", "--non-interactive",
            "--profile-name", profile, "--email", "lab@lifdiff.test", "--first-name", "Lab",
            "--last-name", "Test", "--institution", "aiida-lifdiff", "--broker", "core.rabbitmq",
            "--database-hostname", secrets["LAB_PG_HOST"], "--database-port", secrets["LAB_PG_PORT"],
            "--database-username", secrets["LAB_PG_USER"], "--database-password", secrets["LAB_PG_PASSWORD"],
            "--database-name", profile, "--repository-uri", f"file://{root / 'repository'}",
        )  # fmt: skip
        # RabbitMQ 3.10 is fine once consumer_timeout is off (scripts/lab/start.sh does it); AiiDA warns anyway.
        lab.verdi("config", "set", "warnings.rabbitmq_version", "False")
        yield lab
    finally:
        lab.verdi("daemon", "stop", check=False, timeout=120)
        if os.environ.get("LIFDIFF_LAB_KEEP"):
            print(f"kept the lab profile: AIIDA_PATH={root} verdi -p {profile} ...")
        else:
            subprocess.run(
                psql + [f'DROP DATABASE IF EXISTS "{profile}" WITH (FORCE)'], env=pg_env, capture_output=True
            )
