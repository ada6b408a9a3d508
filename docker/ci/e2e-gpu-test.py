"""gpu_test and the provider's DAGs through a running compose stack (run by
scripts/compose-e2e.sh inside the airflow-apiserver container, with its
environment).

Checks, each failing the run: the DAGs of both read-only mounts are parsed
with no import error; a gpu_test run triggered through the REST API (as a
user would, with the admin user airflow-init created) succeeds, every task
succeeded; the job it submitted ran in Gantry with the declared GPU, and the
job's log shows that GPU's UUID as the container's nvidia-smi saw it; Gantry
refuses a job that asks to pull; gantry_operator's GantryJobOperator waits
deferred in the real triggerer and returns the JSON document its job wrote;
gantry_sensor's GantryJobSensor waits in reschedule mode and returns the
job's result; the connection comes from the secrets backend (with
ui_url), and no Airflow process has the token in its environment.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

AIRFLOW = "http://localhost:8080"
GANTRY = "http://gantry:8420"
RUN_ID = os.environ["E2E_RUN_ID"]
GPU_UUID = os.environ["E2E_GPU_UUID"]
# The `gantry` connection, as Airflow's secrets backend reads it (a Docker secret, not the environment).
GANTRY_CONN = json.load(open("/run/secrets/airflow_connections.json"))["gantry"]
GANTRY_AUTH = GANTRY_CONN["extra"]["Authorization"]


def call(method: str, url: str, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            raw, status = res.read().decode(), res.status
    except urllib.error.HTTPError as err:
        raw, status = err.read().decode(), err.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"FAIL: {msg}")


def show_failed_logs(dag_id: str, run_id: str) -> None:
    """The task log of each task instance that failed, to tell why a run failed."""
    _, tis = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
    for ti in tis.get("task_instances", []) if isinstance(tis, dict) else []:
        if ti["state"] in ("failed", "up_for_retry"):
            _, body = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{ti['try_number']}?full_content=true")
            print(f"--- {dag_id} {run_id} {ti['task_id']} try {ti['try_number']} log ---\n{json.dumps(body)[-4000:]}")


status, token = call(
    "POST",
    f"{AIRFLOW}/auth/token",
    {"username": os.environ["E2E_ADMIN_USERNAME"], "password": os.environ["E2E_ADMIN_PASSWORD"]},
)
check(status in (200, 201), f"POST /auth/token: {status} {token}")
auth = {"Authorization": f"Bearer {token['access_token']}"}


def api(method: str, path: str, body=None):
    return call(method, f"{AIRFLOW}/api/v2{path}", body, auth)


# gpu_test and batch_inference come from the ./airflow/dags mount, gantry_operator
# from ./airflow/provider/example_dags.
wanted = {"gpu_test", "batch_inference", "gantry_operator", "gantry_sensor"}
deadline = time.monotonic() + 180
while True:
    _, dags = api("GET", "/dags?limit=100")
    found = {d["dag_id"] for d in dags.get("dags", [])} if isinstance(dags, dict) else set()
    if wanted <= found or time.monotonic() > deadline:
        break
    time.sleep(3)
check(wanted <= found, f"DAGs missing after 180s: {sorted(wanted - found)} (found {sorted(found)})")
_, errors = api("GET", "/importErrors")
check(isinstance(errors, dict) and errors.get("total_entries") == 0, f"import errors: {errors}")
print(f"ok: DAGs parsed from both mounts, no import errors: {sorted(found)}")

status, body = api("PATCH", "/dags/gpu_test", {"is_paused": False})
check(status == 200, f"unpause gpu_test: {status} {body}")
status, body = api("POST", "/dags/gpu_test/dagRuns", {"dag_run_id": RUN_ID, "logical_date": None})
check(status == 200, f"trigger gpu_test: {status} {body}")
started = time.monotonic()
while True:
    _, run = api("GET", f"/dags/gpu_test/dagRuns/{RUN_ID}")
    state = run.get("state") if isinstance(run, dict) else None
    if state in ("success", "failed") or time.monotonic() - started > 300:
        break
    time.sleep(3)
_, tis = api("GET", f"/dags/gpu_test/dagRuns/{RUN_ID}/taskInstances")
states = {ti["task_id"]: ti["state"] for ti in tis.get("task_instances", [])}
print(f"gpu_test {RUN_ID}: {state} after {time.monotonic() - started:.0f}s; tasks {states}")
if state != "success":
    show_failed_logs("gpu_test", RUN_ID)
check(state == "success", f"gpu_test run ended {state}")
check(bool(states) and all(s == "success" for s in states.values()), f"task states {states}")

_, xcom = api("GET", f"/dags/gpu_test/dagRuns/{RUN_ID}/taskInstances/submit/xcomEntries/return_value")
job_id = xcom.get("value") if isinstance(xcom, dict) else None
if isinstance(job_id, str) and job_id.startswith('"'):
    job_id = json.loads(job_id)
check(isinstance(job_id, str) and bool(job_id), f"submit's XCom: {xcom}")
status, job = call("GET", f"{GANTRY}/v1/jobs/{job_id}", headers={"Authorization": GANTRY_AUTH})
check(status == 200 and job.get("state") == "succeeded", f"Gantry job {job_id}: {status} {job}")
check(GPU_UUID in json.dumps(job), f"job {job_id} does not name the GPU {GPU_UUID}: {job}")
status, logs = call("GET", f"{GANTRY}/v1/jobs/{job_id}/logs", headers={"Authorization": GANTRY_AUTH})
check(status == 200 and GPU_UUID in str(logs), f"job log does not show {GPU_UUID}: {logs!r}")
print(f"ok: Gantry job {job_id} succeeded on {GPU_UUID}; its nvidia-smi saw that GPU")

status, body = call(
    "POST",
    f"{GANTRY}/v1/jobs",
    {"image": "gantry/e2e-never-built:latest", "command": ["true"], "pullPolicy": "missing"},
    headers={"Authorization": GANTRY_AUTH},
)
check(status == 422, f"a job asking to pull was answered {status}: {body}")
print("ok: Gantry refuses to pull (pullPolicy missing: 422)")


check(not any("Bearer" in v for v in os.environ.values()), "a bearer token in the API server's environment")
check(GANTRY_CONN["extra"].get("ui_url") == "http://localhost:8420/ui/", f"the gantry connection's ui_url: {GANTRY_CONN['extra']}")
print("ok: the gantry connection (with ui_url) comes from a Docker secret, not the environment")


def run_dag(dag_id: str, run_id: str, conf: dict, timeout: float = 300) -> dict:
    """Triggers one run through the REST API and waits for it; the task instances by task id."""
    status, body = api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
    check(status == 200, f"unpause {dag_id}: {status} {body}")
    status, body = api("POST", f"/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})
    check(status == 200, f"trigger {dag_id}: {status} {body}")
    started = time.monotonic()
    while True:
        _, run = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        state = run.get("state") if isinstance(run, dict) else None
        if state in ("success", "failed") or time.monotonic() - started > timeout:
            break
        time.sleep(3)
    _, tis = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
    by_task = {ti["task_id"]: ti for ti in tis.get("task_instances", [])}
    print(f"{dag_id} {run_id}: {state} after {time.monotonic() - started:.0f}s; tasks { {t: ti['state'] for t, ti in by_task.items()} }")
    if state != "success":
        show_failed_logs(dag_id, run_id)
    check(state == "success", f"{dag_id} run ended {state}")
    return by_task


def xcom(dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
    _, body = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}?deserialize=true")
    value = body.get("value") if isinstance(body, dict) else None
    return json.loads(value) if isinstance(value, str) and value[:1] in "{[\"" else value


def task_log(dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
    _, body = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}?full_content=true")
    return json.dumps(body)


# The provider's operator, deferred: its job writes a JSON document to GANTRY_RESULT_FILE.
op_run = f"{RUN_ID}-operator"
script = "import json, os; print('operator-line'); json.dump({'ok': True, 'n': 3}, open(os.environ['GANTRY_RESULT_FILE'], 'w'))"
tis = run_dag("gantry_operator", op_run, {"image": "gantry/batch-inference:latest", "command": ["python", "-c", script], "gpu_count": 0})
check(xcom("gantry_operator", op_run, "run_job") == {"ok": True, "n": 3}, f"gantry_operator's result: {xcom('gantry_operator', op_run, 'run_job')}")
log = task_log("gantry_operator", op_run, "run_job", tis["run_job"]["try_number"])
check("operator-line" in log and "DEFERRED" in log.upper(), f"run_job's log shows no deferral or no job line: {log[-2000:]}")
print("ok: GantryJobOperator waited in the triggerer; its job's JSON document is its XCom")

# The provider's sensor, in reschedule mode, on a job that runs a while.
sensor_run = f"{RUN_ID}-sensor"
tis = run_dag("gantry_sensor", sensor_run, {"image": "gantry/batch-inference:latest", "command": ["sh", "-c", "sleep 20; echo sensed-result"]})
check(xcom("gantry_sensor", sensor_run, "wait") == "sensed-result", f"gantry_sensor's result: {xcom('gantry_sensor', sensor_run, 'wait')}")
log = task_log("gantry_sensor", sensor_run, "wait", tis["wait"]["try_number"])
check("reschedul" in log.lower() or "up_for_reschedule" in log.lower(), f"wait's log shows no reschedule: {log[-2000:]}")
print("ok: GantryJobSensor waited in reschedule mode and returned the job's result")
