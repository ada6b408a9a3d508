"""GantryJobSensor: wait for a Gantry job that something else submitted."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import requests

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from gantry_provider.hooks.gantry import TERMINAL_STATES, GantryApiError, GantryHook
from gantry_provider.operators.gantry import GantryJobLink
from gantry_provider.triggers.gantry import GantryJobStateTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


def describe_end(job: dict) -> str:
    return (
        f"Gantry job {job['id']} ended {job['state']} (exit code {job.get('exitCode')})"
        + (f": {job['reason']}" if job.get("reason") else "")
    )


class GantryJobSensor(BaseSensorOperator):
    """
    Waits for a Gantry job (by id) to end, reading ``GET /v1/jobs/{id}``.

    * ``succeeded``: the sensor succeeds and returns the job's ``result`` (XCom
      ``return_value``).
    * ``failed``, ``cancelled``, ``timed_out``: the task fails at once with the
      job's state, exit code and reason (``AirflowFailException``: poking again
      cannot change a finished job, so the sensor's retries are not used).
    * **404**: the job does not exist (or this token may not see it): a
      failure, not something to wait for; so is any other refusal (4xx but
      408 and 429), such as a token that is refused.
    * Gantry unreachable (no connection, a timeout) or answering 5xx, 408 or
      429: the sensor keeps waiting, in every mode and at its first poke;
      deferred, the trigger gives up after ``max_unreachable_seconds`` with
      an ordinary (retryable) error.
    * ``soft_fail`` / ``never_fail`` skip the task instead of failing it, at
      the first poke of the deferrable mode too.

    Deferred (``deferrable``, default from ``[operators] default_deferrable``),
    the job is polled by :class:`~gantry_provider.triggers.gantry.GantryJobStateTrigger`
    every ``poke_interval`` seconds; the trigger always ends with an event
    describing the end and this sensor decides how the task ends.

    :param job_id: the Gantry job (templated).
    :param gantry_conn_id: connection to Gantry.
    :param deferrable: wait in the triggerer instead of a worker.
    :param max_unreachable_seconds: deferred: how long Gantry may stay unreachable.
    """

    template_fields: Sequence[str] = ("job_id",)
    operator_extra_links = (GantryJobLink(),)
    ui_color = "#c9e4ca"

    def __init__(
        self,
        *,
        job_id: str,
        gantry_conn_id: str = GantryHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_unreachable_seconds: float = 600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.gantry_conn_id = gantry_conn_id
        self.deferrable = deferrable
        self.max_unreachable_seconds = max_unreachable_seconds

    def _ended(self, job: dict) -> Any:
        """The task's end for a job in a final state: its result, or a failure that says why."""
        if job["state"] == "succeeded":
            self.log.info("Gantry job %s succeeded; result: %r", job["id"], job.get("result"))
            return job.get("result")
        raise AirflowFailException(describe_end(job))

    def poke(self, context: Context) -> bool | PokeReturnValue:
        try:
            job = GantryHook(self.gantry_conn_id).get_job(str(self.job_id))
        except GantryApiError as exc:
            if exc.status == 404:
                raise AirflowFailException(f"Gantry job {self.job_id} does not exist: {exc}") from exc
            if exc.transient:
                self.log.warning("Gantry job %s: %s; poking again", self.job_id, exc)
                return False
            raise AirflowFailException(str(exc)) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            self.log.warning("Gantry job %s: Gantry unreachable (%r); poking again", self.job_id, exc)
            return False
        if job["state"] not in TERMINAL_STATES:
            self.log.info("Gantry job %s is %s", self.job_id, job["state"])
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._ended(job))

    def execute(self, context: Context) -> Any:
        context["ti"].xcom_push(key="gantry_job_id", value=str(self.job_id))
        if not self.deferrable:
            return super().execute(context)
        # One look first: a job that has already ended needs no trigger.
        try:
            done = self.poke(context)
        except AirflowFailException as exc:
            # BaseSensorOperator.execute, which this path bypasses, skips instead when told to.
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(f"Skipping: {exc}") from exc
            raise
        if done:
            return done.xcom_value if isinstance(done, PokeReturnValue) else None
        self.defer(
            trigger=GantryJobStateTrigger(
                job_id=str(self.job_id),
                gantry_conn_id=self.gantry_conn_id,
                poll_interval=self.poke_interval,
                max_unreachable_seconds=self.max_unreachable_seconds,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        status = event.get("status")
        if status == "ended":
            return self._ended(event["job"])
        if status == "not_found":
            raise AirflowFailException(f"Gantry job {event.get('job_id')} does not exist: {event.get('message')}")
        raise AirflowException(event.get("message", f"waiting for Gantry job {self.job_id} failed: {event!r}"))
