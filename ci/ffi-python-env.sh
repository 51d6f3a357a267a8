#!/usr/bin/env bash
# Makes (once, cached) the Python venv of the test suite's Python parts: numpy and pytest for
# the Python binding tests of liblmf (ffi/python/tests, run by ffi/tests/python.rs), and the
# official `openai` client that drives `lmf api` (tests/api_openai.rs). Source it: it exports
# LMF_FFI_PYTHON (the venv's python) and LMF_REQUIRE_FFI_PYTHON=1 (so the Rust drivers fail
# instead of skipping when that python is missing).
set -euo pipefail
LMF_FFI_PYENV="${LMF_FFI_PYENV:-$HOME/.cache/lmf/ffi-pyenv}"
LMF_FFI_PYREQS="numpy==2.4.6 pytest==9.2.0 openai==3.63.0"
# The stamp holds the pins the venv was made with: changing them rebuilds it.
if [ "$(cat "$LMF_FFI_PYENV/.lmf-pins" 2>/dev/null)" != "$LMF_FFI_PYREQS" ]; then
  rm -rf "$LMF_FFI_PYENV"
  python3 -m venv "$LMF_FFI_PYENV"
  # shellcheck disable=SC2086 # the pins are separate words
  "$LMF_FFI_PYENV/bin/python" -m pip install --quiet --disable-pip-version-check $LMF_FFI_PYREQS
  echo "$LMF_FFI_PYREQS" > "$LMF_FFI_PYENV/.lmf-pins"
fi
export LMF_FFI_PYTHON="$LMF_FFI_PYENV/bin/python"
export LMF_REQUIRE_FFI_PYTHON=1
unset LMF_FFI_PYREQS
set +euo pipefail
