"""
The stock HttpSensor on GET /v1/jobs/{id}/wait, no response_check, deferrable and
poke mode side by side (DAG gantry_sensor_probe): it waits while the job is
queued or running, succeeds when it succeeds, and fails promptly when it fails,
is cancelled, times out, or does not exist. See airflow/SENSOR.md.
"""

from __future__ import annotations

import threading
import time

import pytest

from conftest import TEST_IMAGE

BOTH = {"wait_deferrable", "wait_poke"}


def _states(run) -> dict[str, str]:
    return {t: s["state"] for t, s in run.tis.items()}


def test_waits_while_running_then_succeeds(airflow, gantry):
    job = gantry.submit({"image": TEST_IMAGE, "command": ["sh", "-c", "sleep 12; echo fine"]})
    run = airflow.dags_test("gantry_sensor_probe", {"job_id": job["id"]})
    assert run.state == "success", run.describe()
    assert _states(run) == {t: "success" for t in BOTH}
    # Both sensors met the job while it was still running and kept waiting (404 = job-pending).
    assert run.output.count("job-pending") >= 2 or "Pausing task as DEFERRED" in run.output, run.describe()
    assert gantry.job(job["id"])["state"] == "succeeded"


@pytest.mark.parametrize(
    "how, state",
    [("exit", "failed"), ("cancel", "cancelled"), ("timeout", "timed_out")],
)
def test_fails_once_the_job_did_not_succeed(airflow, gantry, how, state):
    spec = {"image": TEST_IMAGE, "command": ["sh", "-c", "sleep 10; exit 2" if how == "exit" else "sleep 300"]}
    if how == "timeout":
        spec["timeoutSeconds"] = 10
    job = gantry.submit(spec)
    if how == "cancel":
        threading.Timer(10, lambda: gantry.post(f"v1/jobs/{job['id']}/cancel")).start()
    run = airflow.dags_test("gantry_sensor_probe", {"job_id": job["id"]}, timeout=150)
    assert run.state == "failed", run.describe()
    assert _states(run) == {t: "failed" for t in BOTH}, run.describe()
    assert gantry.job(job["id"])["state"] == state
    # Both failed on the 303 to gantry:… (requests and aiohttp wording), not on the sensor timeout.
    assert f"gantry:jobs/{job['id']}?state={state}" in run.output
    assert "NonHttpUrlRedirectClientError" in run.output or "No connection adapters" in run.output
    assert "Sensor has timed out" not in run.output
    assert run.seconds < 150


def test_fails_at_once_for_a_job_that_does_not_exist(airflow):
    t0 = time.monotonic()
    run = airflow.dags_test("gantry_sensor_probe", {"job_id": "00000000-0000-0000-0000-000000000000"})
    assert run.state == "failed", run.describe()
    assert _states(run) == {t: "failed" for t in BOTH}
    assert "state=not_found" in run.output, run.describe()
    assert "Pausing task as DEFERRED" not in run.output  # failed on the first poke, never deferred
    assert time.monotonic() - t0 < 120
