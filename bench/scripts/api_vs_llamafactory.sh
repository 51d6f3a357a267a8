#!/usr/bin/env bash
# CPU serving throughput of the OpenAI-style API: `lmf api` against `llamafactory-cli api` of
# LLaMA-Factory 0.9.5 (huggingface engine), on the same inference YAML and model, in one run:
# requests/s and output tokens/s at 1, 4 and 16 concurrent clients.
#
# Model: train_vs_llamafactory.sh's bench model (lf_train_bench.py make: random Llama, hidden
# 512, 8 layers, 8 heads, 4 kv heads, tied embeddings, float32, an 8192-token byte-level BPE
# with the llama3 special tokens; ~27.4M parameters), template llama3, infer_dtype float32.
#
# usage: bench/scripts/api_vs_llamafactory.sh [N_REQUESTS [MAX_TOKENS]]   (48, 64)
#   N_REQUESTS requests per client count (split between the clients), each a non-streamed
#   greedy chat completion (`temperature: 0`) capped at MAX_TOKENS new tokens.
#   env PYTHON: an interpreter with LLaMA-Factory 0.9.5 (default: the reference venv,
#               ~/.cache/lmf-reference-venv, from ../shared/tools/reference-venv.sh); it also
#               builds the model, so it is required
#   env THREADS: threads of each server (default: min(2, nproc)): torch's OMP_NUM_THREADS for
#               LF, RAYON_NUM_THREADS for lmf. The load generator (api_load.py: stdlib threads
#               that mostly wait on sockets) runs on the same machine.
#   env LMF: the lmf binary (default: `cargo build --release --bin lmf`, target/release/lmf
#               or $CARGO_TARGET_DIR/release/lmf)
#   env LMF_MAX_CONCURRENT: lmf's MAX_CONCURRENT (default 16: all 16 clients batched together)
#   env LF_MAX_CONCURRENT: LF's MAX_CONCURRENT (default: unset = LF as shipped, i.e. 1: LF's
#               huggingface engine takes its requests one at a time, asyncio.Semaphore(1)
#               around each `model.generate` of batch 1; raising it only lets several batch-1
#               `generate` calls share the CPU in threads, there is no batching in that engine)
#   env SKIP_LMF=1 / SKIP_LF=1: run one side only
#
# Each server is started from the bench folder with API_HOST=127.0.0.1, API_PORT=<a free port>,
# API_KEY, API_MODEL_NAME, `<cli> api infer.yaml`, in its own process group (killed on exit, and
# by the EXIT/INT/TERM trap); api_load.py waits for GET /v1/models, then for each of 1, 4, 16
# clients sends one warm-up request and N_REQUESTS timed ones (api_load.py's 16 fixed prompts
# of ~13 to ~440 tokens, ~170 on average, same list for both servers; before the first count,
# a warm-up pass sends each prompt once with max_tokens 2). out tok/s = sum of the responses'
# usage.completion_tokens / wall time. Both sides stop a response at the llama3 template's stop
# tokens (<|eot_id|>, <|eom_id|>) or at max_tokens; the random model almost never picks a stop
# token, so nearly every response is MAX_TOKENS long: the table flags any run where the mean
# completion length is not MAX_TOKENS, and counts the prompts whose greedy text is the same on
# both servers. While `lmf api` is not there (the binary exits before answering), the lmf side
# is skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-48}
max_tokens=${2:-64}
py=${PYTHON:-$HOME/.cache/lmf-reference-venv/bin/python}
[ -x "$py" ] || { echo "no reference venv at $py: run ../shared/tools/reference-venv.sh" >&2; exit 2; }
cores=$(nproc)
threads=${THREADS:-$((cores < 2 ? cores : 2))}
load=$PWD/bench/scripts/api_load.py
key=lmf-bench-key
model_name=bench-llama
clients_list=(1 4 16)

dir=$(mktemp -d)
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM -- "-$server_pid" 2>/dev/null || kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$server_pid" 2>/dev/null || kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
cleanup() { stop_server; rm -rf "$dir"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
export DISABLE_VERSION_CHECK=1 TOKENIZERS_PARALLELISM=false CUDA_VISIBLE_DEVICES=""
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_DATASETS_CACHE="$dir/hf_cache"

# the model (its data and train.yaml are not used here)
"$py" bench/scripts/lf_train_bench.py make "$dir" 1 >"$dir/make.log" 2>&1 ||
  { cat "$dir/make.log" >&2; exit 1; }
made=$(grep '^{' "$dir/make.log")
cat >"$dir/infer.yaml" <<EOF
# bench/scripts/api_vs_llamafactory.sh: paths relative to this folder
model_name_or_path: model
template: llama3
infer_backend: huggingface
infer_dtype: float32
do_sample: false
max_new_tokens: $max_tokens
EOF

free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# serve LABEL MAX_CONCURRENT CMD...: starts CMD infer.yaml as an API server, runs the loads,
# stops it; writes the JSON lines to DIR/LABEL.jsonl. Returns 3 if the server exits before
# answering. (Runs in this shell, not in $(...), so that the trap sees server_pid.)
serve() {
  local label=$1 mc=$2; shift 2
  local port; port=$(free_port)
  local url=http://127.0.0.1:$port
  cd "$dir"
  if [ -n "$mc" ]; then
    API_HOST=127.0.0.1 API_PORT=$port API_KEY=$key API_MODEL_NAME=$model_name MAX_CONCURRENT=$mc \
      setsid "$@" infer.yaml >"$dir/$label.log" 2>&1 &
  else
    API_HOST=127.0.0.1 API_PORT=$port API_KEY=$key API_MODEL_NAME=$model_name \
      setsid env -u MAX_CONCURRENT "$@" infer.yaml >"$dir/$label.log" 2>&1 &
  fi
  server_pid=$!
  cd - >/dev/null
  local rc=0 ready
  ready=$("$py" "$load" wait "$url" --key "$key" --pid "$server_pid" --timeout 900) || rc=$?
  if [ $rc -ne 0 ]; then
    stop_server
    echo "--- $label server log (tail) ---" >&2
    tail -n 30 "$dir/$label.log" >&2
    return $rc
  fi
  local warm
  warm=$("$py" "$load" warmup "$url" --key "$key" --model "$model_name")
  echo "$label: ready after $(echo "$ready" | sed 's/.*: \([0-9.]*\).*/\1/') s," \
    "warm-up pass $(echo "$warm" | sed 's/.*: \([0-9.]*\).*/\1/') s" >&2
  : >"$dir/$label.jsonl"
  for c in "${clients_list[@]}"; do
    "$py" "$load" run "$url" --key "$key" --model "$model_name" --clients "$c" --requests "$n" \
      --max-tokens "$max_tokens" --label "$label" --responses-out "$dir/resp_${label}_$c.json" >>"$dir/$label.jsonl" ||
      echo "$label @ $c clients: some requests failed (see the JSON line)" >&2
  done
  stop_server
}

lf=""
if [ "${SKIP_LF:-0}" != 1 ]; then
  serve llamafactory "${LF_MAX_CONCURRENT:-}" "$(dirname "$py")/llamafactory-cli" api
  lf=$(cat "$dir/llamafactory.jsonl")
fi

lmf=""
if [ "${SKIP_LMF:-0}" != 1 ]; then
  lmf_bin=${LMF:-}
  if [ -z "$lmf_bin" ]; then
    cargo build --release -q --bin lmf
    lmf_bin=${CARGO_TARGET_DIR:-$PWD/target}/release/lmf
  fi
  lmf_bin=$(realpath "$lmf_bin")
  rc=0
  serve lmf "${LMF_MAX_CONCURRENT:-16}" "$lmf_bin" api || rc=$?
  if [ $rc -eq 3 ]; then
    echo "lmf side skipped: \`$lmf_bin api\` exited before answering (not implemented yet?)" >&2
  elif [ $rc -ne 0 ]; then
    exit $rc
  else
    lmf=$(cat "$dir/lmf.jsonl")
  fi
fi

printf '%s\n%s\n%s\n\n' "$made" "$lf" "$lmf"
params=$(echo "$made" | "$py" -c 'import json, sys; print("%.1f" % (json.load(sys.stdin)["parameters"] / 1e6))')
echo "${params}M-parameter random Llama (vocab 8192, fp32), template llama3, $n greedy requests" \
  "per row, max_tokens $max_tokens, $threads threads per server"
echo "LF: llamafactory-cli api (huggingface engine), MAX_CONCURRENT=${LF_MAX_CONCURRENT:-1 (as shipped: one request at a time)};" \
  "lmf: lmf api, MAX_CONCURRENT=${LMF_MAX_CONCURRENT:-16}"
printf '%s\n%s\n' "$lf" "$lmf" | "$py" "$load" table llamafactory lmf "$dir"
