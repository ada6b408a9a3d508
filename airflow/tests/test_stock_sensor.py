"""
The example DAGs' sensor pattern (stock HttpSensor on GET /v1/jobs/{id} with
gantry_checks.job_done, DAG gantry_stock_sensor_probe), in poke and reschedule
mode side by side, under the default connection and under connections with
`allow_redirects: false` and `check_response: false` in their extra: it waits
while the job runs, succeeds with the job's result in XCom when it succeeds,
and fails at once, naming state, exit code and reason, when the job failed,
was cancelled, timed out, or cannot be found (unknown id, wrong base path).

Each sensor gets its own job, held running until the test has seen that sensor
meet it unfinished (job_done's "is <state>" log line); only then does the test
let the job end, so the ending is met by a *waiting* sensor in each mode.
"""

from __future__ import annotations

import os

import pytest

from conftest import TEST_IMAGE, HeldJob, connection_json

PROBE = "gantry_stock_sensor_probe"
MODES = ("wait_poke", "wait_reschedule")
SETTINGS = {
    "default": {},
    "allow_redirects_off": {"allow_redirects": False},
    "check_response_off": {"check_response": False},
}


@pytest.fixture(params=list(SETTINGS))
def connection(request, gantry) -> str:
    return connection_json(gantry.url, os.environ["GANTRY_TOKEN"], **SETTINGS[request.param])


def _states(run) -> dict[str, str]:
    return {t: s["state"] for t, s in run.tis.items()}


def _failure_text(job: dict) -> str:
    """What job_done raises for an ended job, from Gantry's own view of it."""
    exit_code = "none" if job["exitCode"] is None else job["exitCode"]
    return f"Gantry job {job['id']} {job['state']}, exit code {exit_code}: {job['reason']}"


def _release_when_met(*jobs: HeldJob, cancel: bool = False):
    def on_line(line: str) -> None:
        for job in jobs:
            if f"Gantry job {job.id} is running" in line:  # a sensor read it unfinished and will poke again
                job.release(cancel)

    return on_line


def test_waits_while_running_then_succeeds_with_the_result(airflow, gantry, mount_root, connection):
    a = HeldJob(gantry, mount_root, "a", "echo working; echo result-of-a")
    b = HeldJob(gantry, mount_root, "b", "echo working; echo result-of-b")
    run = airflow.dags_test(
        PROBE, {"job_id": a.id, "reschedule_job_id": b.id}, on_line=_release_when_met(a, b), connection=connection
    )
    # Each sensor saw its job running and kept waiting (the job was held until then).
    assert a.released.is_set() and b.released.is_set(), run.describe()
    assert run.state == "success", run.describe()
    assert _states(run) == {t: "success" for t in MODES}
    for task, job in (("wait_poke", a), ("wait_reschedule", b)):
        ended = gantry.job(job.id)
        assert ended["state"] == "succeeded"
        assert run.xcom[(task, "return_value")] == ended["result"] == f"result-of-{'a' if job is a else 'b'}"
    assert "Pausing task as DEFERRED" not in run.output
    assert run.reschedules.get("wait_reschedule", 0) >= 1 and "wait_poke" not in run.reschedules, run.reschedules


def test_fails_with_the_jobs_state_exit_code_and_reason(airflow, gantry, mount_root, connection):
    a = HeldJob(gantry, mount_root, "a", "echo 'CUDA out of memory' >&2; exit 2")
    b = HeldJob(gantry, mount_root, "b", "exit 5")
    run = airflow.dags_test(
        PROBE,
        {"job_id": a.id, "reschedule_job_id": b.id},
        timeout=150,
        on_line=_release_when_met(a, b),
        connection=connection,
    )
    assert a.released.is_set() and b.released.is_set(), run.describe()
    assert run.state == "failed", run.describe()
    assert _states(run) == {t: "failed" for t in MODES}, run.describe()
    for job, code in ((a, 2), (b, 5)):
        ended = gantry.job(job.id)
        assert (ended["state"], ended["exitCode"]) == ("failed", code)
        assert _failure_text(ended) in run.output, run.describe()
    # AirflowFailException: the sensors' retries (one each) are not used on an ended job.
    assert all(ti["try_number"] == 1 for ti in run.tis.values()), run.describe()
    assert "Sensor has timed out" not in run.output


def test_fails_when_the_job_is_cancelled(airflow, gantry, mount_root):
    a = HeldJob(gantry, mount_root, "a", "true")
    b = HeldJob(gantry, mount_root, "b", "true")
    run = airflow.dags_test(
        PROBE, {"job_id": a.id, "reschedule_job_id": b.id}, timeout=150, on_line=_release_when_met(a, b, cancel=True)
    )
    assert run.state == "failed", run.describe()
    assert _states(run) == {t: "failed" for t in MODES}, run.describe()
    for job in (a, b):
        ended = gantry.wait_state(job.id, ("cancelled",))
        assert _failure_text(ended) in run.output, run.describe()


def test_fails_for_a_job_that_timed_out(airflow, gantry):
    job = gantry.submit({"image": TEST_IMAGE, "command": ["sleep", "300"], "timeoutSeconds": 2})
    ended = gantry.wait_state(job["id"], ("timed_out",), timeout=90)
    run = airflow.dags_test(PROBE, {"job_id": job["id"]}, timeout=150)
    assert run.state == "failed", run.describe()
    assert _states(run) == {t: "failed" for t in MODES}
    assert _failure_text(ended) in run.output, run.describe()


def test_fails_at_once_for_a_job_that_does_not_exist(airflow):
    unknown = "00000000-0000-0000-0000-000000000000"
    run = airflow.dags_test(PROBE, {"job_id": unknown}, timeout=150)
    assert run.state == "failed", run.describe()
    assert _states(run) == {t: "failed" for t in MODES}
    assert f"answered 404 Not Found: job {unknown} does not exist" in run.output, run.describe()
    # One poke per sensor, no retry: a 404 is not "pending".
    assert run.output.count(f"Poking: v1/jobs/{unknown}") == 2, run.describe()
    assert all(ti["try_number"] == 1 for ti in run.tis.values()), run.describe()


def test_fails_at_once_with_a_wrong_base_path(airflow, gantry):
    # A job that exists, behind a connection whose base path is wrong: Gantry (like
    # any proxy in front of it) answers 404 for the path, which must not read as pending.
    job = gantry.submit({"image": TEST_IMAGE, "command": ["true"]})
    gantry.wait_state(job["id"], ("succeeded",))
    wrong = connection_json(f"{gantry.url}/no-such-base", os.environ["GANTRY_TOKEN"])
    run = airflow.dags_test(PROBE, {"job_id": job["id"]}, timeout=150, connection=wrong)
    assert run.state == "failed", run.describe()
    assert _states(run) == {t: "failed" for t in MODES}
    assert f"/no-such-base/v1/jobs/{job['id']} answered 404 Not Found: no route for GET" in run.output, run.describe()
    assert run.output.count(f"Poking: v1/jobs/{job['id']}") == 2, run.describe()
    assert "Sensor has timed out" not in run.output
