"""After a schemathesis run (scripts/fuzz.sh): no container for a refused request.

Usage: python verify.py BASE_URL TOKEN LEDGER OWNER

- LEDGER: what tools/fuzz/hooks.py wrote, one line per answer to POST /v1/jobs.
- OWNER: the owner of TOKEN, unique to this run; Gantry labels each container
  with its job's owner (dev.gantry.owner), so this run's containers are told
  apart from those of other Gantry instances sharing the engine.

Checks, and exits 1 on any violation:
1. every job in Gantry's store came from a submission that was answered 2xx,
   and no stored job carries the request id of a refused submission;
2. every container of this run (label dev.gantry.owner=OWNER), and every
   Gantry-labelled container naming a job of this store, belongs to an
   accepted job (GANTRY_KEEP_CONTAINERS=true keeps them for this count);
3. every accepted job ends (no job left stuck) and Gantry is still ready.
   The fuzzer may have drained the node or a GPU (POST /v1/nodes/{name}/drain
   and /v1/gpus/{uuid}/drain are an admin's right): every drained node and
   every GPU out of service is undrained first, as an operator ends
   maintenance, and the counts are printed.
Prints the figures as one line.
"""

import json
import subprocess
import sys
import time
import urllib.request

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def api(base, token, path, method="GET"):
    req = urllib.request.Request(base + path, method=method, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.status, json.loads(res.read() or b"null")


def undrain_all(base, token):
    """Undrains every drained node; returns how many there were."""
    _, nodes = api(base, token, "/v1/nodes")
    drained = [n["name"] for n in nodes["items"] if n["drained"]]
    for name in drained:
        api(base, token, f"/v1/nodes/{name}/undrain", method="POST")
    return len(drained)


def undrain_gpus(base, token):
    """Puts every GPU out of service (drained or unhealthy) back; returns how many there were."""
    _, gpus = api(base, token, "/v1/gpus")
    out = [g["uuid"] for g in gpus["items"] if g["health"]["state"] != "healthy"]
    for uuid in out:
        api(base, token, f"/v1/gpus/{uuid}/undrain", method="POST")
    return len(out)


def all_jobs(base, token):
    jobs, cursor = [], None
    while True:
        _, page = api(base, token, "/v1/jobs?limit=500" + (f"&cursor={cursor}" if cursor else ""))
        jobs += page["items"]
        cursor = page["nextCursor"]
        if cursor is None:
            return jobs


def labelled_containers():
    """id → (job id, owner) for every Gantry-labelled container on the engine."""
    fmt = '{{.ID}}|{{.Label "dev.gantry.job-id"}}|{{.Label "dev.gantry.owner"}}'
    out = subprocess.run(
        ["docker", "ps", "-a", "--no-trunc", "--filter", "label=dev.gantry.managed=true", "--format", fmt],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows if len(r) == 3}


def main():
    base, token, ledger_path, owner = sys.argv[1:5]
    with open(ledger_path, encoding="utf-8") as f:
        ledger = [json.loads(line) for line in f if line.strip()]
    accepted = {e["jobId"] for e in ledger if 200 <= e["status"] < 300 and e.get("jobId")}
    refused = [e for e in ledger if not 200 <= e["status"] < 300]
    refused_requests = {e["requestId"] for e in refused if e.get("requestId")}
    problems = []

    # 3. Accepted jobs all end (their timeouts are short in the fuzz config).
    undrained = undrain_all(base, token)
    gpus_undrained = undrain_gpus(base, token)
    deadline = time.monotonic() + 90
    while True:
        jobs = all_jobs(base, token)
        active = [j for j in jobs if j["state"] not in TERMINAL]
        if not active or time.monotonic() > deadline:
            break
        time.sleep(1)
    for j in active:
        problems.append(f"job {j['id']} still {j['state']} ({j['reason']}) 90 s after the run")
    status, ready = api(base, token, "/readyz")
    if status != 200:
        problems.append(f"/readyz answered {status} {ready} after the run")

    # 1. Jobs come only from accepted submissions.
    for j in jobs:
        if j["id"] not in accepted:
            problems.append(
                f"job {j['id']} is in the store but no submission was answered 2xx with it "
                f"(state {j['state']}, name {j.get('name')!r}, request {j.get('requestId')}, labels {j.get('labels')})"
            )
        if j.get("requestId") in refused_requests:
            problems.append(f"job {j['id']} was stored by request {j['requestId']}, which was refused")

    # 2. Containers come only from accepted jobs.
    stored = {j["id"] for j in jobs}
    containers = {cid: job for cid, (job, who) in labelled_containers().items() if who == owner or job in stored}
    for cid, job in containers.items():
        if job not in accepted:
            problems.append(f"container {cid[:12]} (job {job or '?'}) was created during the run for no accepted job")

    by_state = {}
    for j in jobs:
        by_state[j["state"]] = by_state.get(j["state"], 0) + 1
    print(
        "fuzz ledger: "
        f"submissions={len(ledger)} accepted={len(accepted)} refused={len(refused)} "
        f"jobs={len(jobs)} {json.dumps(by_state, sort_keys=True)} containers_created={len(containers)} "
        f"nodes_undrained={undrained} gpus_undrained={gpus_undrained} violations={len(problems)}"
    )
    failed_reasons = sorted({(j["reason"] or "")[:90] for j in jobs if j["state"] == "failed"})
    if failed_reasons:
        print("failed jobs' reasons (distinct): " + " | ".join(failed_reasons[:12]))
    refused_by = {}
    for e in refused:
        key = f"{e['status']}:{(e.get('fields') or ['-'])[0]}"
        refused_by[key] = refused_by.get(key, 0) + 1
    top = sorted(refused_by.items(), key=lambda kv: -kv[1])[:10]
    print("refusals by status:first field: " + ", ".join(f"{k}={v}" for k, v in top))
    for p in problems:
        print("VIOLATION: " + p)
    if not ledger:
        print("VIOLATION: the ledger is empty; the hooks did not run")
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
