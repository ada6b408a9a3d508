"""gantry_provider's GantryJobOperator under `airflow dags test`, and its kill paths, against a live Gantry."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import time
from types import SimpleNamespace

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
    assert "spec" not in run.xcom[("run_job", "gantry_job")]  # env values stay out of XCom
    # Lines of two streams written together may come in either order.
    assert sorted(run.xcom[("run_job", "gantry_log_tail")][-2:]) == ["[stderr] warn-on-stderr", "[stdout] result=42"]
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


def test_the_task_log_keeps_line_times_and_tells_each_attempt_with_its_cause(airflow, gantry):
    script = 'echo "attempt $GANTRY_ATTEMPT"; [ "$GANTRY_ATTEMPT" != 1 ] || exit 3'
    run = airflow.dags_test("gantry_sync_probe", {"image": TEST_IMAGE, "command": ["sh", "-c", script]})
    assert run.state == "success", run.describe()
    job = gantry.job(run.xcom[("run_job", "gantry_job_id")])
    assert job["attempt"] == 2 and job["attempts"][0]["cause"] == "exit_code"
    lines = run.output.splitlines()
    # Each container line is written with the time Gantry read it (before it, Airflow's own time of the record).
    for n in (1, 2):
        (hit,) = [ln for ln in lines if f"[stdout] attempt {n}" in ln]
        stamp = hit.split(f" [stdout] attempt {n}")[0].split()[-1]
        assert dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).year >= 2026, hit
    told = [ln for ln in lines if f"Gantry job {job['id']}: attempt" in ln]
    assert any("attempt 1 on node" in ln and "ended failed (cause: exit_code, exit code 3)" in ln and "requeued as attempt 2" in ln for ln in told), told
    assert any("attempt 2 is running on node" in ln for ln in told), told


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


def test_a_json_result_file_is_pushed_key_by_key_with_multiple_outputs(airflow, gantry):
    script = (
        "echo last-stdout-line; "
        'printf \'{"accuracy": 0.93, "model": "m-42", "key": "%s"}\' "$API_KEY" > "$GANTRY_RESULT_FILE"'
    )
    run = airflow.dags_test("gantry_result_probe", {"image": TEST_IMAGE, "command": ["sh", "-c", script]})
    assert run.state == "success", run.describe()
    assert "Pausing task as DEFERRED" in run.output  # followed by the trigger
    document = {"accuracy": 0.93, "model": "m-42", "key": "[secret:privateEnv.API_KEY]"}
    assert run.xcom[("run_job", "return_value")] == document
    assert (run.xcom[("run_job", "accuracy")], run.xcom[("run_job", "model")]) == (0.93, "m-42")
    assert gantry.job(run.xcom[("run_job", "gantry_job_id")])["result"] == document
    assert "sk-result-probe-4242" not in json.dumps({str(k): v for k, v in run.xcom.items()}) + run.output


CLEAR_ONE_TASK = """
import sys
from sqlalchemy import select
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance, clear_task_instances
from airflow.utils.session import create_session

dag_id, run_id, task_id = sys.argv[1:4]
with create_session() as session:
    tis = session.scalars(
        select(TaskInstance).where(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
        )
    ).all()
    assert len(tis) == 1, tis
    clear_task_instances(tis, session)
    session.flush()
    run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).one()
    print(f"cleared {task_id}: run {run.state}, clear_number {run.clear_number}, max_tries {tis[0].max_tries}")
"""


def test_clearing_one_task_inside_a_running_run_runs_a_fresh_job(airflow, gantry, tmp_path):
    """
    A clear of one task while its run is still running (another task holds it
    open): the cleared task's next try must run a new job, never take the
    result of the job that succeeded before the clear. Airflow's own clear
    (clear_task_instances, what the UI and REST API call) does the clearing.
    """
    go = tmp_path / "go"
    cleared: list[str] = []

    def on_line(line: str) -> None:
        if "gantry_clear_probe holding run " in line and not cleared:
            run_id = line.split("gantry_clear_probe holding run ", 1)[1].split()[0].strip("'\"")
            proc = airflow.cli_python(CLEAR_ONE_TASK, "gantry_clear_probe", run_id, "first")
            cleared.append(proc.stdout + proc.stderr)
            go.touch()

    run = airflow.dags_test("gantry_clear_probe", {"image": TEST_IMAGE, "go_file": str(go)}, on_line=on_line)
    assert cleared and "run running" in cleared[0], (cleared, run.describe())
    assert run.state == "success", run.describe()
    assert run.tis["first"]["try_number"] == 2, run.describe()
    jobs = [j for j in gantry.jobs_of_run("gantry_clear_probe", run.run_id) if j["labels"]["airflow.task_id"] == "first"]
    assert len(jobs) == 2, f"the cleared task took an old job: {[(j['id'], j['labels']) for j in jobs]}"
    newest, oldest = jobs  # newest first
    assert newest["labels"]["airflow.try_number"] == "2" and newest["labels"]["airflow.first_try"] == "2"
    assert newest["result"] != oldest["result"]
    assert run.xcom[("first", "return_value")] == newest["result"]


def test_the_sensor_example_waits_in_reschedule_mode_and_returns_the_result(airflow, gantry):
    run = airflow.dags_test(
        "gantry_sensor", {"image": TEST_IMAGE, "command": ["sh", "-c", "sleep 8; echo sensed-result"]}
    )
    assert run.state == "success", run.describe()
    assert run.reschedules.get("wait", 0) >= 1, run.describe()  # gave its slot back between pokes
    assert run.xcom[("wait", "return_value")] == "sensed-result"
    assert gantry.job(run.xcom[("submit", "return_value")])["state"] == "succeeded"


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


def test_trigger_on_kill_leaves_the_job_running_with_cancel_on_kill_false(in_process_airflow, gantry):
    from gantry_provider.triggers.gantry import GantryJobTrigger

    job = gantry.submit({"image": TEST_IMAGE, "command": ["sleep", "300"]})
    gantry.wait_state(job["id"], ("running",))
    try:
        asyncio.run(GantryJobTrigger(job_id=job["id"], gantry_conn_id="gantry", cancel_on_kill=False).on_kill())
        time.sleep(2)
        after = gantry.job(job["id"])
        assert after["state"] == "running" and not after.get("cancelRequested"), after
    finally:
        gantry.post(f"v1/jobs/{job['id']}/cancel")


def test_hook_test_connection_reaches_gantry_and_reports_a_bad_token(in_process_airflow, gantry, monkeypatch):
    from gantry_provider.hooks.gantry import GantryHook

    ok, message = GantryHook("gantry").test_connection()
    assert ok, message
    conn = json.loads(os.environ["AIRFLOW_CONN_GANTRY"])
    conn["extra"] = {"Authorization": "Bearer not-a-token"}
    monkeypatch.setenv("AIRFLOW_CONN_GANTRY", json.dumps(conn))
    ok, message = GantryHook("gantry").test_connection()
    assert not ok and "401" in message, message


# -- retries, clears and what reaches XCom, in-process against the live Gantry ---------------


class _TI:
    def __init__(self, run_id: str, try_number: int) -> None:
        self.dag_id, self.run_id, self.task_id, self.map_index, self.try_number = "live", run_id, "t", -1, try_number
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value


def _context(run_id: str, try_number: int, clear_number: int = 0) -> dict:
    return {"ti": _TI(run_id, try_number), "dag_run": SimpleNamespace(clear_number=clear_number)}


def _ti_labels(run_id: str, try_number: int, clear_number: int = 0) -> dict:
    from gantry_provider.operators.gantry import task_instance_key

    return {
        "airflow.ti": task_instance_key("live", run_id, "t", -1),
        "airflow.try_number": str(try_number),
        "airflow.clear_number": str(clear_number),
    }


def _jobs_of(gantry, run_id: str) -> list[dict]:
    from gantry_provider.operators.gantry import task_instance_key

    r = gantry.get("v1/jobs", params={"label": f"airflow.ti={task_instance_key('live', run_id, 't', -1)}", "limit": 50})
    return r.json()["items"]


def test_retry_does_not_follow_a_job_being_cancelled(in_process_airflow, gantry):
    from gantry_provider.hooks.gantry import GantryHook
    from gantry_provider.operators.gantry import GantryJobOperator

    run_id = f"cancel-{time.time_ns()}"
    # PID 1 ignores SIGTERM: the job stays running, cancel requested, until the stop grace ends.
    old = gantry.submit({"image": TEST_IMAGE, "command": ["sleep", "300"], "labels": _ti_labels(run_id, 1)})
    gantry.wait_state(old["id"], ("running",))
    gantry.post(f"v1/jobs/{old['id']}/cancel")
    seen = gantry.job(old["id"])
    op = GantryJobOperator(task_id="t", image=TEST_IMAGE, command=["sleep", "300"], deferrable=False)
    job = op.submit_or_reattach(GantryHook("gantry"), _context(run_id, 2))
    try:
        assert job["id"] != old["id"], f"followed {old['id']} (seen as {seen['state']}, cancelRequested={seen.get('cancelRequested')})"
        assert job["labels"]["airflow.try_number"] == "2"
    finally:
        gantry.post(f"v1/jobs/{job['id']}/cancel")


def test_retry_takes_a_succeeded_result_and_a_clear_runs_a_fresh_job(in_process_airflow, gantry):
    from gantry_provider.operators.gantry import GantryJobOperator

    run_id = f"done-{time.time_ns()}"
    old = gantry.submit({"image": TEST_IMAGE, "command": ["sh", "-c", "echo first-result"], "labels": _ti_labels(run_id, 1)})
    gantry.wait_state(old["id"], ("succeeded",))
    op = GantryJobOperator(task_id="t", image=TEST_IMAGE, command="sh -c 'echo second-result'", deferrable=False, reconnect_interval=1)

    retry = _context(run_id, 2)
    assert op.execute(retry) == "first-result"
    assert retry["ti"].xcom["gantry_job_id"] == old["id"] and len(_jobs_of(gantry, run_id)) == 1

    cleared = _context(run_id, 3, clear_number=1)
    assert op.execute(cleared) == "second-result"  # a string command, split as a shell would
    jobs = _jobs_of(gantry, run_id)
    assert len(jobs) == 2 and jobs[0]["labels"]["airflow.clear_number"] == "1"


def test_private_env_reaches_the_container_but_not_xcom_logs_or_the_job_view(in_process_airflow, gantry):
    from gantry_provider.operators.gantry import GantryJobOperator

    secret = f"private-{time.time_ns()}"
    op = GantryJobOperator(
        task_id="t",
        image=TEST_IMAGE,
        # The job proves it got the value, then prints it: Gantry redacts it as it does a secret.
        command=[
            "sh",
            "-c",
            'test "$(printf %s "$TOKEN" | sha256sum | cut -c1-64)" = "$DIGEST" && echo token-ok && echo "leak: $TOKEN"',
        ],
        env={"DIGEST": hashlib.sha256(secret.encode()).hexdigest()},
        private_env={"TOKEN": secret},
        deferrable=False,
        reconnect_interval=1,
    )
    ctx = _context(f"private-{time.time_ns()}", 1)
    assert op.execute(ctx) == "leak: [secret:privateEnv.TOKEN]"
    assert "[stdout] token-ok" in ctx["ti"].xcom["gantry_log_tail"]
    assert secret not in json.dumps(ctx["ti"].xcom), ctx["ti"].xcom
    job = gantry.job(ctx["ti"].xcom["gantry_job_id"])
    assert job["spec"]["privateEnv"] == {"TOKEN": "[private]"} and secret not in json.dumps(job)
    logs = gantry.get(f"v1/jobs/{job['id']}/logs").text
    assert "leak: [secret:privateEnv.TOKEN]" in logs and secret not in logs


def test_a_refused_spec_fails_at_once_and_a_stop_grace_within_the_maximum_is_taken(in_process_airflow, gantry):
    from airflow.sdk.exceptions import AirflowFailException

    from gantry_provider.operators.gantry import GantryJobOperator

    def op(grace: int) -> GantryJobOperator:
        return GantryJobOperator(
            task_id="t", image=TEST_IMAGE, command=["true"], termination_grace_period=grace, deferrable=False, reconnect_interval=1
        )

    # Above GANTRY_MAX_STOP_GRACE_SECONDS: Gantry's policy refuses it (422), and no retry could change that.
    with pytest.raises(AirflowFailException, match="422.*stopGraceSeconds"):
        op(3600).execute(_context(f"grace-{time.time_ns()}", 1))
    ctx = _context(f"grace-{time.time_ns()}", 1)
    op(1).execute(ctx)
    assert gantry.job(ctx["ti"].xcom["gantry_job_id"])["spec"]["stopGraceSeconds"] == 1


def test_secrets_are_passed_by_name_and_their_value_reaches_the_job_only(in_process_airflow, gantry):
    from gantry_provider.operators.gantry import GantryJobOperator

    name, value = os.environ.get("GANTRY_TEST_SECRET_NAME"), os.environ.get("GANTRY_TEST_SECRET_VALUE")
    if not name or not value:
        pytest.skip("GANTRY_TEST_SECRET_NAME/VALUE name a secret of the Gantry under test (scripts/airflow-test.sh sets them)")
    op = GantryJobOperator(
        task_id="t",
        image=TEST_IMAGE,
        # The digest proves the job got the value; the echo that Gantry redacts it from what Airflow sees.
        command=["sh", "-c", 'printf %s "$TOKEN" | sha256sum | cut -c1-64; echo "leak: $TOKEN"'],
        secrets=[{"name": name, "env": "TOKEN"}],
        deferrable=False,
        reconnect_interval=1,
    )
    ctx = _context(f"secrets-{time.time_ns()}", 1)
    assert op.execute(ctx) == f"leak: [secret:{name}]"
    xcom = json.dumps(ctx["ti"].xcom)
    assert hashlib.sha256(value.encode()).hexdigest() in xcom, xcom
    assert value not in xcom
    jobs = gantry.get("v1/jobs", params={"limit": 1}).json()["items"]
    assert jobs[0]["spec"]["secrets"] == [{"name": name, "env": "TOKEN"}] and value not in json.dumps(jobs)


# -- GantryJobSensor --------------------------------------------------------------------------


def test_sensor_returns_the_result_of_a_succeeded_job_in_both_modes(in_process_airflow, gantry):
    from airflow.sdk.exceptions import TaskDeferred

    from gantry_provider.sensors.gantry import GantryJobSensor
    from gantry_provider.triggers.gantry import GantryJobStateTrigger

    job = gantry.submit({"image": TEST_IMAGE, "command": ["sh", "-c", "sleep 3; echo sensed"]})
    with pytest.raises(TaskDeferred) as deferred:
        GantryJobSensor(task_id="s", job_id=job["id"], deferrable=True, poke_interval=1).execute(_context("s", 1))
    trigger = deferred.value.trigger
    assert isinstance(trigger, GantryJobStateTrigger)

    async def first_event():
        async for ev in trigger.run():
            return ev.payload

    event = asyncio.run(asyncio.wait_for(first_event(), 60))
    sensor = GantryJobSensor(task_id="s", job_id=job["id"], deferrable=True)
    assert sensor.execute_complete(_context("s", 1), event) == "sensed"
    assert GantryJobSensor(task_id="s", job_id=job["id"], deferrable=False, poke_interval=1).execute(_context("s", 1)) == "sensed"


def test_sensor_fails_with_the_jobs_end_and_on_an_unknown_job(in_process_airflow, gantry):
    from airflow.sdk.exceptions import AirflowFailException

    from gantry_provider.sensors.gantry import GantryJobSensor

    job = gantry.submit({"image": TEST_IMAGE, "command": ["sh", "-c", "exit 5"]})
    gantry.wait_state(job["id"], ("failed",))
    with pytest.raises(AirflowFailException, match=r"ended failed \(exit code 5\)"):
        GantryJobSensor(task_id="s", job_id=job["id"], deferrable=False, poke_interval=1).execute(_context("s", 1))
    with pytest.raises(AirflowFailException, match="does not exist"):
        GantryJobSensor(task_id="s", job_id="no-such-job", deferrable=True, poke_interval=1).execute(_context("s", 1))
