"""GantryJobOperator: submit a container job to Gantry and wait for it, in one task."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import requests

from airflow.exceptions import AirflowException
from airflow.sdk import BaseOperator

from gantry_provider.hooks.gantry import ACTIVE_STATES, GantryApiError, GantryHook
from gantry_provider.sse import JobStream
from gantry_provider.triggers.gantry import GantryJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Labels the operator sets on every job; a DAG's own labels cannot override them.
LABEL_PREFIX = "airflow."


def task_instance_key(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """A short, stable id of one task instance across its tries (the ``airflow.ti`` label)."""
    raw = "\n".join([dag_id, run_id, task_id, str(map_index)])
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


class GantryJobOperator(BaseOperator):
    """
    Runs a container through Gantry and waits for it, in one task.

    * **Submits** a JobSpec (``POST /v1/jobs``) labelled with the task instance
      (``airflow.dag_id``, ``airflow.run_id``, ``airflow.task_id``,
      ``airflow.map_index``, ``airflow.try_number`` and ``airflow.ti``, a hash of
      the first four) and an ``Idempotency-Key`` per try, so a lost answer can be
      asked again without starting a second container.
    * **Re-attaches on retry**: a new try first looks for a job of the same
      dag/run/task/map_index that is still queued or running (e.g. the worker
      died, or the trigger lost Gantry) and follows it instead of starting
      another. Once that job has ended (failed, cancelled, timed out) a retry
      starts a fresh job.
    * **Waits deferred** (default): the worker slot is freed and a
      :class:`~gantry_provider.triggers.gantry.GantryJobTrigger` follows the job
      in the triggerer, copying its log lines into this task's log as they
      arrive. With ``deferrable=False`` the worker follows the same stream.
    * **Result**: the job's ``result`` (its last non-empty stdout line) is the
      task's return value (XCom ``return_value``); XCom ``gantry_job_id`` and
      ``gantry_job`` hold the id and the final Job.
    * **Fails** when the job fails, is cancelled or times out.
    * **Kill**: ``on_kill`` (worker) and the trigger's ``on_kill`` (deferred)
      cancel the job, so a killed task does not leave a GPU busy; a deferral
      that times out cancels it too. Without an explicit ``timeout_seconds``,
      the task's ``execution_timeout`` becomes the job's timeout.

    JobSpec fields (templated): ``image``, ``command``, ``entrypoint``, ``env``,
    ``mounts`` (``[{"source", "target", "readOnly"}]``), ``gpus``
    (``{"count": n}`` or ``{"ids": [...]}``), ``container_resources`` (JobSpec ``resources``;
    ``resources`` is taken by BaseOperator), ``timeout_seconds``,
    ``labels``, ``name``, ``workdir``, ``user``, ``network``, ``priority``,
    ``pull_policy``.

    :param gantry_conn_id: HTTP connection to Gantry (extra
        ``{"Authorization": "Bearer <token>"}``).
    :param deferrable: wait in the triggerer (default) or in the worker.
    :param stream_logs: copy the job's log lines into the task log.
    :param reattach: on a retry, follow a still-running job of this task instance.
    :param cancel_on_kill: cancel the job when the task is killed.
    :param reconnect_interval: seconds between reconnections to the log stream.
    """

    template_fields: Sequence[str] = (
        "image",
        "command",
        "entrypoint",
        "env",
        "mounts",
        "gpus",
        "container_resources",
        "timeout_seconds",
        "labels",
        "name",
        "workdir",
        "user",
        "network",
        "priority",
        "pull_policy",
    )
    template_fields_renderers = {"command": "json", "env": "json", "mounts": "json", "labels": "json"}
    ui_color = "#c9e4ca"

    def __init__(
        self,
        *,
        image: str,
        command: list[str],
        entrypoint: list[str] | None = None,
        env: dict[str, str] | None = None,
        mounts: list[dict[str, Any]] | None = None,
        gpus: dict[str, Any] | None = None,
        container_resources: dict[str, Any] | None = None,
        timeout_seconds: int | None = None,
        labels: dict[str, str] | None = None,
        name: str | None = None,
        workdir: str | None = None,
        user: str | None = None,
        network: str | None = None,
        priority: int | None = None,
        pull_policy: str | None = None,
        gantry_conn_id: str = "gantry",
        deferrable: bool = True,
        stream_logs: bool = True,
        reattach: bool = True,
        cancel_on_kill: bool = True,
        reconnect_interval: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image = image
        self.command = command
        self.entrypoint = entrypoint
        self.env = env
        self.mounts = mounts
        self.gpus = gpus
        self.container_resources = container_resources
        self.timeout_seconds = timeout_seconds
        self.labels = labels
        self.name = name
        self.workdir = workdir
        self.user = user
        self.network = network
        self.priority = priority
        self.pull_policy = pull_policy
        self.gantry_conn_id = gantry_conn_id
        self.deferrable = deferrable
        self.stream_logs = stream_logs
        self.reattach = reattach
        self.cancel_on_kill = cancel_on_kill
        self.reconnect_interval = reconnect_interval
        self._job_id: str | None = None

    # -- the spec ---------------------------------------------------------------------

    def _identity(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        return {
            "dag_id": ti.dag_id,
            "run_id": ti.run_id,
            "task_id": ti.task_id,
            "map_index": ti.map_index if ti.map_index is not None else -1,
            "try_number": ti.try_number,
        }

    def build_spec(self, context: Context) -> dict[str, Any]:
        ident = self._identity(context)
        labels = {k: str(v) for k, v in (self.labels or {}).items()}
        clash = sorted(k for k in labels if k.startswith(LABEL_PREFIX))
        if clash:
            self.log.warning("Labels %s are set by the operator; the DAG's values are ignored", clash)
        labels.update(
            {
                "airflow.dag_id": ident["dag_id"],
                "airflow.run_id": ident["run_id"],
                "airflow.task_id": ident["task_id"],
                "airflow.map_index": str(ident["map_index"]),
                "airflow.try_number": str(ident["try_number"]),
                "airflow.ti": task_instance_key(ident["dag_id"], ident["run_id"], ident["task_id"], ident["map_index"]),
            }
        )
        timeout = self.timeout_seconds
        if timeout is None and isinstance(self.execution_timeout, timedelta):
            timeout = max(1, int(self.execution_timeout.total_seconds()))
        spec: dict[str, Any] = {
            "image": self.image,
            "command": [str(c) for c in self.command],
            "labels": labels,
        }
        optional = {
            "entrypoint": self.entrypoint,
            "env": {k: str(v) for k, v in self.env.items()} if self.env else None,
            "mounts": self.mounts,
            "gpus": self.gpus,
            "resources": self.container_resources,
            "timeoutSeconds": int(timeout) if timeout is not None else None,
            "name": self.name,
            "workdir": self.workdir,
            "user": self.user,
            "network": self.network,
            "priority": self.priority,
            "pullPolicy": self.pull_policy,
        }
        spec.update({k: v for k, v in optional.items() if v is not None})
        return spec

    # -- submit or re-attach ----------------------------------------------------------

    def submit_or_reattach(self, hook: GantryHook, context: Context) -> dict:
        ident = self._identity(context)
        ti_key = task_instance_key(ident["dag_id"], ident["run_id"], ident["task_id"], ident["map_index"])
        if self.reattach:
            active = hook.list_jobs(label=f"airflow.ti={ti_key}", states=ACTIVE_STATES)
            if active:
                job = active[0]  # newest first
                self.log.info(
                    "Re-attaching to Gantry job %s (%s), submitted by try %s of this task instance",
                    job["id"],
                    job["state"],
                    job.get("labels", {}).get("airflow.try_number", "?"),
                )
                for other in active[1:]:
                    self.log.warning("Another active job of this task instance: %s (%s)", other["id"], other["state"])
                return job
        spec = self.build_spec(context)
        key = f"airflow/{ti_key}/try-{ident['try_number']}"
        job = hook.submit_job(spec, idempotency_key=key)
        self.log.info(
            "Submitted Gantry job %s (%s%s): %s %s",
            job["id"],
            job["state"],
            f", queue position {job['position']}" if job.get("position") is not None else "",
            spec["image"],
            spec["command"],
        )
        return job

    # -- execution --------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        hook = GantryHook(self.gantry_conn_id)
        job = self.submit_or_reattach(hook, context)
        self._job_id = job["id"]
        context["ti"].xcom_push(key="gantry_job_id", value=job["id"])
        if self.deferrable:
            self.defer(
                trigger=GantryJobTrigger(
                    job_id=job["id"],
                    gantry_conn_id=self.gantry_conn_id,
                    stream_logs=self.stream_logs,
                    reconnect_interval=self.reconnect_interval,
                ),
                method_name="execute_complete",
                timeout=self.execution_timeout,
            )
        return self.finish(self.follow(hook, job["id"]), context)

    def follow(self, hook: GantryHook, job_id: str, max_unreachable_seconds: float = 600.0) -> dict:
        """Follow the job's SSE stream in the worker until it ends; returns the final Job."""
        stream = JobStream(job_id, self.log, self.stream_logs)
        failing_since: float | None = None
        while True:
            try:
                for ev in hook.stream_events(job_id, stream.last_id):
                    failing_since = None
                    job = stream.handle(ev)
                    if job is not None:
                        return job
            except GantryApiError as exc:
                if exc.status < 500 and exc.status not in (408, 429):
                    raise
                err: Exception = exc
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                err = exc
            else:
                err = RuntimeError("the log stream closed before the job ended")
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > max_unreachable_seconds:
                raise AirflowException(f"lost Gantry while following job {job_id}: {err!r}")
            self.log.warning("Following job %s: %r; reconnecting in %.0f s", job_id, err, self.reconnect_interval)
            time.sleep(self.reconnect_interval)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if event.get("status") != "done":
            raise AirflowException(event.get("message", f"Gantry trigger failed: {event!r}"))
        return self.finish(event["job"], context)

    def finish(self, job: dict, context: Context) -> Any:
        self._job_id = None
        context["ti"].xcom_push(key="gantry_job", value=job)
        if job["state"] == "succeeded":
            self.log.info("Gantry job %s succeeded; result: %r", job["id"], job.get("result"))
            return job.get("result")
        raise AirflowException(
            f"Gantry job {job['id']} ended {job['state']} (exit code {job.get('exitCode')})"
            + (f": {job['reason']}" if job.get("reason") else "")
        )

    # -- kill -------------------------------------------------------------------------

    def _cancel(self, job_id: str) -> None:
        try:
            job = GantryHook(self.gantry_conn_id).cancel_job(job_id)
            self.log.info("Cancelled Gantry job %s (now %s)", job_id, job.get("state"))
        except Exception as exc:  # on_kill must not raise
            self.log.error("Could not cancel Gantry job %s: %r", job_id, exc)

    def on_kill(self) -> None:
        if self.cancel_on_kill and self._job_id:
            self._cancel(self._job_id)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context):
        from airflow.sdk.exceptions import TaskDeferralTimeout

        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout:
            # The deferral ran past execution_timeout: stop the job rather than leave a GPU busy.
            if self.cancel_on_kill:
                ident = self._identity(context)
                key = task_instance_key(ident["dag_id"], ident["run_id"], ident["task_id"], ident["map_index"])
                hook = GantryHook(self.gantry_conn_id)
                for job in hook.list_jobs(label=f"airflow.ti={key}", states=ACTIVE_STATES):
                    self._cancel(job["id"])
            raise
