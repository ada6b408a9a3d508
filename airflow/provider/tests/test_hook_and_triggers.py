"""GantryHook (connection settings, test_connection) and the triggers, against the local stub."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
import requests

from conftest import Reply, job_view, sse_job, sse_log, use_connection
from gantry_provider import get_provider_info
from gantry_provider.hooks.gantry import GantryHook, GantrySettings
from gantry_provider.triggers.gantry import GantryJobStateTrigger, GantryJobTrigger


def _conn(**kw):
    base = {"conn_id": "gantry", "host": "gantry", "port": 8420, "schema": "", "login": None, "password": None, "extra_dejson": {}}
    base.update(kw)
    return SimpleNamespace(**base)


def test_settings_from_an_http_connection_keep_its_header_extras():
    s = GantrySettings.from_connection(_conn(schema="http", extra_dejson={"Authorization": "Bearer t", "X-Team": "ml"}))
    assert s.base_url == "http://gantry:8420" and s.headers == {"Authorization": "Bearer t", "X-Team": "ml"}
    assert s.verify is True and s.proxies == {} and s.timeout == 30.0 and s.ui_url == "http://gantry:8420/ui/"


def test_settings_from_a_gantry_connection_read_token_and_client_options():
    s = GantrySettings.from_connection(
        _conn(
            host="https://gantry.example.com/base",
            port=None,
            password="tok",
            extra_dejson={"verify": "/etc/ca.pem", "proxies": "http://proxy:3128", "timeout": "12", "ui_url": "https://g/ui/", "srv_lookup": False},
        )
    )
    assert s.base_url == "https://gantry.example.com/base"
    assert s.headers == {"Authorization": "Bearer tok"}
    assert (s.verify, s.timeout, s.ui_url) == ("/etc/ca.pem", 12.0, "https://g/ui/")
    assert s.proxy_for_aiohttp() == "http://proxy:3128"
    assert "tok" not in repr(s)
    assert GantrySettings.from_connection(_conn(extra_dejson={"verify": "false"})).verify is False


def test_http_connection_client_options_are_not_sent_as_headers():
    s = GantrySettings.from_connection(
        _conn(extra_dejson={"Authorization": "Bearer t", "auth_type": "", "auth_kwargs": {}, "cert": "/etc/client.pem"})
    )
    assert s.headers == {"Authorization": "Bearer t"} and s.cert == "/etc/client.pem"
    assert GantrySettings.from_connection(_conn(extra_dejson={"cert": ["/c.pem", "/k.pem"]})).cert == ("/c.pem", "/k.pem")
    with pytest.raises(Exception, match="auth_type 'requests.auth.HTTPBasicAuth' is not supported"):
        GantrySettings.from_connection(_conn(extra_dejson={"auth_type": "requests.auth.HTTPBasicAuth"}))


def test_provider_info_declares_the_gantry_connection_type_with_form_fields():
    info = get_provider_info()
    (ct,) = info["connection-types"]
    assert ct["connection-type"] == "gantry" == GantryHook.conn_type
    assert ct["hook-class-name"] == "gantry_provider.hooks.gantry.GantryHook"
    assert set(ct["conn-fields"]) == {"verify", "proxies", "timeout", "ui_url"}
    assert GantryHook.get_ui_field_behaviour()["relabeling"]["password"] == "Token"
    assert info["extra-links"] == ["gantry_provider.operators.gantry.GantryJobLink"]


def test_py_typed_is_shipped():
    from importlib.resources import files

    assert files("gantry_provider").joinpath("py.typed").is_file()


def test_test_connection_lists_jobs_with_the_token(stub):
    stub.route("GET", "/v1/jobs", Reply(200, {"items": []}))
    ok, message = GantryHook().test_connection()
    assert ok, message
    (req,) = stub.requests_to("GET", "/v1/jobs")
    assert req.headers["Authorization"] == "Bearer stub-token-123"


def test_test_connection_reports_a_refused_token(stub):
    stub.route("GET", "/v1/jobs", Reply(401, {"title": "Unauthorized", "detail": "unknown token"}))
    ok, message = GantryHook().test_connection()
    assert not ok and "401" in message and "unknown token" in message


async def _events(trigger) -> list[dict]:
    return [ev.payload async for ev in trigger.run()]


def test_trigger_follows_the_stream_and_fires_without_the_spec(stub, capsys):
    chunks = [sse_job("status", job_view()), sse_log(1, "one") + sse_log(2, "two"), sse_job("end", job_view(state="succeeded", result="two"))]
    stub.route("GET", "/v1/jobs/j1/logs", Reply(chunks=chunks))
    (event,) = asyncio.run(_events(GantryJobTrigger("j1", reconnect_interval=0.01)))
    assert event["status"] == "done" and event["job"]["result"] == "two" and event["last_event_id"] == 2
    assert event["log_tail"] == ["[stdout] one", "[stdout] two"]
    assert "spec" not in event["job"] and "hunter2-secret" not in json.dumps(event)
    # One record for the lines of one read, each with the time Gantry read it.
    assert "2026-01-01T00:00:00Z [stdout] one\n2026-01-01T00:00:00Z [stdout] two" in capsys.readouterr().out


def test_trigger_resumes_a_dropped_stream_with_last_event_id(stub):
    replies = iter(
        [
            Reply(chunks=[sse_job("status", job_view()), sse_log(1, "a"), sse_log(2, "b")]),  # closes before `end`
            Reply(chunks=[sse_log(3, "c"), sse_job("end", job_view(state="succeeded"))]),
        ]
    )
    stub.route("GET", "/v1/jobs/j1/logs", lambda _req: next(replies))
    (event,) = asyncio.run(_events(GantryJobTrigger("j1", reconnect_interval=0.01)))
    assert event["status"] == "done" and event["last_event_id"] == 3
    first, second = stub.requests_to("GET", "/v1/jobs/j1/logs")
    assert "Last-Event-ID" not in first.headers and second.headers["Last-Event-ID"] == "2"


def test_a_restarted_trigger_resumes_from_its_checkpoint(stub, monkeypatch):
    from airflow.sdk.execution_time.xcom import XCom

    store: dict[str, object] = {"gantry_log_seq": 40}

    async def aget_one(*, key, **where):
        assert where == {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": -1}
        return store.get(key)

    async def aset(key, value, **where):
        store[key] = value

    monkeypatch.setattr(XCom, "aget_one", aget_one)
    monkeypatch.setattr(XCom, "aset", aset)
    replies = iter(
        [
            Reply(chunks=[sse_log(41, "x"), sse_log(42, "y")]),  # closes before `end`
            Reply(chunks=[sse_job("end", job_view(state="succeeded"))]),
        ]
    )
    stub.route("GET", "/v1/jobs/j1/logs", lambda _req: next(replies))
    trigger = GantryJobTrigger("j1", last_event_id=7, checkpoint_interval=0, reconnect_interval=0.01)
    trigger.task_instance = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1)
    (event,) = asyncio.run(_events(trigger))
    assert event["last_event_id"] == 42
    first, second = stub.requests_to("GET", "/v1/jobs/j1/logs")
    assert first.headers["Last-Event-ID"] == "40"  # the checkpoint, not the deferral point (7)
    assert second.headers["Last-Event-ID"] == "42"
    assert store["gantry_log_seq"] == 42


def test_trigger_uses_the_connections_private_ca(tls_stub, private_ca, monkeypatch):
    tls_stub.route("GET", "/v1/jobs/j1/logs", Reply(chunks=[sse_job("end", job_view(state="succeeded"))]))
    use_connection(monkeypatch, tls_stub.url, verify=str(private_ca["ca"]))
    (event,) = asyncio.run(_events(GantryJobTrigger("j1")))
    assert event["status"] == "done"
    # The same connection in the worker.
    tls_stub.route("GET", "/v1/jobs/j1", Reply(200, job_view()))
    assert GantryHook().get_job("j1")["id"] == "j1"


def test_a_client_certificate_reaches_a_mutual_tls_gantry_from_worker_and_triggerer(mtls_stub, private_ca, monkeypatch):
    mtls_stub.route("GET", "/v1/jobs/j1", Reply(200, job_view()))
    mtls_stub.route("GET", "/v1/jobs/j1/logs", Reply(chunks=[sse_job("end", job_view(state="succeeded"))]))
    cert = [str(private_ca["client_cert"]), str(private_ca["client_key"])]
    use_connection(monkeypatch, mtls_stub.url, verify=str(private_ca["ca"]), cert=cert)
    assert GantryHook().get_job("j1")["id"] == "j1"  # requests, in the worker
    (event,) = asyncio.run(_events(GantryJobTrigger("j1", reconnect_interval=0.01)))  # aiohttp, in the triggerer
    assert event["status"] == "done"
    use_connection(monkeypatch, mtls_stub.url, verify=str(private_ca["ca"]))
    with pytest.raises(requests.exceptions.SSLError):
        GantryHook().get_job("j1")  # no certificate: the handshake refuses the worker


def test_trigger_without_the_private_ca_does_not_reach_a_tls_gantry(tls_stub, monkeypatch):
    use_connection(monkeypatch, tls_stub.url)
    (event,) = asyncio.run(_events(GantryJobTrigger("j1", reconnect_interval=0.01, max_unreachable_seconds=0.05)))
    assert event["status"] == "error" and "CERTIFICATE_VERIFY_FAILED" in event["message"]


def test_trigger_reports_an_unknown_job_as_an_error_event(stub):
    (event,) = asyncio.run(_events(GantryJobTrigger("nope")))
    assert event["status"] == "error" and "404" in event["message"]


@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_trigger_on_kill_cancels_only_when_asked(stub, cancel_on_kill):
    stub.route("POST", "/v1/jobs/j1/cancel", Reply(202, job_view(cancelRequested=True)))
    asyncio.run(GantryJobTrigger("j1", cancel_on_kill=cancel_on_kill).on_kill())
    posts = stub.requests_to("POST", "/v1/jobs/j1/cancel")
    assert len(posts) == (1 if cancel_on_kill else 0)
    if posts:
        assert "Content-Type" not in posts[0].headers


def test_trigger_on_kill_with_gantry_down_does_not_raise(monkeypatch):
    use_connection(monkeypatch, "http://127.0.0.1:9")
    asyncio.run(GantryJobTrigger("j1").on_kill())


def test_serialized_trigger_keeps_every_argument():
    trigger = GantryJobTrigger("j1", "c", False, 5, 1.0, 2.0, False, 3, 4.0, 100, 30.0)
    path, kwargs = trigger.serialize()
    assert path == "gantry_provider.triggers.gantry.GantryJobTrigger"
    assert GantryJobTrigger(**kwargs).serialize() == (path, kwargs)
    assert kwargs["cancel_on_kill"] is False and kwargs["max_unreachable_seconds"] == 2.0
    assert (kwargs["log_lines_per_interval"], kwargs["logging_interval"]) == (100, 30.0)


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (Reply(200, job_view(state="failed", exitCode=2, reason="oom")), "ended"),
        (Reply(404, {"title": "Not Found", "detail": "no job"}), "not_found"),
        (Reply(403, {"title": "Forbidden"}), "error"),
    ],
)
def test_state_trigger_always_ends_with_an_event(stub, reply, status):
    stub.route("GET", "/v1/jobs/j1", reply)
    (event,) = asyncio.run(_events(GantryJobStateTrigger("j1", poll_interval=0.01)))
    assert event["status"] == status
    if status == "ended":
        assert event["job"]["exitCode"] == 2 and "spec" not in event["job"]


def test_state_trigger_polls_until_the_job_ends(stub):
    states = iter(["queued", "running", "succeeded"])
    stub.route("GET", "/v1/jobs/j1", lambda _req: Reply(200, job_view(state=next(states), result="r")))
    (event,) = asyncio.run(_events(GantryJobStateTrigger("j1", poll_interval=0.01)))
    assert event["status"] == "ended" and event["job"]["state"] == "succeeded"
    assert len(stub.requests_to("GET", "/v1/jobs/j1")) == 3


def test_state_trigger_with_a_missing_connection_ends_with_an_error_event(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_GANTRY", raising=False)
    (event,) = asyncio.run(_events(GantryJobStateTrigger("j1", gantry_conn_id="no_such_conn")))
    assert event["status"] == "error" and "no_such_conn" in event["message"]


def test_the_installed_airflow_has_what_the_floor_is_for():
    """Airflow 3.3 is the declared floor: its triggerer calls BaseTrigger.on_kill, and hooks read connections async."""
    from airflow.sdk import BaseHook
    from airflow.triggers.base import BaseTrigger

    assert "on_kill" in BaseTrigger.__dict__
    assert callable(getattr(BaseHook, "aget_connection", None))
