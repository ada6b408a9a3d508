"""
gantry_operator: the provider's GantryJobOperator submits and waits in one task.

The task defers while the container runs (no worker slot held), copies the
container's log lines into its own log as they arrive, returns the job's result
line to XCom, cancels the job if the task is killed, and on a retry re-attaches
to the job of the same task instance while it still runs (or takes the result
of one that already succeeded); clearing the task runs a fresh job.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

from airflow.sdk import DAG, Param

from gantry_provider.operators.gantry import GantryJobOperator

with DAG(
    dag_id="gantry_operator",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gantry", "gpu"],
    params={
        "image": Param("gantry/batch-inference:latest", type="string"),
        "command": Param(["python", "/app/infer.py"], type="array"),
        "gpu_count": Param(1, type="integer", minimum=0),
        "env": Param({}, type="object"),
        "mounts": Param([], type="array"),
        "timeout_seconds": Param(3600, type="integer", minimum=1),
    },
    render_template_as_native_obj=True,
    doc_md=__doc__,
) as dag:
    GantryJobOperator(
        task_id="run_job",
        gantry_conn_id="gantry",
        image="{{ params.image }}",
        command="{{ params.command }}",
        env="{{ params.env }}",
        mounts="{{ params.mounts }}",
        gpus="{{ {'count': params.gpu_count} if params.gpu_count > 0 else None }}",
        timeout_seconds="{{ params.timeout_seconds }}",
        deferrable=True,  # wait in the triggerer whatever [operators] default_deferrable says
        retries=1,
        retry_delay=timedelta(seconds=5),
    )
