"""GantryJobOperator: submit a container job to Gantry and wait for it, in one task."""

from __future__ import annotations

import ast
import hashlib
import json
import shlex
import time
from collections.abc import Container, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

from airflow.sdk import BaseOperator, BaseOperatorLink, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from airflow.sdk.log import mask_secret

from gantry_provider.hooks.gantry import ACTIVE_STATES, GantryApiError, GantryHook
from gantry_provider.sse import JobStream, job_summary
from gantry_provider.triggers.gantry import GantryJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import TaskInstanceKey

#: Labels the operator sets on every job; a DAG's own labels cannot override them.
LABEL_PREFIX = "airflow."

#: What becomes of a job whose task fails before the job ended and no retry will follow it.
ON_FINISH_ACTIONS = ("cancel", "keep")


def first_try_since_clear(try_number: int, max_tries: Any, retries: int) -> int:
    """
    The first try number since the task instance was last cleared. Airflow
    sets ``max_tries`` to the last try number plus the task's retries at every
    clear (whatever the state of the run, which ``dag_run.clear_number`` does
    not follow), and its own reschedule bookkeeping derives the first try the
    same way. Without ``max_tries`` (outside Airflow) it is 1.
    """
    if not isinstance(max_tries, int) or isinstance(max_tries, bool):
        return 1
    return min(max(1, max_tries - retries + 1), try_number)


def task_instance_key(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """A short, stable id of one task instance across its tries and clears (the ``airflow.ti`` label)."""
    raw = "\n".join([dag_id, run_id, task_id, str(map_index)])
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def _native(value: Any, field: str, kind: type) -> Any:
    """
    A templated field as the type the JobSpec needs. Without
    ``render_template_as_native_obj`` a template renders to text, so text that
    holds a literal of the right type (JSON or Python) is read back; anything
    else is refused with the field's name rather than sent on as garbage.
    """
    if value is None or isinstance(value, kind):
        return value
    if isinstance(value, str):
        text = value.strip()
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(text)
            except (ValueError, SyntaxError):
                continue
            if isinstance(parsed, kind):
                return parsed
    raise AirflowException(f"{field} must be a {kind.__name__}, not {type(value).__name__}: {value!r:.200}")


def normalize_command(value: Any, field: str = "command") -> list[str] | None:
    """
    ``command``/``entrypoint`` as an argument list, the way DockerOperator takes
    them: a list as is, a string that holds a list literal (what a template of a
    list renders to) as that list, any other string split as a shell would
    (``"python -c 'print(1)'"`` → ``["python", "-c", "print(1)"]``, no shell runs it).
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().startswith("["):
            value = _native(value, field, list)
        else:
            value = shlex.split(value)
    if isinstance(value, (list, tuple)) and all(isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in value):
        return [str(c) for c in value]
    raise AirflowException(
        f"{field} must be a list of strings or a string (split like a shell would), "
        f"not {type(value).__name__}: {value!r:.200}"
    )


def normalize_env(value: Any, field: str) -> dict[str, str] | None:
    env = _native(value, field, dict)
    if env is None:
        return None
    bad = [k for k in env if not isinstance(k, str)]
    if bad:
        raise AirflowException(f"{field} names must be strings: {bad!r:.200}")
    return {k: "" if v is None else str(v) for k, v in env.items()}


def normalize_secrets(value: Any) -> list[dict[str, str]] | None:
    """Secret references by name (Gantry resolves the values): each ``{name, env}`` or ``{name, file}``."""
    refs = _native(value, "secrets", list)
    if refs is None:
        return None
    out = []
    for ref in refs:
        if (
            not isinstance(ref, dict)
            or not isinstance(ref.get("name"), str)
            or set(ref) - {"name", "env", "file"}
            or ("env" in ref) == ("file" in ref)
        ):
            raise AirflowException(
                f'each of secrets must be {{"name": ..., "env": ...}} or {{"name": ..., "file": ...}}, not {ref!r:.200}'
            )
        out.append({k: str(v) for k, v in ref.items()})
    return out


class GantryJobLink(BaseOperatorLink):
    """The job on Gantry's operator page (``/ui/#/jobs/{id}``)."""

    name = "Gantry job"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        job_id = XCom.get_value(ti_key=ti_key, key="gantry_job_id")
        if not job_id:
            return ""
        ui_url = GantryHook(getattr(operator, "gantry_conn_id", GantryHook.default_conn_name)).settings.ui_url
        return f"{ui_url}#/jobs/{quote(str(job_id), safe='')}"


class GantryJobOperator(BaseOperator):
    """
    Runs a container through Gantry and waits for it, in one task.

    * **Submits** a JobSpec (``POST /v1/jobs``) labelled with the task instance
      (``airflow.dag_id``, ``airflow.run_id``, ``airflow.task_id``,
      ``airflow.map_index``, ``airflow.try_number``, ``airflow.clear_number``
      and ``airflow.ti``, a hash of dag/run/task/map_index) and an
      ``Idempotency-Key`` per try and clear, so a lost answer can be asked
      again without starting a second container.
    * **On a retry** (same task instance, no clear since its first try) it
      looks at the newest job of the task instance first: one still queued or
      running is re-attached to (not when a cancel was requested for it); one
      that **succeeded** gives its result without running again; otherwise a
      fresh job is submitted. **Clearing** the task (or its run, running or
      finished) starts a new range of tries (Airflow resets ``max_tries``),
      so the first try after a clear always runs a fresh job.
    * **A refusal** (a 4xx answer to the submit, e.g. a policy's 422 or a
      401) fails the task without retries: trying again cannot change it.
    * **Waits deferred** (``deferrable``, default from ``[operators]
      default_deferrable``): the worker slot is freed and a
      :class:`~gantry_provider.triggers.gantry.GantryJobTrigger` follows the job
      in the triggerer, copying its log lines into this task's log in batches.
      Otherwise the worker follows the same stream.
    * **Result**: the job's ``result`` is the task's return value: the JSON
      document the job wrote to the file ``$GANTRY_RESULT_FILE`` names (as
      KubernetesPodOperator's ``/airflow/xcom/return.json``; size-capped by
      Gantry, which redacts secrets and ``private_env`` values from it), or
      else its last non-empty stdout line. With ``multiple_outputs=True`` a
      document that is an object is pushed key by key. The file is offered
      when ``do_xcom_push`` (the default). XCom ``gantry_job_id`` holds the
      id, ``gantry_job`` the final job view without its spec (the spec holds
      env values), and ``gantry_log_tail`` the last ``log_tail_lines`` lines.
    * **Fails** when the job fails, is cancelled or times out; **skips** when it
      failed with an exit code in ``skip_on_exit_code``.
    * **Kill**: ``on_kill`` (worker) and the trigger's ``on_kill`` (deferred)
      cancel the job when ``cancel_on_kill``; a deferral that times out cancels
      it too. Without an explicit ``timeout_seconds``, the task's
      ``execution_timeout`` becomes the job's timeout.

    JobSpec fields (templated): ``image``, ``command``, ``entrypoint``, ``env``,
    ``secrets``, ``mounts`` (``[{"source", "target", "readOnly"}]``), ``gpus``
    (``{"count": n}`` or ``{"ids": [...]}``), ``container_resources`` (JobSpec
    ``resources``; ``resources`` is taken by BaseOperator),
    ``timeout_seconds``, ``labels``, ``name``, ``workdir``, ``user``,
    ``network``, ``priority``, ``pull_policy``; and ``preemptible`` (not
    templated).

    :param command: a list, or a string split as a shell would (a rendered list
        literal is read back as the list).
    :param env: environment variables; templated, so their values appear in the
        task's rendered fields. Use ``private_env`` or ``secrets`` for secrets.
    :param private_env: environment variables that are not templated and never
        shown as rendered fields; sent as the JobSpec's ``privateEnv``, so
        Gantry redacts their values from the job's log and result (as it does
        ``secrets``) and never shows them in the job's view; masked in the
        worker's task log too.
    :param preemptible: the job may be stopped for a job with a better claim to
        its GPUs (a higher priority, or a team within its share while this
        one borrows); it is told first in the file ``GANTRY_PREEMPT_NOTICE_FILE``
        names, and Gantry queues it again as a free attempt, so the task keeps
        waiting for the same job.
    :param termination_grace_period: seconds from SIGTERM to SIGKILL when the
        job is stopped (cancel, timeout, preemption): the JobSpec's
        ``stopGraceSeconds``, within Gantry's ``GANTRY_MAX_STOP_GRACE_SECONDS``.
    :param secrets: secret references, ``[{"name": "hf-token", "env": "HF_TOKEN"}]``
        or ``{"name": ..., "file": "/run/secrets/x"}``: Gantry resolves the values.
    :param gantry_conn_id: connection to Gantry.
    :param deferrable: wait in the triggerer or in the worker.
    :param stream_logs: copy the job's log lines into the task log.
    :param reattach: on a retry, follow (or take the result of) this task
        instance's job instead of starting another.
    :param cancel_on_kill: cancel the job when the task is killed, also while deferred.
    :param on_finish_action: ``"cancel"`` (default) or ``"keep"``: what becomes
        of the job when the task fails before the job ended (Gantry unreachable
        for ``max_unreachable_seconds``, an error following it) on its final
        try, or when no retry would re-attach (``reattach=False``); on an
        earlier try the job is kept for the retry to re-attach to.
    :param max_unreachable_seconds: fail the try after Gantry has been
        unreachable this long while following the job (worker or triggerer).
    :param checkpoint_interval: seconds between the deferred trigger's records
        of how far it has copied the log (XCom ``gantry_log_seq``).
    :param log_lines_per_interval: deferred, the most container lines the
        shared triggerer copies into the task log per ``logging_interval``
        seconds (default 10000 per 60 s; None: no cap); the lines over it are
        counted in the task log, and stay whole in Gantry. The worker (not
        deferred) copies every line.
    :param logging_interval: seconds of that cap's interval.
    :param skip_on_exit_code: exit code(s) of a failed job that skip the task instead.
    :param log_tail_lines: how many last lines go to XCom ``gantry_log_tail``.
    :param reconnect_interval: seconds between reconnections to the log stream.
    """

    template_fields: Sequence[str] = (
        "image",
        "command",
        "entrypoint",
        "env",
        "secrets",
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
    template_fields_renderers = {"command": "json", "env": "json", "secrets": "json", "mounts": "json", "labels": "json"}
    operator_extra_links = (GantryJobLink(),)
    ui_color = "#c9e4ca"

    def __init__(
        self,
        *,
        image: str,
        command: list[str] | str,
        entrypoint: list[str] | str | None = None,
        env: dict[str, str] | None = None,
        private_env: dict[str, str] | None = None,
        secrets: list[dict[str, str]] | None = None,
        mounts: list[dict[str, Any]] | None = None,
        gpus: dict[str, Any] | None = None,
        container_resources: dict[str, Any] | None = None,
        timeout_seconds: int | None = None,
        termination_grace_period: int | None = None,
        labels: dict[str, str] | None = None,
        name: str | None = None,
        workdir: str | None = None,
        user: str | None = None,
        network: str | None = None,
        priority: int | None = None,
        pull_policy: str | None = None,
        retry: dict[str, Any] | None = None,
        preemptible: bool = False,
        gantry_conn_id: str = GantryHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        stream_logs: bool = True,
        reattach: bool = True,
        cancel_on_kill: bool = True,
        on_finish_action: str = "cancel",
        max_unreachable_seconds: float = 600.0,
        checkpoint_interval: float = 5.0,
        log_lines_per_interval: int | None = 10_000,
        logging_interval: float = 60.0,
        skip_on_exit_code: int | Container[int] | None = None,
        log_tail_lines: int = 20,
        reconnect_interval: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image = image
        self.command = command
        self.entrypoint = entrypoint
        self.env = env
        self.private_env = normalize_env(private_env, "private_env")
        self.secrets = secrets
        self.mounts = mounts
        self.gpus = gpus
        self.container_resources = container_resources
        self.timeout_seconds = timeout_seconds
        self.termination_grace_period = termination_grace_period
        self.labels = labels
        self.name = name
        self.workdir = workdir
        self.user = user
        self.network = network
        self.priority = priority
        self.pull_policy = pull_policy
        self.retry = retry
        self.preemptible = preemptible
        self.gantry_conn_id = gantry_conn_id
        self.deferrable = deferrable
        self.stream_logs = stream_logs
        self.reattach = reattach
        self.cancel_on_kill = cancel_on_kill
        if on_finish_action not in ON_FINISH_ACTIONS:
            raise AirflowException(f"on_finish_action must be one of {ON_FINISH_ACTIONS}, not {on_finish_action!r}")
        self.on_finish_action = on_finish_action
        self.max_unreachable_seconds = max_unreachable_seconds
        self.checkpoint_interval = checkpoint_interval
        self.log_lines_per_interval = log_lines_per_interval
        self.logging_interval = logging_interval
        self.skip_on_exit_code = (
            (skip_on_exit_code,) if isinstance(skip_on_exit_code, int) else tuple(skip_on_exit_code or ())
        )
        self.log_tail_lines = log_tail_lines
        self.reconnect_interval = reconnect_interval
        self._job_id: str | None = None

    # -- the spec ---------------------------------------------------------------------

    def _identity(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        dag_run = context.get("dag_run")
        return {
            "dag_id": ti.dag_id,
            "run_id": ti.run_id,
            "task_id": ti.task_id,
            "map_index": ti.map_index if ti.map_index is not None else -1,
            "try_number": ti.try_number,
            "first_try": first_try_since_clear(ti.try_number, getattr(ti, "max_tries", None), self.retries or 0),
            "clear_number": getattr(dag_run, "clear_number", None) or 0,
        }

    def build_spec(self, context: Context) -> dict[str, Any]:
        ident = self._identity(context)
        labels = {str(k): str(v) for k, v in (_native(self.labels, "labels", dict) or {}).items()}
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
                "airflow.clear_number": str(ident["clear_number"]),
                "airflow.first_try": str(ident["first_try"]),
                "airflow.ti": task_instance_key(ident["dag_id"], ident["run_id"], ident["task_id"], ident["map_index"]),
            }
        )
        timeout = self.timeout_seconds
        if timeout is None and isinstance(self.execution_timeout, timedelta):
            timeout = max(1, int(self.execution_timeout.total_seconds()))
        command = normalize_command(self.command)
        if not command:
            raise AirflowException("command must not be empty")
        env = normalize_env(self.env, "env")
        spec: dict[str, Any] = {"image": self.image, "command": command, "labels": labels}
        optional = {
            "entrypoint": normalize_command(self.entrypoint, "entrypoint"),
            "env": env,
            "privateEnv": self.private_env or None,
            "secrets": normalize_secrets(self.secrets),
            "mounts": _native(self.mounts, "mounts", list),
            "gpus": _native(self.gpus, "gpus", dict),
            "resources": _native(self.container_resources, "container_resources", dict),
            "timeoutSeconds": int(timeout) if timeout is not None else None,
            "stopGraceSeconds": int(self.termination_grace_period) if self.termination_grace_period is not None else None,
            "name": self.name,
            "workdir": self.workdir,
            "user": self.user,
            "network": self.network,
            "priority": int(self.priority) if self.priority is not None else None,
            "pullPolicy": self.pull_policy,
            "retry": _native(self.retry, "retry", dict),
            "preemptible": True if self.preemptible else None,
            "resultFile": True if self.do_xcom_push else None,
        }
        spec.update({k: v for k, v in optional.items() if v is not None})
        return spec

    # -- submit, re-attach, or take the earlier result ----------------------------------

    def _previous_job(self, hook: GantryHook, ident: dict[str, Any]) -> dict | None:
        """The newest job of this task instance since it was last cleared, if any."""
        ti_key = task_instance_key(ident["dag_id"], ident["run_id"], ident["task_id"], ident["map_index"])
        for job in hook.list_jobs(label=f"airflow.ti={ti_key}"):  # newest first
            labels = job.get("labels", {})
            if labels.get("airflow.clear_number", "0") == str(ident["clear_number"]) and labels.get(
                "airflow.first_try", "1"
            ) == str(ident["first_try"]):
                return job
        return None

    def submit_or_reattach(self, hook: GantryHook, context: Context) -> dict:
        """
        The job this try follows: the newest job of the task instance since
        its last clear when it is still active and no cancel was asked for, or
        when it succeeded (its result is then taken as is); else a new job.
        The first try after a clear never looks.
        """
        ident = self._identity(context)
        if self.reattach and ident["try_number"] > ident["first_try"]:
            job = self._previous_job(hook, ident)
            if job is not None:
                by_try = job.get("labels", {}).get("airflow.try_number", "?")
                # cancelRequested is absent on servers that predate it: treat that as no cancel.
                if job["state"] in ACTIVE_STATES and not job.get("cancelRequested", False):
                    self.log.info("Re-attaching to Gantry job %s (%s), submitted by try %s", job["id"], job["state"], by_try)
                    return job
                if job["state"] == "succeeded":
                    self.log.info("Gantry job %s of try %s already succeeded; taking its result", job["id"], by_try)
                    return job
                self.log.info(
                    "Gantry job %s of try %s is %s%s; submitting a new one",
                    job["id"],
                    by_try,
                    job["state"],
                    " with a cancel requested" if job.get("cancelRequested") else "",
                )
        spec = self.build_spec(context)
        key = f"airflow/{spec['labels']['airflow.ti']}/clear-{ident['clear_number']}/try-{ident['try_number']}"
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

    def warn_stacked_retries(self) -> None:
        """
        Warns when Airflow's retries and Gantry's would multiply: each of the
        task's tries submits a job that Gantry itself may run maxAttempts times.
        """
        retry = _native(self.retry, "retry", dict) or {}
        attempts = retry.get("maxAttempts", 1)
        tries = 1 + (self.retries or 0)
        if tries > 1 and isinstance(attempts, int) and attempts > 1:
            self.log.warning(
                "Airflow retries (%d) stack on Gantry's (retry.maxAttempts %d): the job can run up to %d times for its "
                "own failures (%d tries x %d attempts); set retries=0 or retry.maxAttempts=1 to keep one of them",
                tries - 1,
                attempts,
                tries * attempts,
                tries,
                attempts,
            )

    def execute(self, context: Context) -> Any:
        for value in (self.private_env or {}).values():
            mask_secret(value)  # also hides the values where the container prints them
        self.warn_stacked_retries()
        hook = GantryHook(self.gantry_conn_id)
        try:
            job = self.submit_or_reattach(hook, context)
        except GantryApiError as exc:
            if 400 <= exc.status < 500 and not exc.transient:
                raise AirflowFailException(f"{exc} (a refusal: another try cannot change it)") from exc
            raise
        self._job_id = job["id"]
        context["ti"].xcom_push(key="gantry_job_id", value=job["id"])
        if job["state"] == "succeeded":
            return self.finish(job, context, list(self._tail(hook, job["id"])))
        if self.deferrable:
            self.defer(
                trigger=GantryJobTrigger(
                    job_id=job["id"],
                    gantry_conn_id=self.gantry_conn_id,
                    stream_logs=self.stream_logs,
                    reconnect_interval=self.reconnect_interval,
                    cancel_on_kill=self.cancel_on_kill,
                    tail_lines=self.log_tail_lines,
                    max_unreachable_seconds=self.max_unreachable_seconds,
                    checkpoint_interval=self.checkpoint_interval,
                    log_lines_per_interval=self.log_lines_per_interval,
                    logging_interval=self.logging_interval,
                ),
                method_name="execute_complete",
                timeout=self.execution_timeout,
            )
        try:
            stream = self.follow(hook, job["id"])
        except Exception:
            self.leave_or_cancel(job["id"], context)
            raise
        assert stream.final_job is not None
        return self.finish(stream.final_job, context, list(stream.tail))

    def _tail(self, hook: GantryHook, job_id: str) -> list[str]:
        if self.log_tail_lines <= 0:
            return []
        return hook.get_logs(job_id, tail=self.log_tail_lines).splitlines()

    def follow(self, hook: GantryHook, job_id: str) -> JobStream:
        """Follow the job's SSE stream in the worker until it ends; the stream then holds the final job and the tail."""
        stream = JobStream(job_id, self.log, self.stream_logs, tail_lines=self.log_tail_lines)
        failing_since: float | None = None
        while True:
            try:
                for events in hook.stream_events(job_id, stream.last_id):
                    failing_since = None
                    if stream.handle(events) is not None:
                        return stream
                err: Exception = RuntimeError("the log stream closed before the job ended")
            except GantryApiError as exc:
                if not exc.transient:
                    raise
                err = exc
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                err = exc
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > self.max_unreachable_seconds:
                raise AirflowException(
                    f"lost Gantry for {self.max_unreachable_seconds:.0f} s while following job {job_id}: {err!r}"
                )
            self.log.warning("Following job %s: %r; reconnecting in %.0f s", job_id, err, self.reconnect_interval)
            time.sleep(self.reconnect_interval)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if event.get("status") != "done":
            if event.get("job_id"):
                self.leave_or_cancel(event["job_id"], context)
            raise AirflowException(event.get("message", f"Gantry trigger failed: {event!r}"))
        return self.finish(event["job"], context, event.get("log_tail") or [])

    def finish(self, job: dict, context: Context, log_tail: list[str]) -> Any:
        self._job_id = None
        ti = context["ti"]
        ti.xcom_push(key="gantry_job", value=job_summary(job))
        ti.xcom_push(key="gantry_log_tail", value=log_tail)
        if job["state"] == "succeeded":
            self.log.info("Gantry job %s succeeded; result: %r", job["id"], job.get("result"))
            return job.get("result")
        message = (
            f"Gantry job {job['id']} ended {job['state']} (exit code {job.get('exitCode')})"
            + (f": {job['reason']}" if job.get("reason") else "")
        )
        if job["state"] == "failed" and job.get("exitCode") in self.skip_on_exit_code:
            raise AirflowSkipException(message)
        raise AirflowException(message)

    # -- a try that fails before its job ended ---------------------------------------

    def leave_or_cancel(self, job_id: str, context: Context) -> None:
        """
        The try fails while its job may still run: on a try a retry follows
        (and re-attaches), the job is left for it; otherwise
        ``on_finish_action`` decides, so no GPU job is orphaned by default.
        The cancel is best effort: Gantry may still be unreachable.
        """
        ti = context["ti"]
        max_tries = getattr(ti, "max_tries", None)
        if not isinstance(max_tries, int):
            max_tries = self.retries or 0
        retried = max_tries != 0 and ti.try_number <= max_tries  # Airflow's own rule for a retry
        if retried and self.reattach:
            self.log.info("Leaving Gantry job %s running: the task's next try re-attaches to it", job_id)
        elif self.on_finish_action == "keep":
            self.log.warning("Leaving Gantry job %s running (on_finish_action='keep')", job_id)
        else:
            self._cancel(job_id)

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
            # The cancel is best effort: a Gantry that cannot be reached must not hide the timeout.
            if self.cancel_on_kill:
                try:
                    job = self._previous_job(GantryHook(self.gantry_conn_id), self._identity(context))
                    if job is not None and job["state"] in ACTIVE_STATES:
                        self._cancel(job["id"])
                except Exception as exc:
                    self.log.error("Could not cancel the Gantry job of this task after its deferral timed out: %r", exc)
            raise
