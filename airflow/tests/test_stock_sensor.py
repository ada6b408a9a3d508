"""
The stock HttpSensor on GET /v1/jobs/{id}/wait, no response_check, deferrable and
in poke mode side by side (DAG gantry_sensor_probe): it waits while the job is
queued or running, succeeds when it succeeds, and fails promptly when it fails,
is cancelled, times out, or does not exist. See airflow/SENSOR.md.

Each sensor gets its own job, held running until the test has seen that sensor
meet it unfinished (the deferred trigger's 404 retry line, the poke's logged
job-pending answer); only then does the test let the job end, so the ending is
met by a *waiting* sensor in each mode.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from conftest import TEST_IMAGE

BOTH = {"wait_deferrable", "wait_poke"}


def _states(run) -> dict[str, str]:
    return {t: s["state"] for t, s in run.tis.items()}


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


def _release_when_met(deferred: HeldJob, poked: HeldJob, cancel: bool = False):
    def on_line(line: str) -> None:
        if f"/v1/jobs/{deferred.id}/wait failed" in line:  # the trigger got a 404 and sleeps
            deferred.release(cancel)
        if "job-pending" in line and poked.id in line:  # the poke got a 404 (logged body)
            poked.release(cancel)

    return on_line


def test_waits_while_running_then_succeeds(airflow, gantry, mount_root):
    a = HeldJob(gantry, mount_root, "a", "echo fine")
    b = HeldJob(gantry, mount_root, "b", "echo fine")
    run = airflow.dags_test(
        "gantry_sensor_probe", {"job_id": a.id, "poke_job_id": b.id}, on_line=_release_when_met(a, b)
    )
    assert a.released.is_set() and b.released.is_set(), run.describe()
    assert run.state == "success", run.describe()
    assert _states(run) == {t: "success" for t in BOTH}
    assert "Pausing task as DEFERRED" in run.output
    assert gantry.job(a.id)["state"] == gantry.job(b.id)["state"] == "succeeded"


@pytest.mark.parametrize("state", ["failed", "cancelled"])
def test_fails_when_the_job_it_waits_for_fails_or_is_cancelled(airflow, gantry, mount_root, state):
    a = HeldJob(gantry, mount_root, "a", "exit 2")
    b = HeldJob(gantry, mount_root, "b", "exit 2")
    run = airflow.dags_test(
        "gantry_sensor_probe",
        {"job_id": a.id, "poke_job_id": b.id},
        timeout=150,
        on_line=_release_when_met(a, b, cancel=state == "cancelled"),
    )
    assert a.released.is_set() and b.released.is_set(), run.describe()
    assert run.state == "failed", run.describe()
    assert _states(run) == {t: "failed" for t in BOTH}, run.describe()
    for job in (a, b):
        assert gantry.wait_state(job.id, (state,))["state"] == state
        assert f"gantry:jobs/{job.id}?state={state}" in run.output, run.describe()
    # aiohttp's wording (deferred trigger) and requests' (poke), not the sensor timeout.
    assert "NonHttpUrlRedirectClientError" in run.output and "No connection adapters" in run.output
    assert "Sensor has timed out" not in run.output
    assert run.seconds < 150


def test_fails_for_a_job_that_timed_out(airflow, gantry):
    job = gantry.submit({"image": TEST_IMAGE, "command": ["sleep", "300"], "timeoutSeconds": 2})
    gantry.wait_state(job["id"], ("timed_out",), timeout=90)
    run = airflow.dags_test("gantry_sensor_probe", {"job_id": job["id"]}, timeout=150)
    assert run.state == "failed", run.describe()
    assert _states(run) == {t: "failed" for t in BOTH}
    assert f"gantry:jobs/{job['id']}?state=timed_out" in run.output


def test_fails_at_once_for_a_job_that_does_not_exist(airflow):
    t0 = time.monotonic()
    run = airflow.dags_test("gantry_sensor_probe", {"job_id": "00000000-0000-0000-0000-000000000000"})
    assert run.state == "failed", run.describe()
    assert _states(run) == {t: "failed" for t in BOTH}
    assert "state=not_found" in run.output, run.describe()
    assert "Pausing task as DEFERRED" not in run.output  # failed on the first poke, never deferred
    assert time.monotonic() - t0 < 120
