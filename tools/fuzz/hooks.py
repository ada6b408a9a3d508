"""Schemathesis hooks for scripts/fuzz.sh (loaded through SCHEMATHESIS_HOOKS).

Every answer to POST /v1/jobs and POST /v1/gpus/{uuid}/smoke (the two
endpoints that make jobs), in every phase, is written to the ledger
(GANTRY_FUZZ_LEDGER, one JSON object a line): its status, its X-Request-Id and,
when Gantry accepted the job, the job id. tools/fuzz/verify.py then checks
that only accepted submissions left jobs and containers behind.
"""

import json
import os

import schemathesis

LEDGER = os.environ["GANTRY_FUZZ_LEDGER"]


@schemathesis.hook
def after_call(context, case, response):
    # Both endpoints that make jobs: a submission, and a GPU's smoke job (202 with the job).
    if case.method.upper() != "POST" or case.path not in ("/v1/jobs", "/v1/gpus/{uuid}/smoke"):
        return
    entry = {"status": response.status_code, "requestId": (response.headers.get("x-request-id") or [None])[0]}
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if 200 <= response.status_code < 300:
        entry["jobId"] = body.get("id") if isinstance(body, dict) else None
    elif isinstance(body, dict):
        entry["fields"] = sorted({e.get("field") for e in body.get("errors") or [] if isinstance(e, dict)})
    with open(LEDGER, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


BUSYBOX = os.environ.get("GANTRY_FUZZ_IMAGE", "local/busybox:latest")


@schemathesis.hook
def flatmap_body(context, body):
    """Half of the generated job specs run on the local test image, so that
    fuzzed fields (env, user, workdir, resources, labels, ...) reach container
    creation on the real engine instead of stopping at "image not present"."""
    from hypothesis import strategies as st

    op = context.operation
    if (
        op is None
        or op.method.upper() != "POST"
        or op.path != "/v1/jobs"
        or not isinstance(body, dict)
        or not isinstance(body.get("image"), str)
    ):
        return st.just(body)
    return st.sampled_from([body, {**body, "image": BUSYBOX}])
