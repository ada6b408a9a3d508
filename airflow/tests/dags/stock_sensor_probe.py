"""
Test-only DAG (loaded only by airflow/tests): the example DAGs' stock sensor
pattern (HttpSensor on GET v1/jobs/{id} with gantry_checks.job_done) in poke
and reschedule mode side by side, for job ids given in params, so that
test_stock_sensor.py can meet each sensor with a job in any state and run it
under any connection.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum

from airflow.providers.http.sensors.http import HttpSensor
from airflow.sdk import DAG, Param
from gantry_checks import job_done

with DAG(
    dag_id="gantry_stock_sensor_probe",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "job_id": Param("", type="string", description="job for the poke-mode sensor"),
        "reschedule_job_id": Param("", type="string", description="job for the reschedule sensor (default: job_id)"),
    },
):
    for mode, job in (("poke", "params.job_id"), ("reschedule", "params.reschedule_job_id or params.job_id")):
        HttpSensor(
            task_id=f"wait_{mode}",
            http_conn_id="gantry",
            endpoint=f"v1/jobs/{{{{ {job} }}}}",
            response_check=job_done,
            extra_options={"check_response": False},  # as in the example DAGs
            mode=mode,
            poke_interval=float(os.environ.get("GANTRY_SENSOR_POKE_INTERVAL", "1")),
            timeout=300,  # the tests give up long before: a sensor that reaches this has hung
            retries=1,  # unused on an ended or unknown job (AirflowFailException); the tests check that
            retry_delay=timedelta(seconds=1),
        )
