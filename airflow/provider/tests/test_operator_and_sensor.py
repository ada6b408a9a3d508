"""GantryJobOperator and GantryJobSensor against the local stub: spec, re-attach decisions, XCom, failure paths."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException, TaskDeferralTimeout

from conftest import Reply, job_view, sse_job, sse_log, use_connection
from gantry_provider.hooks.gantry import GantryHook
from gantry_provider.operators.gantry import GantryJobOperator, task_instance_key
from gantry_provider.sensors.gantry import GantryJobSensor
from gantry_provider.triggers.gantry import GantryJobStateTrigger, GantryJobTrigger

TI_KEY = task_instance_key("d", "r", "t", -1)


class FakeTI:
    def __init__(self, try_number: int = 1, max_tries: int | None = None) -> None:
        self.dag_id, self.run_id, self.task_id, self.map_index, self.try_number = "d", "r", "t", -1, try_number
        if max_tries is not None:
            self.max_tries = max_tries
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        json.dumps(value)  # what Airflow stores must be JSON
        self.xcom[key] = value


def context(try_number: int = 1, clear_number: int = 0, max_tries: int | None = None) -> dict:
    return {"ti": FakeTI(try_number, max_tries), "dag_run": SimpleNamespace(clear_number=clear_number)}


def op(**kw) -> GantryJobOperator:
    kw.setdefault("image", "local/busybox:latest")
    kw.setdefault("command", ["true"])
    return GantryJobOperator(task_id="t", reconnect_interval=0.01, **kw)


# -- the spec ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["python", "-c", "print(1)"], ["python", "-c", "print(1)"]),
        ("python -c 'print(1)'", ["python", "-c", "print(1)"]),  # split as a shell would
        ("['sh', '-c', 'echo a b']", ["sh", "-c", "echo a b"]),  # a rendered list literal
        ('["sh", "-c", "x"]', ["sh", "-c", "x"]),
        (["sleep", 5], ["sleep", "5"]),
    ],
)
def test_command_is_taken_the_way_docker_operator_takes_it(command, expected):
    assert op(command=command).build_spec(context())["command"] == expected


def test_the_result_file_is_asked_for_when_the_result_goes_to_xcom():
    assert op().build_spec(context())["resultFile"] is True
    assert "resultFile" not in op(do_xcom_push=False).build_spec(context())


def test_termination_grace_period_is_the_specs_stop_grace():
    assert op(termination_grace_period=90).build_spec(context())["stopGraceSeconds"] == 90
    assert "stopGraceSeconds" not in op().build_spec(context())


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"command": {"a": 1}}, "command must be a list of strings or a string"),
        ({"command": ""}, "command must not be empty"),
        ({"command": "[1, 2"}, "command must be a list"),
        ({"env": "A=1"}, "env must be a dict, not str"),
        ({"env": ["A"]}, "env must be a dict, not list"),
        ({"mounts": {"source": "x"}}, "mounts must be a list"),
        ({"secrets": [{"name": "a", "env": "A", "file": "/a"}]}, "each of secrets must be"),
        ({"secrets": [{"name": "a"}]}, "each of secrets must be"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_with_its_name(kw, message):
    with pytest.raises(AirflowException, match=message.replace("[", r"\[")):
        op(**kw).build_spec(context())


def test_env_rendered_as_text_is_read_back_and_private_env_goes_apart_untemplated():
    o = op(env='{"A": "1", "B": 2}', private_env={"TOKEN": "s3cret-value"})
    spec = o.build_spec(context(try_number=2, clear_number=3))
    # Gantry redacts privateEnv values from the log and result and never shows them in the job's view.
    assert spec["env"] == {"A": "1", "B": "2"} and spec["privateEnv"] == {"TOKEN": "s3cret-value"}
    assert "private_env" not in o.template_fields and "secrets" in o.template_fields
    assert spec["labels"]["airflow.clear_number"] == "3" and spec["labels"]["airflow.try_number"] == "2"
    assert spec["labels"]["airflow.ti"] == TI_KEY


def test_private_env_of_the_wrong_type_fails_when_the_dag_is_parsed():
    with pytest.raises(AirflowException, match="private_env must be a dict"):
        op(private_env="TOKEN=x")


def test_secrets_pass_names_only():
    refs = [{"name": "hf-token", "env": "HF_TOKEN"}, {"name": "tls", "file": "/run/secrets/tls"}]
    assert op(secrets=refs).build_spec(context())["secrets"] == refs


def test_preemptible_reaches_the_spec_only_when_asked_for():
    assert op(preemptible=True).build_spec(context())["preemptible"] is True
    assert "preemptible" not in op().build_spec(context())


def test_deferrable_follows_the_default_deferrable_option(monkeypatch):
    import importlib

    import gantry_provider.operators.gantry as module

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert importlib.reload(module).GantryJobOperator(task_id="x", image="i", command=["c"]).deferrable is True
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert importlib.reload(module).GantryJobOperator(task_id="x", image="i", command=["c"]).deferrable is False


# -- submit, re-attach, or take the result ----------------------------------------------


def _jobs(stub, *jobs: dict) -> None:
    stub.route("GET", "/v1/jobs", Reply(200, {"items": list(jobs)}))
    stub.route("POST", "/v1/jobs", lambda req: Reply(201, job_view("new", state="queued", position=0)))


def _labels(try_number: int, clear_number: int | None = 0, first_try: int | None = None) -> dict:
    labels = {"airflow.ti": TI_KEY, "airflow.try_number": str(try_number)}
    if clear_number is not None:
        labels["airflow.clear_number"] = str(clear_number)
    if first_try is not None:
        labels["airflow.first_try"] = str(first_try)
    return labels


def test_first_try_submits_without_looking_and_keys_the_request_by_clear_and_try(stub):
    _jobs(stub)
    job = op().submit_or_reattach(GantryHook(), context(try_number=1, clear_number=2))
    assert job["id"] == "new" and stub.requests_to("GET", "/v1/jobs") == []
    (post,) = stub.requests_to("POST", "/v1/jobs")
    assert post.headers["Idempotency-Key"] == f"airflow/{TI_KEY}/clear-2/try-1"


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        (job_view("old", state="running", labels=_labels(1)), "old"),  # still running: follow it
        (job_view("old", state="running", labels=_labels(1), cancelRequested=True), "new"),  # being cancelled
        ({k: v for k, v in job_view("old", state="queued", labels=_labels(1)).items() if k != "cancelRequested"}, "old"),  # older server
        (job_view("old", state="succeeded", labels=_labels(1), result="r"), "old"),  # take its result
        (job_view("old", state="failed", labels=_labels(1)), "new"),
        (job_view("old", state="running", labels=_labels(1, clear_number=None)), "old"),  # labelled before clear numbers
    ],
)
def test_a_retry_decides_from_the_newest_job_of_the_task_instance(stub, previous, expected):
    _jobs(stub, previous)
    assert op().submit_or_reattach(GantryHook(), context(try_number=2))["id"] == expected
    (lookup,) = stub.requests_to("GET", "/v1/jobs")
    assert f"label=airflow.ti%3D{TI_KEY}" in lookup.path


def test_a_cleared_task_ignores_jobs_from_before_the_clear(stub):
    _jobs(stub, job_view("old", state="succeeded", labels=_labels(1, clear_number=0)))
    assert op().submit_or_reattach(GantryHook(), context(try_number=3, clear_number=1))["id"] == "new"


def test_the_first_try_after_a_clear_inside_a_running_run_submits_a_fresh_job(stub):
    # The run was running, so its clear number stayed 0; Airflow reset max_tries to 2 (last try) + 1 (retries).
    _jobs(stub, job_view("old", state="succeeded", labels=_labels(2, first_try=1), result="old-result"))
    job = op(retries=1).submit_or_reattach(GantryHook(), context(try_number=3, max_tries=3))
    assert job["id"] == "new" and stub.requests_to("GET", "/v1/jobs") == []
    (post,) = stub.requests_to("POST", "/v1/jobs")
    assert json.loads(post.body)["labels"]["airflow.first_try"] == "3"


def test_a_retry_after_a_clear_reattaches_only_to_a_job_of_the_same_range_of_tries(stub):
    _jobs(stub, job_view("old", state="running", labels=_labels(3, first_try=3)))
    assert op(retries=1).submit_or_reattach(GantryHook(), context(try_number=4, max_tries=3))["id"] == "old"
    _jobs(stub, job_view("older", state="running", labels=_labels(2, first_try=1)))
    assert op(retries=1).submit_or_reattach(GantryHook(), context(try_number=4, max_tries=3))["id"] == "new"


def test_reattach_false_always_submits(stub):
    _jobs(stub, job_view("old", state="running", labels=_labels(1)))
    assert op(reattach=False).submit_or_reattach(GantryHook(), context(try_number=2))["id"] == "new"


def test_a_retry_after_success_returns_the_result_without_running_again(stub):
    _jobs(stub, job_view("old", state="succeeded", labels=_labels(1), result="42"))
    stub.route("GET", "/v1/jobs/old/logs", Reply(200, b"a\nb\n"))
    ctx = context(try_number=2)
    assert op(deferrable=True).execute(ctx) == "42"
    assert stub.requests_to("POST", "/v1/jobs") == []
    assert ctx["ti"].xcom["gantry_log_tail"] == ["a", "b"]


# -- waiting, XCom, ends ------------------------------------------------------------------


def test_deferring_hands_the_trigger_its_options_and_no_private_value(stub):
    from airflow.sdk.exceptions import TaskDeferred

    _jobs(stub)
    o = op(
        deferrable=True,
        cancel_on_kill=False,
        private_env={"TOKEN": "s3cret-value"},
        log_tail_lines=3,
        max_unreachable_seconds=42.0,
        checkpoint_interval=7.0,
        log_lines_per_interval=500,
        logging_interval=10.0,
    )
    with pytest.raises(TaskDeferred) as deferred:
        o.execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, GantryJobTrigger)
    _, kwargs = trigger.serialize()  # what Airflow's REST API shows as the task instance's trigger.kwargs
    assert (kwargs["cancel_on_kill"], kwargs["tail_lines"]) == (False, 3)
    assert (kwargs["max_unreachable_seconds"], kwargs["checkpoint_interval"]) == (42.0, 7.0)
    assert (kwargs["log_lines_per_interval"], kwargs["logging_interval"]) == (500, 10.0)
    assert "s3cret-value" not in json.dumps(kwargs)
    (post,) = stub.requests_to("POST", "/v1/jobs")
    assert json.loads(post.body)["privateEnv"] == {"TOKEN": "s3cret-value"}


@pytest.mark.parametrize(
    ("status", "fails_for_good"), [(422, True), (401, True), (403, True), (503, False), (429, False)]
)
def test_a_refused_submit_fails_the_task_without_retries(stub, status, fails_for_good):
    stub.route("POST", "/v1/jobs", Reply(status, {"title": "refused", "detail": "GPU count over the policy"}))
    with pytest.raises(AirflowException) as raised:
        op(deferrable=True).execute(context())
    assert isinstance(raised.value, AirflowFailException) is fails_for_good
    assert str(status) in str(raised.value)


@pytest.mark.parametrize(
    ("kw", "ctx", "cancels"),
    [
        ({}, {"try_number": 1, "max_tries": 0}, True),  # retries=0: the final try, cancel by default
        ({"retries": 1}, {"try_number": 2, "max_tries": 1}, True),  # the last of two tries
        ({"retries": 1}, {"try_number": 1, "max_tries": 1}, False),  # the retry re-attaches
        ({"retries": 1, "reattach": False}, {"try_number": 1, "max_tries": 1}, True),  # no retry would follow it
        ({"on_finish_action": "keep"}, {"try_number": 1, "max_tries": 0}, False),
    ],
)
def test_a_try_failing_before_its_job_ended_cancels_it_unless_kept_or_retried(stub, kw, ctx, cancels):
    stub.route("POST", "/v1/jobs/j1/cancel", Reply(202, job_view(cancelRequested=True)))
    event = {"status": "error", "job_id": "j1", "message": "lost Gantry for 600 s while following job j1"}
    with pytest.raises(AirflowException, match="lost Gantry"):
        op(**kw).execute_complete(context(**ctx), event)
    assert len(stub.requests_to("POST", "/v1/jobs/j1/cancel")) == (1 if cancels else 0)


def test_on_finish_action_is_checked_when_the_dag_is_parsed():
    with pytest.raises(AirflowException, match="on_finish_action"):
        op(on_finish_action="delete_pod")


def test_the_worker_gives_up_after_max_unreachable_seconds_and_cancels_on_the_final_try(stub):
    _jobs(stub)
    stub.route("GET", "/v1/jobs/new/logs", Reply(503, {"title": "Service Unavailable"}))
    stub.route("POST", "/v1/jobs/new/cancel", Reply(202, job_view("new", cancelRequested=True)))
    with pytest.raises(AirflowException, match="lost Gantry for 0 s"):
        op(deferrable=False, max_unreachable_seconds=0.05).execute(context())
    assert len(stub.requests_to("POST", "/v1/jobs/new/cancel")) == 1


def test_following_in_the_worker_pushes_result_tail_and_no_spec(stub):
    _jobs(stub)
    chunks = [sse_log(1, "hello"), sse_log(2, "world"), sse_job("end", job_view("new", state="succeeded", result="world"))]
    stub.route("GET", "/v1/jobs/new/logs", Reply(chunks=chunks))
    ctx = context()
    assert op(deferrable=False, private_env={"TOKEN": "s3cret-value"}).execute(ctx) == "world"
    xcom = ctx["ti"].xcom
    assert xcom["gantry_job_id"] == "new" and xcom["gantry_log_tail"] == ["[stdout] hello", "[stdout] world"]
    assert "spec" not in xcom["gantry_job"]
    assert "s3cret-value" not in json.dumps(xcom) and "hunter2-secret" not in json.dumps(xcom)


def test_a_failed_job_fails_the_task_or_skips_it_on_a_listed_exit_code():
    failed = job_view(state="failed", exitCode=3, reason="exit 3")
    with pytest.raises(AirflowException, match=r"ended failed \(exit code 3\): exit 3"):
        op().execute_complete(context(), {"status": "done", "job": failed, "log_tail": []})
    with pytest.raises(AirflowSkipException):
        op(skip_on_exit_code=[3, 4]).execute_complete(context(), {"status": "done", "job": failed, "log_tail": []})
    with pytest.raises(AirflowException, match="ended cancelled"):
        op(skip_on_exit_code=3).execute_complete(context(), {"status": "done", "job": job_view(state="cancelled", exitCode=3), "log_tail": []})


def test_a_deferral_timeout_stays_a_timeout_when_gantry_is_down(monkeypatch):
    use_connection(monkeypatch, "http://127.0.0.1:9")
    o = op(execution_timeout=timedelta(seconds=1))
    with pytest.raises(TaskDeferralTimeout):
        o.resume_execution("__fail__", {"error": "Trigger timeout"}, context(try_number=1))


def test_a_deferral_timeout_cancels_the_running_job(stub):
    _jobs(stub, job_view("old", state="running", labels=_labels(1)))
    stub.route("POST", "/v1/jobs/old/cancel", Reply(202, job_view("old", cancelRequested=True)))
    with pytest.raises(TaskDeferralTimeout):
        op().resume_execution("__fail__", {"error": "Trigger timeout"}, context())
    assert len(stub.requests_to("POST", "/v1/jobs/old/cancel")) == 1


def test_the_job_link_points_at_the_operator_page(stub, monkeypatch):
    from airflow.sdk.execution_time.xcom import XCom
    from gantry_provider.operators.gantry import GantryJobLink

    monkeypatch.setattr(XCom, "get_value", classmethod(lambda cls, *, ti_key, key: "job/1" if key == "gantry_job_id" else None))
    assert GantryJobLink().get_link(op(), ti_key=None) == f"{stub.url}/ui/#/jobs/job%2F1"


# -- the sensor ---------------------------------------------------------------------------


def sensor(**kw) -> GantryJobSensor:
    return GantryJobSensor(task_id="s", job_id="j1", poke_interval=0.01, **kw)


def test_sensor_pokes_until_success_and_returns_the_result(stub):
    states = iter(["running", "succeeded"])
    stub.route("GET", "/v1/jobs/j1", lambda _req: Reply(200, job_view(state=next(states), result="r")))
    ctx = context()
    assert sensor(deferrable=False).execute(ctx) == "r"
    assert ctx["ti"].xcom["gantry_job_id"] == "j1"


@pytest.mark.parametrize("deferrable", [False, True])
def test_sensor_fails_on_a_failed_job_with_state_exit_code_and_reason(stub, deferrable):
    stub.route("GET", "/v1/jobs/j1", Reply(200, job_view(state="timed_out", exitCode=137, reason="ran past 60 s")))
    with pytest.raises(AirflowFailException, match=r"ended timed_out \(exit code 137\): ran past 60 s"):
        sensor(deferrable=deferrable).execute(context())


@pytest.mark.parametrize("deferrable", [False, True])
def test_sensor_fails_on_an_unknown_job(stub, deferrable):
    with pytest.raises(AirflowFailException, match="does not exist"):
        sensor(deferrable=deferrable).execute(context())


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_sensor_waits_out_a_connection_error_in_poke_and_reschedule_mode(stub, monkeypatch, mode):
    good = use_connection  # the stub's connection, restored after the first poke
    use_connection(monkeypatch, "http://127.0.0.1:9")  # nothing listens: connection refused
    s = sensor(deferrable=False, mode=mode)
    assert s.poke(context()) is False
    good(monkeypatch, stub.url)
    stub.route("GET", "/v1/jobs/j1", Reply(200, job_view(state="succeeded", result="r")))
    assert s.poke(context()).xcom_value == "r"


def test_deferrable_sensor_defers_when_its_first_poke_cannot_reach_gantry(monkeypatch):
    from airflow.sdk.exceptions import TaskDeferred

    use_connection(monkeypatch, "http://127.0.0.1:9")
    with pytest.raises(TaskDeferred):
        sensor(deferrable=True).execute(context())


def test_deferrable_sensor_with_soft_fail_skips_on_its_first_poke(stub):
    stub.route("GET", "/v1/jobs/j1", Reply(200, job_view(state="failed", exitCode=1)))
    with pytest.raises(AirflowSkipException):
        sensor(deferrable=True, soft_fail=True).execute(context())


def test_sensor_fails_at_once_on_a_refused_token(stub):
    stub.route("GET", "/v1/jobs/j1", Reply(401, {"title": "Unauthorized", "detail": "unknown token"}))
    with pytest.raises(AirflowFailException, match="401"):
        sensor(deferrable=False).poke(context())


def test_deferred_sensor_hands_over_to_the_state_trigger_and_judges_its_events(stub):
    from airflow.sdk.exceptions import TaskDeferred

    stub.route("GET", "/v1/jobs/j1", Reply(200, job_view(state="running")))
    s = sensor(deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        s.execute(context())
    assert isinstance(deferred.value.trigger, GantryJobStateTrigger)
    assert s.execute_complete(context(), {"status": "ended", "job": job_view(state="succeeded", result="ok")}) == "ok"
    with pytest.raises(AirflowFailException, match="ended failed"):
        s.execute_complete(context(), {"status": "ended", "job": job_view(state="failed", exitCode=1)})
    with pytest.raises(AirflowFailException, match="does not exist"):
        s.execute_complete(context(), {"status": "not_found", "job_id": "j1", "message": "404"})
    with pytest.raises(AirflowException, match="lost Gantry"):
        s.execute_complete(context(), {"status": "error", "job_id": "j1", "message": "lost Gantry for 600 s"})
