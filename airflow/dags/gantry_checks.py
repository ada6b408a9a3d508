"""
How the example DAGs read Gantry's answers with the stock HTTP operators: the
``response_filter`` of the submit task and the ``response_check`` of the
``HttpSensor`` on ``GET v1/jobs/{id}``.

A module of its own, imported by ``gpu_test.py`` and ``batch_inference.py``
(Airflow puts the dags folder on ``sys.path``), so that the rule for "is the
job done, and did it succeed" is written once. It defines no DAG.

The sensor sets ``extra_options={"check_response": False}`` so that every
answer reaches ``job_done``, whatever the connection's ``check_response`` says:
left to the hook, a 404 would be "poke again" (the sensor's default
``response_error_codes_allowlist``), and an unknown job or a wrong base path
would wait out the sensor's timeout.
"""

from __future__ import annotations

import logging

from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException

log = logging.getLogger(__name__)

END_STATES = ("succeeded", "failed", "cancelled", "timed_out")


def _problem(response) -> str:
    """The status line and, for a problem+json answer, its detail (never a job view)."""
    text = f"{response.status_code} {response.reason}"
    try:
        body = response.json()
    except ValueError:
        return text
    if isinstance(body, dict) and body.get("type"):
        return f"{text}: {body.get('detail') or body.get('title')}"
    return text


def job_id(response) -> str:
    """``response_filter`` of ``POST v1/jobs``: the job id for XCom; refuses any answer but 200/201."""
    # Also reached with check_response: false in the connection, where the hook passes every status on.
    if response.status_code not in (200, 201):
        raise AirflowException(f"Gantry did not accept the job: POST {response.url} answered {_problem(response)}")
    return response.json()["id"]


def job_done(response) -> bool | PokeReturnValue:
    """
    ``response_check`` of ``HttpSensor`` on ``GET v1/jobs/{id}``.

    * ``succeeded``: done; the job's ``result`` (its last stdout line) goes to XCom.
    * ``failed``, ``cancelled``, ``timed_out``: raises ``AirflowFailException``
      naming the state, exit code and reason; the task fails without retries,
      since a retry would only read the same ended job.
    * queued, pulling, starting, running: not yet (the sensor pokes again).
    * any answer but 200 (an unknown job, a wrong base path, a proxy's page, a
      refused token): raises at once. 5xx and 429 raise ``AirflowException``
      (the task's retries apply: the next try may get through), the rest
      ``AirflowFailException`` (a retry would get the same answer).

    Every message starts with a word, never a status code: ``HttpSensor.poke``
    swallows an ``AirflowException`` whose text starts with a code in its
    ``response_error_codes_allowlist`` ("404" by default).
    """
    if response.status_code != 200:
        message = f"Gantry job unreadable: GET {response.url} answered {_problem(response)}"
        if response.status_code >= 500 or response.status_code == 429:
            raise AirflowException(message)
        raise AirflowFailException(message)
    try:
        job = response.json()
    except ValueError:
        job = None
    if not isinstance(job, dict) or "state" not in job:
        raise AirflowFailException(
            f"Gantry job unreadable: GET {response.url} answered 200 without a job"
            " (is the connection's base path right?)"
        )
    state = job["state"]
    if state == "succeeded":
        log.info("Gantry job %s succeeded", job["id"])
        return PokeReturnValue(is_done=True, xcom_value=job["result"])
    if state in END_STATES:
        exit_code = "none" if job["exitCode"] is None else job["exitCode"]
        raise AirflowFailException(f"Gantry job {job['id']} {state}, exit code {exit_code}: {job['reason']}")
    log.info("Gantry job %s is %s", job["id"], state)
    return False
