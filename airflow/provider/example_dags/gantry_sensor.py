"""
gantry_sensor: a job submitted by one task, waited for by GantryJobSensor in
reschedule mode (the worker slot is given back between pokes, no triggerer
needed), whose result is the sensor's XCom.

The submit uses an Idempotency-Key per task instance, try and clear, so a
retried submit gets the same job back rather than a second one.
"""

from __future__ import annotations

import pendulum

from airflow.sdk import DAG, Param, task

from gantry_provider.hooks.gantry import GantryHook
from gantry_provider.sensors.gantry import GantryJobSensor

with DAG(
    dag_id="gantry_sensor",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gantry"],
    params={
        "image": Param("gantry/batch-inference:latest", type="string"),
        "command": Param(["sh", "-c", "sleep 20; echo sensed-result"], type="array"),
    },
    doc_md=__doc__,
):

    @task
    def submit(params=None, dag_run=None, ti=None) -> str:
        key = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}/{ti.try_number}/{dag_run.clear_number}"
        job = GantryHook("gantry").submit_job({"image": params["image"], "command": params["command"]}, idempotency_key=key)
        return job["id"]

    GantryJobSensor(
        task_id="wait",
        job_id="{{ ti.xcom_pull(task_ids='submit') }}",
        mode="reschedule",
        deferrable=False,
        poke_interval=5,
        timeout=3600,
    ).set_upstream(submit())
