"""
Test-only DAGs (loaded only by airflow/tests): they exercise what the example
DAGs rely on in situations that are hard to produce from outside a run.

* gantry_sensor_probe - the stock HttpSensor on /v1/jobs/{id}/wait, deferrable and
  in poke mode side by side, for a job id given in params.
* gantry_submit_retry_probe - the example DAGs' submit task (same macro, same
  templated Idempotency-Key) whose first try fails *after* Gantry accepted the
  job, as if the worker died before the answer was recorded; Airflow retries it.
* gantry_reattach_probe - GantryJobOperator whose first try dies right after
  submitting (a simulated worker crash); the retry must re-attach.
* gantry_result_probe - GantryJobOperator, deferred, with multiple_outputs:
  the job writes a JSON object to $GANTRY_RESULT_FILE.
* gantry_clear_probe - GantryJobOperator followed by a task that holds the run
  open until a file appears, so a test can clear the first task while its run
  is still running.
"""

from __future__ import annotations

import ast
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pendulum

from airflow.providers.http.operators.http import HttpOperator
from airflow.providers.http.sensors.http import HttpSensor
from airflow.sdk import DAG, Param, task

from gantry_provider.hooks.gantry import GantryHook
from gantry_provider.operators.gantry import GantryJobOperator


def _from_example(filename: str, *names: str) -> dict:
    """Take top-level definitions from an example DAG file without running it (which would register its DAG twice)."""
    tree = ast.parse(Path(__file__).with_name(filename).read_text())
    body = [
        node
        for node in tree.body
        if (isinstance(node, ast.FunctionDef) and node.name in names)
        or (isinstance(node, ast.Assign) and any(getattr(t, "id", None) in names for t in node.targets))
    ]
    namespace: dict = {"json": json}
    exec(compile(ast.Module(body=body, type_ignores=[]), filename, "exec"), namespace)
    return {name: namespace[name] for name in names}


_example = _from_example("gpu_test.py", "IDEMPOTENCY_KEY", "gantry_job_spec")
IDEMPOTENCY_KEY, gantry_job_spec = _example["IDEMPOTENCY_KEY"], _example["gantry_job_spec"]

POKE = float(os.environ.get("GANTRY_SENSOR_POKE_INTERVAL", "1"))
START = pendulum.datetime(2025, 1, 1, tz="UTC")

with DAG(
    dag_id="gantry_sensor_probe",
    schedule=None,
    start_date=START,
    catchup=False,
    params={
        "job_id": Param("", type="string", description="job for the deferrable sensor"),
        "poke_job_id": Param("", type="string", description="job for the poke-mode sensor (default: job_id)"),
    },
):
    for deferrable in (True, False):
        HttpSensor(
            task_id="wait_deferrable" if deferrable else "wait_poke",
            http_conn_id="gantry",
            endpoint="v1/jobs/{{ params.job_id }}/wait" if deferrable else "v1/jobs/{{ params.poke_job_id or params.job_id }}/wait",
            deferrable=deferrable,
            poke_interval=POKE,
            timeout=300,  # the tests give up long before: a sensor that reaches this has hung
        )


def _fail_first_try(response, ti) -> bool:
    # Gantry has the job by now; failing here is what a worker crash after the POST looks like.
    return ti.try_number > 1


with DAG(
    dag_id="gantry_submit_retry_probe",
    schedule=None,
    start_date=START,
    catchup=False,
    params={
        "image": Param("local/busybox:latest", type="string"),
        "command": Param(["sh", "-c", "sleep 2; echo done"], type="array"),
        "gpu_count": Param(0, type="integer", minimum=0),
        "timeout_seconds": Param(300, type="integer", minimum=1),
    },
    user_defined_macros={"gantry_job_spec": gantry_job_spec},
):
    submit = HttpOperator(
        task_id="submit",
        http_conn_id="gantry",
        method="POST",
        endpoint="v1/jobs",
        data="{{ gantry_job_spec(params, dag.dag_id, run_id, ti.task_id, ti.map_index) }}",
        headers={"Content-Type": "application/json", "Idempotency-Key": IDEMPOTENCY_KEY},
        response_check=_fail_first_try,
        response_filter=lambda response: response.json()["id"],
        log_response=True,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
    submit >> HttpSensor(
        task_id="wait_for_job",
        http_conn_id="gantry",
        endpoint="v1/jobs/{{ ti.xcom_pull(task_ids='submit') }}/wait",
        deferrable=True,
        poke_interval=POKE,
        timeout=300,
    )


class _CrashAfterSubmit(GantryJobOperator):
    def execute(self, context):
        if context["ti"].try_number == 1:
            job = self.submit_or_reattach(GantryHook(self.gantry_conn_id), context)
            raise RuntimeError(f"simulated worker crash right after submitting job {job['id']}")
        return super().execute(context)


def _job_probe(dag_id: str, operator: type[GantryJobOperator] = GantryJobOperator, **kw) -> None:
    """A DAG of one task, `run_job`: the operator on the image and command given as params."""
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        params={"image": Param("local/busybox:latest", type="string"), "command": Param([], type="array")},
        render_template_as_native_obj=True,
    ):
        operator(task_id="run_job", image="{{ params.image }}", command="{{ params.command }}", reconnect_interval=1, **kw)


_job_probe("gantry_reattach_probe", _CrashAfterSubmit, retries=1, retry_delay=timedelta(seconds=1))
# The same operator waiting in the worker (deferrable=False): the worker follows the SSE stream.
# Gantry runs a job that exits non-zero once more (its own retry, within the one task try).
_job_probe("gantry_sync_probe", deferrable=False, retry={"maxAttempts": 2, "on": ["exit_code"]})


with DAG(
    dag_id="gantry_clear_probe",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"image": Param("local/busybox:latest", type="string"), "go_file": Param("", type="string")},
):

    @task(task_id="hold")
    def hold(params=None, run_id=None):
        # The test clears `first` while this task keeps the run running, then creates go_file.
        print(f"gantry_clear_probe holding run {run_id}", flush=True)
        go = Path(params["go_file"])
        for _ in range(600):
            if go.exists():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{go} never appeared")

    GantryJobOperator(
        task_id="first",
        image="{{ params.image }}",
        command=["sh", "-c", "echo run-$(cat /proc/sys/kernel/random/uuid)"],
        deferrable=False,
        reconnect_interval=1,
    ) >> hold()

_job_probe("gantry_result_probe", deferrable=True, multiple_outputs=True, private_env={"API_KEY": "sk-result-probe-4242"})
