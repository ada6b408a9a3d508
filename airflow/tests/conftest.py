"""
Fixtures for the Airflow tests: a live Gantry (GANTRY_URL, GANTRY_TOKEN) and a
throw-away Airflow (AIRFLOW_HOME in a temp dir, SQLite, AIRFLOW_CONN_GANTRY as a
JSON connection). Every DAG run is a real `airflow dags test` in a subprocess.

Environment:
  GANTRY_URL, GANTRY_TOKEN   required: the Gantry under test and a token for it
  GANTRY_TEST_MOUNT_ROOT     a host directory inside Gantry's GANTRY_MOUNT_ALLOWLIST
                             (batch_inference tests mount folders under it)
  GANTRY_TEST_IMAGE          job image for CI (default local/busybox:latest)
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

AIRFLOW_DIR = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DAG_SOURCES = [AIRFLOW_DIR / "dags", AIRFLOW_DIR / "provider" / "example_dags", AIRFLOW_DIR / "tests" / "dags"]
TEST_IMAGE = os.environ.get("GANTRY_TEST_IMAGE", "local/busybox:latest")


class Gantry:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kw) -> requests.Response:
        return self.session.get(f"{self.url}/{path.lstrip('/')}", timeout=30, **kw)

    def post(self, path: str, body: dict | None = None) -> requests.Response:
        return self.session.post(f"{self.url}/{path.lstrip('/')}", json=body, timeout=30)

    def submit(self, spec: dict) -> dict:
        r = self.post("v1/jobs", spec)
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, job_id: str) -> dict:
        r = self.get(f"v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_state(self, job_id: str, states: tuple[str, ...], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in states:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
            time.sleep(0.3)

    def jobs_of_run(self, dag_id: str, run_id: str) -> list[dict]:
        r = self.get("v1/jobs", params={"label": f"airflow.run_id={run_id}", "limit": 500})
        assert r.status_code == 200, r.text
        return [j for j in r.json()["items"] if j["labels"].get("airflow.dag_id") == dag_id]

    def gpu_count(self) -> int:
        r = self.get("v1/gpus")
        return len(r.json().get("items", [])) if r.status_code == 200 else 0


class HeldJob:
    """A job that runs until released: then it runs `ending` (or is cancelled)."""

    def __init__(self, gantry, root: Path, name: str, ending: str):
        self.gantry = gantry
        self.sig = root / name
        self.sig.mkdir()
        self.sig.chmod(0o777)
        self.job = gantry.submit(
            {
                "image": TEST_IMAGE,
                "command": ["sh", "-c", f"while [ ! -e /sig/go ]; do sleep 0.2; done; {ending}"],
                "mounts": [{"source": str(self.sig), "target": "/sig", "readOnly": True}],
            }
        )
        self.id = self.job["id"]
        self.released = threading.Event()

    def release(self, cancel: bool = False) -> None:
        if self.released.is_set():
            return
        self.released.set()
        if cancel:
            threading.Thread(target=self.gantry.post, args=(f"v1/jobs/{self.id}/cancel",)).start()
        else:
            (self.sig / "go").touch()


@dataclass
class DagRun:
    dag_id: str
    run_id: str
    state: str
    returncode: int
    output: str
    seconds: float
    tis: dict[str, dict] = field(default_factory=dict)  # task_id -> {state, try_number}
    xcom: dict[tuple[str, str], object] = field(default_factory=dict)  # (task_id, key) -> value
    reschedules: dict[str, int] = field(default_factory=dict)  # task_id -> times a reschedule-mode sensor gave way

    def describe(self) -> str:
        tail = "\n".join(self.output.splitlines()[-80:])
        polls = self.output.count("/wait failed")
        return (
            f"{self.dag_id} {self.run_id}: {self.state} after {self.seconds:.0f} s, tasks {self.tis}, "
            f"{polls} failed /wait requests logged by the deferred sensor\n--- last lines of output ---\n{tail}"
        )


class Airflow:
    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(VENV_BIN / "airflow"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cli_python(self, code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Python code run in this Airflow's venv and environment (its metadata database), beside a running dags test."""
        return subprocess.run(
            [str(VENV_BIN / "python"), "-c", code, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def dags_test(
        self,
        dag_id: str,
        conf: dict | None = None,
        timeout: float = 240,
        on_line: Callable[[str], None] | None = None,
        connection: str | None = None,
    ) -> DagRun:
        """
        `airflow dags test` in a subprocess; ``on_line`` sees each output line as it comes.
        ``connection`` (see connection_json) replaces the `gantry` connection for this run only.
        """
        db = self.home / "airflow.db"
        before = self._last_run_pk(db, dag_id)
        t0 = time.monotonic()
        args = ["dags", "test", dag_id]
        if conf is not None:
            args += ["-c", json.dumps(conf)]
        proc = subprocess.Popen(
            [str(VENV_BIN / "airflow"), *args],
            env=self.env if connection is None else {**self.env, "AIRFLOW_CONN_GANTRY": connection},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        # A hung run (e.g. a deferred sensor that never ends) is a finding, not a crash of the test.
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            proc.kill()

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if on_line is not None:
                    on_line(line)
            returncode = proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        output = "".join(lines)
        if killed.is_set():
            returncode = -9
            output += f"\n[airflow tests] `airflow dags test {dag_id}` killed after {timeout:.0f} s\n"
        seconds = time.monotonic() - t0
        with sqlite3.connect(db) as con:
            row = con.execute(
                "SELECT id, run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
            assert row and row[0] != before, f"no new run of {dag_id}:\n{output[-5000:]}"
            state = row[2] if returncode != -9 else f"hung ({row[2]} when killed after {timeout:.0f} s)"
            run = DagRun(dag_id, row[1], state, returncode, output, seconds)
            for task_id, state, try_number in con.execute(
                "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?",
                (dag_id, run.run_id),
            ):
                run.tis[task_id] = {"state": state, "try_number": try_number}
            for task_id, key, value in con.execute(
                "SELECT task_id, key, value FROM xcom WHERE dag_id = ? AND run_id = ?", (dag_id, run.run_id)
            ):
                run.xcom[(task_id, key)] = json.loads(value) if isinstance(value, (str, bytes)) else value
            for task_id, count in con.execute(
                "SELECT ti.task_id, count(*) FROM task_reschedule tr JOIN task_instance ti ON ti.id = tr.ti_id"
                " WHERE ti.dag_id = ? AND ti.run_id = ? GROUP BY ti.task_id",
                (dag_id, run.run_id),
            ):
                run.reschedules[task_id] = count
        return run

    @staticmethod
    def _last_run_pk(db: Path, dag_id: str) -> int | None:
        with sqlite3.connect(db) as con:
            row = con.execute("SELECT max(id) FROM dag_run WHERE dag_id = ?", (dag_id,)).fetchone()
            return row[0] if row else None


@pytest.fixture(scope="session")
def gantry() -> Gantry:
    url, token = os.environ.get("GANTRY_URL"), os.environ.get("GANTRY_TOKEN")
    if not url or not token:
        pytest.fail("GANTRY_URL and GANTRY_TOKEN must point at a running Gantry (scripts/airflow-test.sh starts one)")
    g = Gantry(url, token)
    r = g.get("healthz")
    assert r.status_code == 200, f"Gantry at {url} is not healthy: {r.status_code} {r.text}"
    r = g.get("v1/jobs", params={"limit": 1})
    assert r.status_code == 200, f"GANTRY_TOKEN is refused: {r.status_code} {r.text}"
    return g


@pytest.fixture(scope="session")
def gpus(gantry: Gantry) -> int:
    """GPUs to ask for in the DAGs' gpu_count param: 1 when Gantry has any (real or static), else 0."""
    return 1 if gantry.gpu_count() > 0 else 0


def connection_json(url: str, token: str, **options) -> str:
    """
    The `gantry` HTTP connection as AIRFLOW_CONN_* JSON. ``options`` go into its
    extra next to the token (the hook's own keys: allow_redirects, check_response).
    A ``url`` with a path becomes the host as a whole, the one way to give the
    connection a base path.
    """
    parsed = urllib.parse.urlsplit(url)
    extra = {"Authorization": f"Bearer {token}", **options}
    if parsed.path.strip("/"):
        return json.dumps({"conn_type": "http", "host": url, "extra": extra})
    conn = {"conn_type": "http", "host": parsed.hostname, "schema": parsed.scheme, "extra": extra}
    if parsed.port:
        conn["port"] = parsed.port
    return json.dumps(conn)


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory, gantry: Gantry) -> Airflow:
    home = tmp_path_factory.mktemp("airflow_home")
    dags = home / "dags"
    dags.mkdir()
    for src in DAG_SOURCES:
        for f in src.glob("*.py"):
            shutil.copy(f, dags / f.name)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AIRFLOW")
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_GANTRY": connection_json(gantry.url, os.environ["GANTRY_TOKEN"]),
            "GANTRY_SENSOR_POKE_INTERVAL": "1",
            "NO_PROXY": "*",
        }
    )
    af = Airflow(home, env)
    proc = af.cli("db", "migrate")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return af


@pytest.fixture()
def mount_root(tmp_path: Path) -> Path:
    root = os.environ.get("GANTRY_TEST_MOUNT_ROOT")
    if not root:
        pytest.skip("GANTRY_TEST_MOUNT_ROOT is not set (a folder inside Gantry's GANTRY_MOUNT_ALLOWLIST)")
    d = Path(root) / f"t{os.getpid()}-{time.time_ns()}"
    d.mkdir(parents=True)
    os.chmod(d, 0o777)
    return d
