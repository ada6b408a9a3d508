"""gantry_provider's GantryJobOperator under `airflow dags test`, and its kill paths, against a live Gantry."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from conftest import TEST_IMAGE

SLOW_LINES = "for i in 1 2 3 4; do echo line $i; sleep 1; done; echo warn-on-stderr >&2; echo result=42"


def _ts(line: str) -> dt.datetime:
    return dt.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))


def test_operator_streams_log_lines_into_task_log_and_returns_result(airflow, gantry, gpus):
    conf = {"image": TEST_IMAGE, "command": ["sh", "-c", SLOW_LINES], "gpu_count": gpus}
    run = airflow.dags_test("gantry_operator", conf)
    assert run.state == "success", run.describe()
    job_id = run.xcom[("run_job", "gantry_job_id")]
    job = gantry.job(job_id)
    assert run.xcom[("run_job", "return_value")] == "result=42" == job["result"]
    assert run.xcom[("run_job", "gantry_job")]["state"] == "succeeded"
    assert "Pausing task as DEFERRED" in run.output  # waited in the trigger, not the worker

    # Every container line is in the task log, tagged with its stream ...
    lines = {}
    for text in ["line 1", "line 2", "line 3", "line 4", "result=42", "warn-on-stderr"]:
        stream = "stderr" if text.startswith("warn") else "stdout"
        hits = [ln for ln in run.output.splitlines() if f"[{stream}] {text}" in ln]
        assert hits, f"[{stream}] {text} is not in the task log"
        lines[text] = hits[0]
    # ... and was written as it arrived, while the job was still running.
    finished = dt.datetime.fromisoformat(job["finishedAt"].replace("Z", "+00:00"))
    assert _ts(lines["line 1"]) < finished - dt.timedelta(seconds=2), (lines["line 1"], job["finishedAt"])
    assert _ts(lines["line 1"]) < _ts(lines["line 4"])


def test_operator_not_deferred_follows_the_job_in_the_worker(airflow, gantry):
    run = airflow.dags_test("gantry_sync_probe", {"image": TEST_IMAGE, "command": ["sh", "-c", SLOW_LINES]})
    assert run.state == "success", run.describe()
    assert "Pausing task as DEFERRED" not in run.output
    job = gantry.job(run.xcom[("run_job", "gantry_job_id")])
    finished = dt.datetime.fromisoformat(job["finishedAt"].replace("Z", "+00:00"))
    line1 = next(ln for ln in run.output.splitlines() if "[stdout] line 1" in ln)
    assert _ts(line1) < finished - dt.timedelta(seconds=2)
    assert "[stderr] warn-on-stderr" in run.output
    assert run.xcom[("run_job", "return_value")] == "result=42"


def test_operator_failed_job_fails_task_and_retry_starts_a_fresh_job(airflow, gantry):
    conf = {"image": TEST_IMAGE, "command": ["sh", "-c", "echo trying; exit 7"], "gpu_count": 0}
    run = airflow.dags_test("gantry_operator", conf)
    assert run.state == "failed", run.describe()
    assert run.tis["run_job"] == {"state": "failed", "try_number": 2}, run.describe()
    jobs = gantry.jobs_of_run("gantry_operator", run.run_id)
    assert sorted(j["labels"]["airflow.try_number"] for j in jobs) == ["1", "2"]
    assert all((j["state"], j["exitCode"]) == ("failed", 7) for j in jobs)
    assert "ended failed (exit code 7)" in run.output


def test_operator_retry_reattaches_to_the_running_job(airflow, gantry):
    conf = {"image": TEST_IMAGE, "command": ["sh", "-c", "sleep 8; echo reattached-result"]}
    run = airflow.dags_test("gantry_reattach_probe", conf)
    assert run.state == "success", run.describe()
    assert run.tis["run_job"]["try_number"] == 2
    jobs = gantry.jobs_of_run("gantry_reattach_probe", run.run_id)
    assert len(jobs) == 1, f"a second container was started: {[j['id'] for j in jobs]}"
    assert jobs[0]["labels"]["airflow.try_number"] == "1"
    assert "simulated worker crash" in run.output
    assert f"Re-attaching to Gantry job {jobs[0]['id']}" in run.output
    assert run.xcom[("run_job", "return_value")] == "reattached-result"


# -- kill paths, in-process (a kill cannot be sent to `airflow dags test` from outside) --------


@pytest.fixture()
def in_process_airflow(airflow, monkeypatch):
    for k, v in airflow.env.items():
        if k.startswith("AIRFLOW"):
            monkeypatch.setenv(k, v)
    yield


def test_trigger_on_kill_cancels_the_job(in_process_airflow, gantry):
    from gantry_provider.triggers.gantry import GantryJobTrigger

    job = gantry.submit({"image": TEST_IMAGE, "command": ["sleep", "300"]})
    gantry.wait_state(job["id"], ("running",))
    trigger = GantryJobTrigger(job_id=job["id"], gantry_conn_id="gantry", reconnect_interval=1)

    async def scenario():
        events = []

        async def follow():
            async for ev in trigger.run():
                events.append(ev.payload)

        task = asyncio.create_task(follow())
        await asyncio.sleep(2)
        assert not task.done()
        # What the triggerer does on mark-failed/clear: cancel run(), then call on_kill().
        task.cancel()
        await trigger.on_kill()
        return events

    assert asyncio.run(scenario()) == []
    assert gantry.wait_state(job["id"], ("cancelled",), timeout=60)["state"] == "cancelled"


def test_trigger_reports_the_final_job_when_cancelled_elsewhere(in_process_airflow, gantry):
    from gantry_provider.triggers.gantry import GantryJobTrigger

    job = gantry.submit({"image": TEST_IMAGE, "command": ["sh", "-c", "echo started; sleep 300"]})
    gantry.wait_state(job["id"], ("running",))

    async def scenario():
        async def cancel_soon():
            await asyncio.sleep(2)
            await asyncio.to_thread(gantry.post, f"v1/jobs/{job['id']}/cancel")

        asyncio.create_task(cancel_soon())
        async for ev in GantryJobTrigger(job_id=job["id"], gantry_conn_id="gantry").run():
            return ev.payload

    payload = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert payload["status"] == "done" and payload["job"]["state"] == "cancelled"
    assert payload["last_event_id"] >= 1


def test_operator_on_kill_cancels_the_job_and_frees_its_gpu(in_process_airflow, gantry, gpus):
    from gantry_provider.operators.gantry import GantryJobOperator

    spec = {"image": TEST_IMAGE, "command": ["sleep", "300"]}
    if gpus:
        spec["gpus"] = {"count": 1}
    job = gantry.submit(spec)
    job = gantry.wait_state(job["id"], ("running",))
    assert len(job["gpus"]) == gpus
    op = GantryJobOperator(task_id="k", image=TEST_IMAGE, command=["sleep", "300"], deferrable=False)
    op._job_id = job["id"]  # what execute() records before following the job
    op.on_kill()
    assert gantry.wait_state(job["id"], ("cancelled",), timeout=60)["state"] == "cancelled"
    if gpus:
        held = [g for g in gantry.get("v1/gpus").json()["items"] if job["id"] in json.dumps(g.get("holders"))]
        assert held == [], f"GPU still held by the cancelled job: {held}"
