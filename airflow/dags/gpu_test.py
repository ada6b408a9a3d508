"""
gpu_test: run ``nvidia-smi`` in a GPU container through Gantry and show its output.

Stock operators only (``apache-airflow-providers-http``); the DAG never touches
the Docker socket. Three tasks:

1. ``submit``  - ``HttpOperator`` POSTs a JobSpec to ``/v1/jobs`` with an
   ``Idempotency-Key`` built from dag_id/run_id/task_id/map_index, so a retried
   or replayed submission returns the same job instead of starting a second
   container. XCom: the job id.
2. ``wait_for_job`` - ``HttpSensor`` on ``GET /v1/jobs/{id}`` with the
   ``job_done`` check (``gantry_checks.py``): it pokes while the job is queued or
   running, succeeds once the job succeeded (XCom: the job's ``result``, its last
   stdout line), and fails at once, naming the state, exit code and reason, once
   the job failed, was cancelled or timed out, or when Gantry does not know the
   job. Poke mode: ``nvidia-smi`` ends in seconds, so holding the worker slot
   costs less than a reschedule per poke (``batch_inference`` shows reschedule).
3. ``show_output`` - ``HttpOperator`` GETs the last lines of the job's log as
   text into the task log (and XCom). A teardown of ``submit``: it runs whenever
   a job was submitted, after a failure too, and the run's state stays
   ``wait_for_job``'s (a plain ``all_done`` leaf that succeeds would make the
   run succeed on a failed job).

Image, command, GPU count and timeout are DAG params, so CI runs this same DAG
on a CPU-only test image (``local/busybox``) with a fake ``nvidia-smi`` command.
Connection ``gantry`` (e.g. ``AIRFLOW_CONN_GANTRY``): an HTTP connection to
Gantry whose extra is ``{"Authorization": "Bearer <token>"}``.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pendulum

from airflow.providers.http.operators.http import HttpOperator
from airflow.providers.http.sensors.http import HttpSensor
from airflow.sdk import DAG, Param
from gantry_checks import job_done, job_id

POKE_INTERVAL = float(os.environ.get("GANTRY_SENSOR_POKE_INTERVAL", "10"))
LOG_TAIL_LINES = 100

# Same key on every try of this task in this run: a retry gets the same job back.
IDEMPOTENCY_KEY = "{{ dag.dag_id }}/{{ run_id }}/{{ ti.task_id }}/{{ ti.map_index }}"


# Each example DAG builds its own JobSpec, so that each file reads (and can be
# copied) on its own; this one needs only json, and the test DAGs in
# airflow/tests/dags reuse it by name.
def gantry_job_spec(params, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """The JobSpec as JSON text (HttpOperator has no json=; the body must not vary between tries)."""
    spec: dict = {
        "image": params["image"],
        "command": list(params["command"]),
        "timeoutSeconds": int(params["timeout_seconds"]),
        "labels": {
            "airflow.dag_id": dag_id,
            "airflow.run_id": run_id,
            "airflow.task_id": task_id,
            "airflow.map_index": str(map_index),
        },
    }
    if int(params["gpu_count"]) > 0:
        spec["gpus"] = {"count": int(params["gpu_count"])}
    return json.dumps(spec)


with DAG(
    dag_id="gpu_test",
    description="Run nvidia-smi in a GPU container through Gantry (stock HTTP operators)",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gantry", "gpu"],
    params={
        "image": Param("gantry/nvidia-smi-check:latest", type="string", description="Job image"),
        "command": Param(["nvidia-smi"], type="array", description="Command, as a list of strings"),
        "gpu_count": Param(1, type="integer", minimum=0, description="GPUs to allocate (0 = CPU only)"),
        "timeout_seconds": Param(300, type="integer", minimum=1, description="Gantry ends the job after this"),
    },
    user_defined_macros={"gantry_job_spec": gantry_job_spec},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    doc_md=__doc__,
) as dag:
    # No log_response: Gantry answers with the job view, which holds the spec and its env.
    submit = HttpOperator(
        task_id="submit",
        http_conn_id="gantry",
        method="POST",
        endpoint="v1/jobs",
        data="{{ gantry_job_spec(params, dag.dag_id, run_id, ti.task_id, ti.map_index) }}",
        headers={"Content-Type": "application/json", "Idempotency-Key": IDEMPOTENCY_KEY},
        response_filter=job_id,
    )

    wait_for_job = HttpSensor(
        task_id="wait_for_job",
        http_conn_id="gantry",
        endpoint="v1/jobs/{{ ti.xcom_pull(task_ids='submit') }}",
        response_check=job_done,
        extra_options={"check_response": False},  # every answer to job_done (gantry_checks.py says why)
        mode="poke",
        poke_interval=POKE_INTERVAL,
        timeout=3600,
    )

    show_output = HttpOperator(
        task_id="show_output",
        http_conn_id="gantry",
        method="GET",
        endpoint="v1/jobs/{{ ti.xcom_pull(task_ids='submit') }}/logs",
        data={"tail": LOG_TAIL_LINES},
        log_response=True,
    )

    submit >> wait_for_job >> show_output.as_teardown(setups=submit)
