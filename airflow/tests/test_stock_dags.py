"""The example DAGs (stock HttpOperator/HttpSensor only) under `airflow dags test`, against a live Gantry."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import TEST_IMAGE

FAKE_NVIDIA_SMI = 'echo "NVIDIA-SMI (fake) | GPU visible: ${NVIDIA_VISIBLE_DEVICES:-none}"'


def test_gpu_test_runs_job_and_shows_output_with_deferrable_sensor(airflow, gantry, gpus):
    conf = {
        "image": TEST_IMAGE,
        "command": ["sh", "-c", f"{FAKE_NVIDIA_SMI}; sleep 4; echo all GPUs ok"],
        "gpu_count": gpus,
    }
    run = airflow.dags_test("gpu_test", conf)
    assert run.state == "success", run.describe()
    assert {t: s["state"] for t, s in run.tis.items()} == {
        "submit": "success",
        "wait_for_job": "success",
        "show_output": "success",
    }, run.describe()

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

    # The sensor deferred, its trigger saw the job pending (404) at least once, then it succeeded.
    out = run.output
    assert "Pausing task as DEFERRED" in out and "running trigger in line" in out, run.describe()
    assert re.search(rf"Request to \S+/v1/jobs/{job['id']}/wait failed", out), "trigger never saw 404"
    assert "wait_for_job completed successfully" in out

    # The job's output is in show_output's XCom and its task log.
    output = run.xcom[("show_output", "return_value")]
    assert "NVIDIA-SMI (fake)" in output and "all GPUs ok" in output
    assert "all GPUs ok" in out


def test_gpu_test_failing_job_fails_the_run_without_waiting_out_the_sensor(airflow, gantry, gpus):
    # The job fails *after* the sensor has deferred, so the trigger (not the first poke) meets the failure.
    conf = {"image": TEST_IMAGE, "command": ["sh", "-c", "sleep 5; echo boom >&2; exit 3"], "gpu_count": gpus}
    run = airflow.dags_test("gpu_test", conf, timeout=150)
    assert run.state == "failed", run.describe()
    assert run.tis["submit"]["state"] == "success"
    assert run.tis["wait_for_job"]["state"] == "failed", run.describe()
    assert run.tis["show_output"]["state"] == "upstream_failed"
    job = gantry.jobs_of_run("gpu_test", run.run_id)[0]
    assert (job["state"], job["exitCode"]) == ("failed", 3)
    # Failed by the trigger, promptly: the sensor's timeout is an hour.
    assert "Pausing task as DEFERRED" in run.output
    assert f"gantry:jobs/{job['id']}?state=failed" in run.output, run.describe()
    assert run.seconds < 150


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
    result = json.loads(run.xcom[("result", "return_value")])
    assert result["rows"] == 4
    # The output landed on the data volume, one file per run.
    out_file = data / "output" / Path(result["output"]).name
    assert out_file.read_text().splitlines() == [f'{{"x": {x}, "y": {3 * x}}}' for x in (1, 2, 3, 4)]
    assert run.xcom[("submit", "return_value")] == gantry.jobs_of_run("batch_inference", run.run_id)[0]["id"]
    # The poke-mode (reschedule) sensor was used here: no deferral.
    assert "Pausing task as DEFERRED" not in run.output


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
    assert run.tis["wait_for_job"]["state"] == "failed"
    assert run.tis["result"]["state"] == "upstream_failed"
    assert ("result", "return_value") not in run.xcom
    job = gantry.jobs_of_run("batch_inference", run.run_id)[0]
    assert (job["state"], job["exitCode"]) == ("failed", 4)


def test_retried_submit_does_not_start_a_second_container(airflow, gantry):
    # Try 1 of `submit` fails after Gantry accepted the job; Airflow retries the task.
    run = airflow.dags_test("gantry_submit_retry_probe", {"image": TEST_IMAGE})
    assert run.state == "success", run.describe()
    assert run.tis["submit"]["try_number"] == 2, run.describe()
    jobs = gantry.jobs_of_run("gantry_submit_retry_probe", run.run_id)
    assert len(jobs) == 1, f"{len(jobs)} jobs for one task instance: {[j['id'] for j in jobs]}"
    assert jobs[0]["id"] == run.xcom[("submit", "return_value")]
    assert jobs[0]["state"] == "succeeded"
