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
# They are the ones `cargo test --workspace` built (the same feature set, so nothing is rebuilt);
# by default those of lmf-trainers that render dates or logs, CLOCK_SHIFT_ALL=1 takes every one
# (a one-off hunt: it doubles the test time, so CI runs the date-sensitive ones).
want_names="lmf_trainers templates data_encoded data_packing_attention data_errors chat train_loop"
mapfile -t bins < <(cargo test --workspace --no-run --message-format=json 2>/dev/null |
  CLOCK_SHIFT_ALL=${CLOCK_SHIFT_ALL:-0} WANT="$want_names" python3 -c '
import json, os, sys
everything = os.environ["CLOCK_SHIFT_ALL"] == "1"
want = set(os.environ["WANT"].split())
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("profile", {}).get("test"):
        continue
    if not m.get("executable"):
        continue
    in_trainers = os.path.basename(os.path.dirname(m["manifest_path"])) == "trainers"
    if everything or (in_trainers and m["target"]["name"] in want):
        print(os.path.dirname(m["manifest_path"]) + "\t" + m["executable"])
')
want=$([ "${CLOCK_SHIFT_ALL:-0}" = 1 ] && echo 20 || echo 7)
[ "${#bins[@]}" -ge "$want" ] || {
  echo "clock-shift: expected $want test binaries or more, got ${#bins[@]}" >&2
  exit 1
}

# The shifted date must really be seen by a process: check libfaketime works here.
shifted=$(faketime -f '+221h' date -u +%F)
real=$(date -u +%F)
[ "$shifted" != "$real" ] || { echo "clock-shift: faketime did not move the clock" >&2; exit 1; }
echo "clock-shift: real date $real, tests see $shifted UTC (TZ=Pacific/Kiritimati, 1 thread)"

failed=0
for entry in "${bins[@]}"; do
  dir=${entry%%$'\t'*}
  bin=${entry#*$'\t'}
  echo "clock-shift: $(basename "$bin")"
  # cargo runs a package's tests from its folder
  (cd "$dir" && env TZ=Pacific/Kiritimati LC_ALL=de_DE.UTF-8 RAYON_NUM_THREADS=1 \
    faketime -f '+221h' "$bin" --quiet) || failed=1
done
exit $failed
