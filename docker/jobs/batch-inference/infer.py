"""
Batch inference with a linear model: small enough to read, shaped like the real thing.

Reads INPUT_PATH (JSONL rows {"id", "features"}), loads MODEL_DIR/model.json
({"weights", "bias"}), writes OUTPUT_PATH (JSONL {"id", "score", "label"}) through
a temporary file and a rename, logs progress, and prints a JSON summary as its
last line (Gantry's `result`, which the DAG puts in XCom). Uses the GPU through
PyTorch when the image has it and a GPU is visible, else plain Python.

`python infer.py --seed DIR` writes a sample model and batch into DIR/models and
DIR/data (used to fill the compose volumes).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path


def log(msg: str) -> None:
    print(msg, flush=True)


def load_model(model_dir: Path) -> tuple[list[float], float]:
    spec = json.loads((model_dir / "model.json").read_text())
    weights = [float(w) for w in spec["weights"]]
    return weights, float(spec.get("bias", 0.0))


def score_rows(rows: list[dict], weights: list[float], bias: float) -> list[float]:
    try:
        import torch  # optional

        if torch.cuda.is_available():
            device = torch.device("cuda")
            log(f"device: {torch.cuda.get_device_name(0)}")
            x = torch.tensor([r["features"] for r in rows], dtype=torch.float32, device=device)
            w = torch.tensor(weights, dtype=torch.float32, device=device)
            return torch.sigmoid(x @ w + bias).tolist()
    except ImportError:
        pass
    log(f"device: cpu (NVIDIA_VISIBLE_DEVICES={os.environ.get('NVIDIA_VISIBLE_DEVICES', 'unset')})")
    return [1 / (1 + math.exp(-(sum(f * w for f, w in zip(r["features"], weights)) + bias))) for r in rows]


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--seed":
        return seed(Path(sys.argv[2]))
    input_path = Path(os.environ["INPUT_PATH"])
    output_path = Path(os.environ["OUTPUT_PATH"])
    model_dir = Path(os.environ.get("MODEL_DIR", "/models"))
    t0 = time.monotonic()

    weights, bias = load_model(model_dir)
    log(f"model: {len(weights)} weights from {model_dir / 'model.json'}")
    rows = [json.loads(line) for line in input_path.read_text().splitlines() if line.strip()]
    log(f"input: {len(rows)} rows from {input_path}")
    for i, row in enumerate(rows):
        if len(row["features"]) != len(weights):
            raise SystemExit(f"row {i} ({row.get('id')}): {len(row['features'])} features, model expects {len(weights)}")

    scores = score_rows(rows, weights, bias) if rows else []
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_suffix(output_path.suffix + ".tmp")
    with tmp.open("w") as out:
        for row, score in zip(rows, scores):
            out.write(json.dumps({"id": row.get("id"), "score": round(score, 6), "label": int(score >= 0.5)}) + "\n")
    tmp.replace(output_path)
    positives = sum(1 for s in scores if s >= 0.5)
    log(f"output: {len(scores)} predictions to {output_path}")
    print(json.dumps({"rows": len(scores), "positives": positives, "output": str(output_path),
                      "seconds": round(time.monotonic() - t0, 3)}), flush=True)
    return 0


def seed(root: Path) -> int:
    sample = Path(__file__).with_name("sample")
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "data" / "input").mkdir(parents=True, exist_ok=True)
    (root / "data" / "output").mkdir(parents=True, exist_ok=True)
    for src, dst in [(sample / "model.json", root / "models" / "model.json"),
                     (sample / "batch.jsonl", root / "data" / "input" / "batch.jsonl")]:
        if not dst.exists():
            shutil.copy(src, dst)
            log(f"seeded {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
