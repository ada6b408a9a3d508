"""Gantry's retries in the spec, and the warning when Airflow's retries would stack on them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from conftest import Reply, job_view
from gantry_provider.operators.gantry import GantryJobOperator

RETRY = {"maxAttempts": 3, "rules": [{"cause": "exit_code", "action": "retry"}], "backoff": {"initialSeconds": 30}}


class FakeTI:
    dag_id, run_id, task_id, map_index, try_number = "d", "r", "t", -1, 1

    def xcom_push(self, key: str, value: object) -> None:
        json.dumps(value)


def context() -> dict:
    return {"ti": FakeTI(), "dag_run": SimpleNamespace(clear_number=0)}


def op(**kw) -> GantryJobOperator:
    return GantryJobOperator(task_id="t", image="local/busybox:latest", command=["true"], reconnect_interval=0.01, **kw)


class Warnings:
    """Stands in for the operator's logger (Airflow's own logging bypasses pytest's caplog) and keeps its warnings."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args)

    def info(self, *_: object) -> None:
        pass

    def stacking(self) -> list[str]:
        return [line for line in self.lines if "stack on Gantry's" in line]


@pytest.fixture()
def warnings(monkeypatch: pytest.MonkeyPatch) -> Warnings:
    w = Warnings()
    monkeypatch.setattr(GantryJobOperator, "log", property(lambda self: w))
    return w


def test_the_retry_rules_go_into_the_spec_as_given():
    assert op(retry=RETRY).build_spec(context())["retry"] == RETRY
    assert "retry" not in op().build_spec(context())


def test_airflow_retries_on_gantry_retries_warn_once_at_execute_with_how_many_runs_can_stack(stub, warnings):
    from airflow.sdk.exceptions import TaskDeferred

    stub.route("GET", "/v1/jobs", Reply(200, {"items": []}))
    stub.route("POST", "/v1/jobs", lambda req: Reply(201, job_view("new", state="queued", position=0)))
    with pytest.raises(TaskDeferred):
        op(retries=2, retry=RETRY, deferrable=True).execute(context())
    [warning] = warnings.stacking()
    assert "Airflow retries (2)" in warning and "retry.maxAttempts 3" in warning and "up to 9 times" in warning


@pytest.mark.parametrize(
    "kw",
    [
        {"retries": 0, "retry": RETRY},
        {"retries": 2},
        {"retries": 2, "retry": {"maxAttempts": 1, "on": ["node_lost"]}},
    ],
)
def test_no_warning_when_only_one_side_retries(kw, warnings):
    op(**kw).warn_stacked_retries()
    assert warnings.stacking() == []
