"""End-to-end use of the generated Python client (test/clients.test.ts runs it).

Usage: python e2e.py BASE_URL TOKEN IMAGE

Submits a job through the generated client, waits for it with getJob, reads
its log as text, and prints one JSON line: what the client saw.
"""

import json
import os
import sys
import time

# Where the generated package lies: GANTRY_PY_CLIENT_DIR, else ./build (scripts/ci-openapi.sh setup).
sys.path.insert(0, os.environ.get("GANTRY_PY_CLIENT_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "build"))

from gantry_client import AuthenticatedClient  # noqa: E402
from gantry_client.api.jobs import get_job, submit_job  # noqa: E402
from gantry_client.api.logs import get_job_logs  # noqa: E402
from gantry_client.models import Job, JobSpecInput, JobState, Problem  # noqa: E402
from gantry_client.models.job_spec_input_labels import JobSpecInputLabels  # noqa: E402

TERMINAL = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT}


def main() -> int:
    base_url, token, image = sys.argv[1], sys.argv[2], sys.argv[3]
    client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)
    with client:
        labels = JobSpecInputLabels()
        labels["client"] = "python"
        spec = JobSpecInput(
            image=image,
            command=["sh", "-c", "echo hello from python; echo second line >&2; echo done"],
            labels=labels,
            timeout_seconds=60,
        )
        submitted = submit_job.sync_detailed(client=client, body=spec, idempotency_key="py-e2e-" + str(os.getpid()))
        if not isinstance(submitted.parsed, Job):
            print(json.dumps({"error": "submit", "status": submitted.status_code, "body": submitted.content.decode()}))
            return 1
        job = submitted.parsed
        location = submitted.headers.get("location")

        deadline = time.monotonic() + 60
        while job.state not in TERMINAL:
            if time.monotonic() > deadline:
                print(json.dumps({"error": "timeout", "state": job.state.value}))
                return 1
            time.sleep(0.2)
            got = get_job.sync(client=client, id=job.id)
            if not isinstance(got, Job):
                print(json.dumps({"error": "get", "problem": got.to_dict() if isinstance(got, Problem) else None}))
                return 1
            job = got

        text = get_job_logs.sync(client=client, id=job.id)
        missing = get_job.sync_detailed(client=client, id="no-such-job")
        print(
            json.dumps(
                {
                    "id": job.id,
                    "status": submitted.status_code,
                    "location": location,
                    "state": job.state.value,
                    "exitCode": job.exit_code,
                    "result": job.result,
                    "labels": job.labels.to_dict(),
                    "logs": text,
                    "missingStatus": missing.status_code,
                    "missingType": missing.parsed.type_ if isinstance(missing.parsed, Problem) else None,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
