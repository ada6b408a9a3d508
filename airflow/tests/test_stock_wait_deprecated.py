"""
What the deprecated GET /v1/jobs/{id}/wait does with the stock HttpSensor and no
response_check (DAG gantry_sensor_probe: deferrable and poke mode side by side):
the evidence behind its deprecation in airflow/SENSOR.md. Under the default
connection it fails a failed job only through an HTTP client's exception (a
trigger crash when deferred); with `allow_redirects: false` it succeeds on a
failed job, with `check_response: false` on a running one.
"""

from __future__ import annotations

import os

from conftest import TEST_IMAGE, HeldJob, connection_json

PROBE = "gantry_sensor_probe"
BOTH = {"wait_deferrable", "wait_poke"}


def _states(run) -> dict[str, str]:
    return {t: s["state"] for t, s in run.tis.items()}


def test_default_connection_fails_a_failed_job_through_a_client_exception(airflow, gantry, mount_root):
    a = HeldJob(gantry, mount_root, "a", "exit 2")
    b = HeldJob(gantry, mount_root, "b", "exit 2")

    def on_line(line: str) -> None:
        if f"/v1/jobs/{a.id}/wait failed" in line:  # the deferred trigger got a 404 and sleeps
            a.release()
        if "job-pending" in line and b.id in line:  # the poke got a 404 (logged body)
            b.release()

    run = airflow.dags_test(PROBE, {"job_id": a.id, "poke_job_id": b.id}, timeout=150, on_line=on_line)
    assert a.released.is_set() and b.released.is_set(), run.describe()
    assert run.state == "failed", run.describe()
    assert _states(run) == {t: "failed" for t in BOTH}, run.describe()
    # Not an Airflow error naming the job's reason: aiohttp's exception out of the
    # trigger, requests' out of the poke, each naming only the redirect target.
    assert "NonHttpUrlRedirectClientError" in run.output and "No connection adapters" in run.output
    for job in (a, b):
        assert f"gantry:jobs/{job.id}?state=failed&exitCode=2" in run.output


def test_allow_redirects_off_succeeds_on_a_failed_job(airflow, gantry):
    job = gantry.submit({"image": TEST_IMAGE, "command": ["sh", "-c", "exit 3"]})
    assert gantry.wait_state(job["id"], ("failed",))["exitCode"] == 3
    conn = connection_json(gantry.url, os.environ["GANTRY_TOKEN"], allow_redirects=False)
    run = airflow.dags_test(PROBE, {"job_id": job["id"]}, timeout=150, connection=conn)
    # The 303 is not followed, and a 3xx is no HTTP error to either client.
    assert run.state == "success", run.describe()
    assert _states(run) == {t: "success" for t in BOTH}, run.describe()


def test_check_response_off_succeeds_on_a_running_job(airflow, gantry):
    job = gantry.submit({"image": TEST_IMAGE, "command": ["sleep", "300"]})
    gantry.wait_state(job["id"], ("running",))
    conn = connection_json(gantry.url, os.environ["GANTRY_TOKEN"], check_response=False)
    try:
        run = airflow.dags_test(PROBE, {"job_id": job["id"]}, timeout=150, connection=conn)
        # The 404 "pending" answer raises nothing, so the first poke counts as success.
        assert run.state == "success", run.describe()
        assert _states(run) == {t: "success" for t in BOTH}, run.describe()
        assert gantry.job(job["id"])["state"] == "running"
    finally:
        gantry.post(f"v1/jobs/{job['id']}/cancel")
