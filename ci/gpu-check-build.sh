#!/usr/bin/env bash
# Builds, here (no GPU needed), everything ci/gpu-check.sh runs on a GPU machine that has no
# cargo: every GPU test binary of the workspace (integration tests named gpu_*, release mode)
# the gpu_bench binary and the lmf binary (for the end-to-end LoRA step), stripped, packed
# into target/gpu-check/bins.tar.xz (gitignored, carried to the machine). Prints the size and the `carry` list for the device `run` tool.
#
#   ci/gpu-check-build.sh
#
# Env: GPU_BENCH_FEATURES: extra lmf-bench features for gpu_bench (e.g. "bench-pending");
# the defaults of bench/Cargo.toml apply anyway. CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEST=$ROOT/target/gpu-check
LIMIT_MIB=48 # the carried tree may hold 64 MiB in all; keep room for the sources

json=$(mktemp)
trap 'rm -f "$json"' EXIT
echo "gpu-check-build: cargo test --release --workspace --no-run --test 'gpu_*'" >&2
cargo test --release --workspace --no-run --test 'gpu_*' --message-format=json-render-diagnostics >"$json"
echo "gpu-check-build: cargo build --release -p lmf-bench --bin gpu_bench ${GPU_BENCH_FEATURES:+--features $GPU_BENCH_FEATURES}" >&2
cargo build --release -p lmf-bench --bin gpu_bench ${GPU_BENCH_FEATURES:+--features "$GPU_BENCH_FEATURES"} \
  --message-format=json-render-diagnostics >>"$json"
echo "gpu-check-build: cargo build --release -p lmf --bin lmf" >&2
cargo build --release -p lmf --bin lmf --message-format=json-render-diagnostics >>"$json"

rm -rf "$DEST"
mkdir -p "$DEST/tests"
# The executables of the test targets named gpu_* and of the gpu_bench bin.
python3 - "$json" "$DEST" <<'PY'
import json, shutil, sys
src, dest = sys.argv[1], sys.argv[2]
n = 0
for line in open(src):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    if m.get("reason") != "compiler-artifact" or not exe:
        continue
    t = m["target"]
    if "test" in t["kind"] and t["name"].startswith("gpu_"):
        shutil.copy2(exe, f"{dest}/tests/{t['name']}")
        n += 1
    elif "bin" in t["kind"] and t["name"] in ("gpu_bench", "lmf"):
        shutil.copy2(exe, f"{dest}/{t['name']}")
print(f"gpu-check-build: {n} GPU test binaries", file=sys.stderr)
PY
for b in gpu_bench lmf; do
  [ -x "$DEST/$b" ] || { echo "gpu-check-build: $b was not built" >&2; exit 1; }
done
strip "$DEST"/gpu_bench "$DEST"/lmf "$DEST"/tests/*
ls -l "$DEST" "$DEST/tests" >&2
# One xz archive (about 8 MiB instead of 45): the carried tree may hold 64 MiB in all.
# gpu-check.sh unpacks it (with Python's tarfile, so the GPU machine needs no xz).
tar -C "$DEST" -cf - gpu_bench lmf tests | xz -T0 -6 >"$DEST.tar.xz.tmp"
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$DEST.tar.xz.tmp" "$DEST/bins.tar.xz"
kib=$(du -sk "$DEST" | cut -f1)
echo "gpu-check-build: target/gpu-check/bins.tar.xz is $((kib / 1024)) MiB ($kib KiB)" >&2
if [ "$kib" -gt $((LIMIT_MIB * 1024)) ]; then
  echo "gpu-check-build: over ${LIMIT_MIB} MiB: too big to carry with the working tree" >&2
  exit 1
fi
echo 'carry: ["target/gpu-check"]'
