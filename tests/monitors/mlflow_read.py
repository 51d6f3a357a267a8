"""Reads the runs of one MLflow experiment back through MLflow's own Python client and prints
them as one JSON object: {"runs": [{"run_id", "run_name", "status", "params": {k: v},
"metrics": {key: [[step, value], ...]}, "artifacts": [paths], "artifact_bytes": {path: size}}]}.
Used by tests/monitors.rs after an `lmf train` with `report_to: mlflow`.

usage: python mlflow_read.py TRACKING_URI EXPERIMENT_NAME DOWNLOAD_DIR
"""

import json
import os
import sys

from mlflow.tracking import MlflowClient


def main(uri, experiment, download):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = []
    if exp is not None:
        for run in client.search_runs([exp.experiment_id]):
            rid = run.info.run_id
            metrics = {}
            for key in run.data.metrics:
                hist = client.get_metric_history(rid, key)
                metrics[key] = sorted([[m.step, m.value] for m in hist])
            arts = [a.path for a in client.list_artifacts(rid)]
            sizes = {}
            for a in arts:
                local = client.download_artifacts(rid, a, download)
                sizes[a] = os.path.getsize(local)
            runs.append(
                {
                    "run_id": rid,
                    "run_name": run.info.run_name,
                    "status": run.info.status,
                    "params": dict(run.data.params),
                    "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
                    "metrics": metrics,
                    "artifacts": sorted(arts),
                    "artifact_bytes": sizes,
                }
            )
    print(json.dumps({"runs": runs}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
