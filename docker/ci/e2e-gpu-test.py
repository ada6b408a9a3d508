"""gpu_test through a running compose stack (run by scripts/compose-e2e.sh
inside the airflow-apiserver container, with its environment).

Checks, each failing the run: the DAGs of both read-only mounts are parsed
with no import error; a gpu_test run triggered through the REST API (as a
user would, with the admin user airflow-init created) succeeds, every task
succeeded; the job it submitted ran in Gantry with the declared GPU, and the
job's log shows that GPU's UUID as the container's nvidia-smi saw it; Gantry
refuses a job that asks to pull.
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
GANTRY_AUTH = json.loads(os.environ["AIRFLOW_CONN_GANTRY"])["extra"]["Authorization"]


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
wanted = {"gpu_test", "batch_inference", "gantry_operator"}
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
