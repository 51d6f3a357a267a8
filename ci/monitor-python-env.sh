#!/usr/bin/env bash
# Makes (once, cached) the Python venv of the monitor tests (tests/monitors.rs): TensorBoard,
# whose EventAccumulator reads lmf's event files, and MLflow, whose `mlflow server` receives an
# `lmf train` run and whose client reads it back. Source it: it exports LMF_MONITOR_PYTHON (the
# venv's python) and LMF_REQUIRE_MONITOR_PYTHON=1 (so the tests fail instead of skipping when
# that python is missing).
set -euo pipefail
LMF_MONITOR_PYENV="${LMF_MONITOR_PYENV:-$HOME/.cache/lmf/monitor-pyenv}"
LMF_MONITOR_PYREQS="tensorboard==2.21.0 mlflow==3.17.2 wandb==0.31.0 swanlab==0.10.3 protobuf==6.33.6"
# The stamp holds the pins the venv was made with: changing them rebuilds it.
if [ "$(cat "$LMF_MONITOR_PYENV/.lmf-pins" 2>/dev/null)" != "$LMF_MONITOR_PYREQS" ]; then
  rm -rf "$LMF_MONITOR_PYENV"
  python3 -m venv "$LMF_MONITOR_PYENV"
  # shellcheck disable=SC2086 # the pins are separate words
  "$LMF_MONITOR_PYENV/bin/python" -m pip install --quiet --disable-pip-version-check $LMF_MONITOR_PYREQS
  echo "$LMF_MONITOR_PYREQS" > "$LMF_MONITOR_PYENV/.lmf-pins"
fi
export LMF_MONITOR_PYTHON="$LMF_MONITOR_PYENV/bin/python"
export LMF_REQUIRE_MONITOR_PYTHON=1
unset LMF_MONITOR_PYREQS
set +euo pipefail
