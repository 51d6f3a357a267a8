#!/usr/bin/env bash
# The test command of the README: format check, then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo test --workspace
