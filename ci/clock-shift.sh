#!/usr/bin/env bash
# Reruns the tests that render dates or depend on the machine's surroundings (chat templates,
# data encoding, the clock, the trainer's log lines) in a shifted world: the system clock 9 days
# and 5 hours ahead (libfaketime), the time zone 14 hours east of UTC, another locale, and one
# thread. A fixture that holds only on the day it was written, or on this machine's clock or
# thread count, fails here. Run by .ci/run after the main test command (the binaries are built
# by then, so this costs only the test run).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v faketime >/dev/null; then
  echo "clock-shift: installing faketime (Debian)"
  { apt-get install -y -qq faketime || { apt-get update -qq && apt-get install -y -qq faketime; }; } \
    >/dev/null 2>&1 || true
fi
command -v faketime >/dev/null || { echo "clock-shift: faketime is required" >&2; exit 1; }

# The test binaries, built under the real clock (so cargo's freshness checks are not fooled).
targets=(-p lmf-trainers --lib --test templates --test data_encoded --test chat --test train_loop)
mapfile -t bins < <(cargo test "${targets[@]}" --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])
')
[ "${#bins[@]}" -ge 5 ] || { echo "clock-shift: expected 5 test binaries, got ${#bins[@]}" >&2; exit 1; }

# The shifted date must really be seen by a process: check libfaketime works here.
shifted=$(faketime -f '+221h' date -u +%F)
real=$(date -u +%F)
[ "$shifted" != "$real" ] || { echo "clock-shift: faketime did not move the clock" >&2; exit 1; }
echo "clock-shift: real date $real, tests see $shifted UTC (TZ=Pacific/Kiritimati, 1 thread)"

cd trainers # cargo runs a package's tests from its folder
for bin in "${bins[@]}"; do
  echo "clock-shift: $(basename "$bin")"
  env TZ=Pacific/Kiritimati LC_ALL=de_DE.UTF-8 RAYON_NUM_THREADS=1 \
    faketime -f '+221h' "$bin" --quiet
done
