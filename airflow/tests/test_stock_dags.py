"""The example DAGs (stock HttpOperator/HttpSensor only) under `airflow dags test`, against a live Gantry."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import TEST_IMAGE

FAKE_NVIDIA_SMI = 'echo "NVIDIA-SMI (fake) | GPU visible: ${NVIDIA_VISIBLE_DEVICES:-none}"'


def _states(run) -> dict[str, str]:
    return {t: s["state"] for t, s in run.tis.items()}


def _failure_text(job: dict) -> str:
    """What the sensor's check raises for an ended job, from Gantry's own view of it."""
    exit_code = "none" if job["exitCode"] is None else job["exitCode"]
    return f"Gantry job {job['id']} {job['state']}, exit code {exit_code}: {job['reason']}"


def _no_job_view_logged(run) -> None:
    # The job view carries the spec and its env: no task may log or keep it.
    assert '"spec"' not in run.output and '"env"' not in run.output, run.describe()
    assert not any('"spec"' in str(v) for v in run.xcom.values()), run.xcom


def test_gpu_test_runs_job_and_shows_output(airflow, gantry, gpus):
    conf = {
        "image": TEST_IMAGE,
        "command": ["sh", "-c", f"{FAKE_NVIDIA_SMI}; sleep 4; echo all GPUs ok"],
        "gpu_count": gpus,
    }
    run = airflow.dags_test("gpu_test", conf)
    assert run.state == "success", run.describe()
    assert _states(run) == {"submit": "success", "wait_for_job": "success", "show_output": "success"}, run.describe()

    # Exactly one job (one container) for this run, labelled with the task instance.
    jobs = gantry.jobs_of_run("gpu_test", run.run_id)
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert job["id"] == run.xcom[("submit", "return_value")]
    assert job["state"] == "succeeded"
    assert job["labels"]["airflow.task_id"] == "submit" and job["labels"]["airflow.map_index"] == "-1"
    if gpus:
        assert len(job["gpus"]) == 1
        assert f"GPU visible: {job['gpus'][0]}" in run.xcom[("show_output", "return_value")]

    # The poke-mode sensor read the job unfinished, then succeeded with its result.
    assert f"Gantry job {job['id']} is running" in run.output, run.describe()
    assert "Pausing task as DEFERRED" not in run.output
    assert run.xcom[("wait_for_job", "return_value")] == job["result"] == "all GPUs ok"

    # The job's output is in show_output's XCom and its task log.
    output = run.xcom[("show_output", "return_value")]
    assert "NVIDIA-SMI (fake)" in output and "all GPUs ok" in output
    assert "all GPUs ok" in run.output
    _no_job_view_logged(run)


def test_gpu_test_shows_only_the_tail_of_a_long_log(airflow, gantry):
    conf = {"image": TEST_IMAGE, "command": ["sh", "-c", "seq 1 5000"], "gpu_count": 0}
    run = airflow.dags_test("gpu_test", conf)
    assert run.state == "success", run.describe()
    shown = run.xcom[("show_output", "return_value")].split()
    # The last lines, in order, and not the whole log.
    assert shown[-1] == "5000" and 0 < len(shown) < 5000, shown[:3]
    assert shown == [str(n) for n in range(5001 - len(shown), 5001)]


def test_gpu_test_failing_job_fails_the_run_and_still_shows_output(airflow, gantry, gpus):
    conf = {"image": TEST_IMAGE, "command": ["sh", "-c", "sleep 3; echo boom >&2; exit 3"], "gpu_count": gpus}
    run = airflow.dags_test("gpu_test", conf, timeout=150)
    assert run.state == "failed", run.describe()
    # show_output ran after the failure, yet the run failed (show_output is a teardown).
    assert _states(run) == {"submit": "success", "wait_for_job": "failed", "show_output": "success"}, run.describe()
    job = gantry.jobs_of_run("gpu_test", run.run_id)[0]
    assert (job["state"], job["exitCode"]) == ("failed", 3)
    # The sensor's error names state, exit code and reason; it failed on its first try, not at its timeout.
    assert _failure_text(job) in run.output, run.describe()
    assert run.tis["wait_for_job"]["try_number"] == 1
    assert "Sensor has timed out" not in run.output
    assert "boom" in run.xcom[("show_output", "return_value")]
    _no_job_view_logged(run)


def _batch_dirs(root: Path) -> tuple[Path, Path]:
    data, models = root / "data", root / "models"
    (data / "input").mkdir(parents=True)
    (data / "output").mkdir()
    models.mkdir()
    (data / "input" / "batch.jsonl").write_text("1\n2\n3\n4\n")
    (models / "weight").write_text("3\n")
    for d in (data, data / "input", data / "output", models):
        d.chmod(0o777)
    return data, models


# A stand-in for docker/jobs/batch-inference on busybox: same environment contract.
BUSYBOX_INFER = r"""
set -e
w=$(cat "$MODEL_DIR/weight")
n=0
: > "$OUTPUT_PATH"
while read -r x; do echo "{\"x\": $x, \"y\": $((x * w))}" >> "$OUTPUT_PATH"; n=$((n + 1)); done < "$INPUT_PATH"
if touch "$MODEL_DIR/probe" 2>/dev/null; then echo "model volume is writable" >&2; exit 9; fi
echo "scored $n rows"
echo "{\"rows\": $n, \"output\": \"$OUTPUT_PATH\"}"
"""


def test_batch_inference_reads_and_writes_volumes_and_returns_result(airflow, gantry, gpus, mount_root):
    data, models = _batch_dirs(mount_root)
    conf = {
        "image": TEST_IMAGE,
        "command": ["sh", "-c", BUSYBOX_INFER],
        "data_volume": str(data),
        "model_volume": str(models),
        "gpu_count": gpus,
    }
    run = airflow.dags_test("batch_inference", conf)
    assert run.state == "success", run.describe()
    assert _states(run) == {"submit": "success", "wait_for_job": "success", "show_output": "success"}, run.describe()
    result = json.loads(run.xcom[("wait_for_job", "return_value")])
    assert result["rows"] == 4
    # The output landed on the data volume, one file per run.
    out_file = data / "output" / Path(result["output"]).name
    assert out_file.read_text().splitlines() == [f'{{"x": {x}, "y": {3 * x}}}' for x in (1, 2, 3, 4)]
    assert run.xcom[("submit", "return_value")] == gantry.jobs_of_run("batch_inference", run.run_id)[0]["id"]
    # The reschedule-mode sensor was used here: no deferral.
    assert "Pausing task as DEFERRED" not in run.output
    assert "scored 4 rows" in run.xcom[("show_output", "return_value")]
    _no_job_view_logged(run)


def test_batch_inference_failing_job_fails_the_run(airflow, gantry, gpus, mount_root):
    data, models = _batch_dirs(mount_root)
    conf = {
        "image": TEST_IMAGE,
        "command": ["sh", "-c", "sleep 3; echo 'CUDA out of memory' >&2; exit 4"],
        "data_volume": str(data),
        "model_volume": str(models),
        "gpu_count": gpus,
    }
    run = airflow.dags_test("batch_inference", conf)
    assert run.state == "failed", run.describe()
    assert _states(run) == {"submit": "success", "wait_for_job": "failed", "show_output": "success"}, run.describe()
    assert ("wait_for_job", "return_value") not in run.xcom
    job = gantry.jobs_of_run("batch_inference", run.run_id)[0]
    assert (job["state"], job["exitCode"]) == ("failed", 4)
    assert _failure_text(job) in run.output, run.describe()
    assert run.tis["wait_for_job"]["try_number"] == 1
    assert "CUDA out of memory" in run.xcom[("show_output", "return_value")]


def test_retried_submit_does_not_start_a_second_container(airflow, gantry):
    # Try 1 of `submit` fails after Gantry accepted the job; Airflow retries the task.
    run = airflow.dags_test("gantry_submit_retry_probe", {"image": TEST_IMAGE})
    assert run.state == "success", run.describe()
    assert run.tis["submit"]["try_number"] == 2, run.describe()
    jobs = gantry.jobs_of_run("gantry_submit_retry_probe", run.run_id)
    assert len(jobs) == 1, f"{len(jobs)} jobs for one task instance: {[j['id'] for j in jobs]}"
    assert jobs[0]["id"] == run.xcom[("submit", "return_value")]
    assert jobs[0]["state"] == "succeeded"
