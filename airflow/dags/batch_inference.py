"""
batch_inference: a GPU container reads a batch from a data volume, scores it with a
model from a model volume, writes the predictions back to the data volume, and its
result line (the last line it prints) lands in XCom.

Stock operators only (``apache-airflow-providers-http``):

1. ``submit`` - ``HttpOperator`` POSTs the JobSpec to ``/v1/jobs`` with an
   ``Idempotency-Key`` from dag_id/run_id/task_id/map_index (a retry or a
   replayed request returns the same job: no second container). XCom: job id.
2. ``wait_for_job`` - ``HttpSensor`` in reschedule mode on ``GET /v1/jobs/{id}``
   with the ``job_done`` check (``gantry_checks.py``): the worker slot is
   released between pokes; it succeeds once the job succeeded, with the job's
   ``result`` in XCom, and fails at once, naming the state, exit code and
   reason, once the job failed, was cancelled or timed out, or when Gantry does
   not know the job.
3. ``show_output`` - the last lines of the job's log in the task log, after a
   failure too (a teardown of ``submit``, so the run's state stays
   ``wait_for_job``'s).

The job sees:
  INPUT_PATH   file to score (on the data volume)
  OUTPUT_PATH  where to write predictions (on the data volume, one file per run/map index)
  MODEL_DIR    the read-only model volume

Image, command and volumes are DAG params, so CI runs this DAG on the busybox
test image with host directories in place of the volumes.
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta

import pendulum

from airflow.providers.http.operators.http import HttpOperator
from airflow.providers.http.sensors.http import HttpSensor
from airflow.sdk import DAG, Param
from gantry_checks import job_done, job_id

POKE_INTERVAL = float(os.environ.get("GANTRY_SENSOR_POKE_INTERVAL", "10"))
LOG_TAIL_LINES = 100

IDEMPOTENCY_KEY = "{{ dag.dag_id }}/{{ run_id }}/{{ ti.task_id }}/{{ ti.map_index }}"


# Each example DAG builds its own JobSpec, so that each file reads (and can be
# copied) on its own; this one adds the volumes and the paths the job reads.
def gantry_job_spec(params, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """The JobSpec as JSON text; identical on every try of the same task instance."""
    data_mount = params["data_mount"].rstrip("/")
    run_key = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id) + (f"-{map_index}" if map_index >= 0 else "")
    spec: dict = {
        "image": params["image"],
        "command": list(params["command"]),
        "env": {
            "INPUT_PATH": f"{data_mount}/{params['input']}",
            "OUTPUT_PATH": f"{data_mount}/{params['output_dir']}/{run_key}.jsonl",
            "MODEL_DIR": params["model_mount"],
        },
        "mounts": [
            {"source": params["data_volume"], "target": data_mount, "readOnly": False},
            {"source": params["model_volume"], "target": params["model_mount"], "readOnly": True},
        ],
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
    dag_id="batch_inference",
    description="Batch inference in a GPU container through Gantry (stock HTTP operators)",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gantry", "gpu"],
    params={
        "image": Param("gantry/batch-inference:latest", type="string"),
        "command": Param(["python", "/app/infer.py"], type="array"),
        "data_volume": Param("gantry-data", type="string", description="Named volume or allowed host path"),
        "data_mount": Param("/data", type="string"),
        "model_volume": Param("gantry-models", type="string", description="Named volume or allowed host path"),
        "model_mount": Param("/models", type="string"),
        "input": Param("input/batch.jsonl", type="string", description="Relative to the data volume"),
        "output_dir": Param("output", type="string", description="Relative to the data volume"),
        "gpu_count": Param(1, type="integer", minimum=0),
        "timeout_seconds": Param(3600, type="integer", minimum=1),
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
        mode="reschedule",
        poke_interval=POKE_INTERVAL,
        timeout=6 * 3600,
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
