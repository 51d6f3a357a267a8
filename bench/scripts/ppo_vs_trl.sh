#!/usr/bin/env bash
# CPU LoRA PPO: rollout tokens/s, the time of one PPO step and peak memory, `lmf train` against
# `llamafactory-cli train` of LLaMA-Factory 0.9.3 (TRL 0.9.6's PPOTrainer.step, transformers
# 4.52.4 `generate` for the rollouts), on the same YAML and model, in one run:
# dpo_vs_llamafactory.sh's bench model (random Llama, hidden 512, 8 layers, 8 heads, 4 kv heads,
# tied embeddings, float32, a 32000-token BPE: ~40M parameters) written by transformers 4.52.4,
# stage ppo, LoRA r8 on every linear layer, reward_model_type api (a reward server started by
# lf_ppo_bench.py: score = share of ASCII letters in the response), greedy rollouts of
# max_new_tokens 64 on a batch of 4 prompts of 128, 171, 213, 256 tokens (the whole dataset:
# every step rolls out the same 4), ppo_epochs 4 (mini-batch = batch = 4: 4 forward + backward
# + AdamW steps per PPO step), lr 1e-5, max_grad_norm 100.
#
# usage: bench/scripts/ppo_vs_trl.sh [STEPS [WARMUP]]   (4, 1; WARMUP >= 1)
#   Three runs, one after the other: LF as shipped (its PPO forward passes under
#   torch.autocast("cpu") = bf16 autocast, `amp_context`), LF with that autocast off (fp32, what
#   lmf computes), lmf. `4 1` took ~3 min 10 s on an idle dev 2c (2 cores): the inputs ~30 s (a
#   32000-token BPE), LF ~55 s as shipped (~20 s of loading + ~11 s a step) and ~70 s in fp32
#   (~15 s a step), lmf ~30 s (~8 s of loading + ~8 s a step). Run it on an idle machine: torch's
#   OpenMP threads slow down many-fold when another process takes a core.
#   env PYTHON: the PPO reference venv's python (LLaMA-Factory 0.9.3, TRL 0.9.6, transformers
#               4.52.4; default ~/.cache/lmf-ppo-reference-venv/bin/python, made by
#               ci/ppo-reference-venv.sh); it also builds the inputs, so it is required
#   env THREADS: threads on every side (default: min(2, nproc))
#   env LF_FP32: 0 skips the LF fp32 run (default 1)
#   env LMF: the lmf binary (default: `cargo build --release --bin lmf`, target/release/lmf
#               or $CARGO_TARGET_DIR/release/lmf)
#
# Every side runs `<cli> train DIR/train.yaml output_dir=... reward_model=<server URL>` under
# `/usr/bin/time -v` (peak RSS) from the bench folder. Per PPO step, each side reports
#   generate  the rollouts (LF: CustomPPOTrainer.get_inputs, timed by ppo_timing/sitecustomize.py
#             on PYTHONPATH; lmf: its `ppo step N: ...` line in running_log.txt), and the new
#             tokens = the sum of the cut response lengths;
#   score     the reward request (get_rewards);
#   optimize  the PPO step (TRL PPOTrainer.step / lmf Ppo::step): policy and reference forward
#             passes over query + response, advantages, ppo_epochs x (forward, backward, AdamW);
#   total     the time between consecutive trainer_log.jsonl lines (everything, logging included).
# Printed: the means over the steps after WARMUP (step 1's total also holds loading and is
# never used); rollout tokens/s = new tokens / generate seconds over those steps; lmf / LF ratios
# (speed: LF time / lmf time; RSS: lmf / LF). Also the logged rewards and losses, and a hash of
# the step-1 rollouts (equal = the same greedy responses from the same base model). Losses of LF
# and lmf are not expected to agree: each draws its own LoRA A matrices and value head.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-4}
warmup=${2:-1}
[ "$warmup" -ge 1 ] && [ "$steps" -gt "$warmup" ] || { echo "need STEPS > WARMUP >= 1" >&2; exit 2; }
py=${PYTHON:-$HOME/.cache/lmf-ppo-reference-venv/bin/python}
[ -x "$py" ] || { echo "no PPO reference venv at $py: run ci/ppo-reference-venv.sh" >&2; exit 2; }
cores=$(nproc)
threads=${THREADS:-$((cores < 2 ? cores : 2))}
bench=$PWD/bench/scripts/lf_ppo_bench.py
lf_cli=$(dirname "$py")/llamafactory-cli

lmf_bin=${LMF:-}
if [ -z "$lmf_bin" ]; then
  cargo build --release -q --bin lmf
  lmf_bin=${CARGO_TARGET_DIR:-$PWD/target}/release/lmf
fi
lmf_bin=$(realpath "$lmf_bin")

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
export DISABLE_VERSION_CHECK=1 TOKENIZERS_PARALLELISM=false CUDA_VISIBLE_DEVICES=""
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_DATASETS_CACHE="$dir/hf_cache"

# tokenizers 0.21.1 trains the 32000-token BPE serially, and many minutes slower, under
# TOKENIZERS_PARALLELISM=false: parallel here, off for the timed runs
TOKENIZERS_PARALLELISM=true "$py" "$bench" make "$dir" "$steps" >"$dir/make.log" 2>&1 ||
  { cat "$dir/make.log" >&2; exit 1; }
made=$(grep '^{' "$dir/make.log")

cd "$dir"
lf=$("$py" "$bench" watch lf_bf16 "$dir/out_lf" "$warmup" lf -- "$lf_cli" train train.yaml output_dir=out_lf)
lf32=""
if [ "${LF_FP32:-1}" != 0 ]; then
  lf32=$("$py" "$bench" watch lf_fp32 "$dir/out_lf32" "$warmup" lf-fp32 -- \
    "$lf_cli" train train.yaml output_dir=out_lf32)
fi
lmf=$("$py" "$bench" watch lmf "$dir/out_lmf" "$warmup" lmf -- "$lmf_bin" train train.yaml output_dir=out_lmf)
cd - >/dev/null

printf '%s\n%s\n%s\n%s\n\n' "$made" "$lf" "$lf32" "$lmf"
printf '%s\n%s\n%s\n%s\n' "$made" "$lf" "$lf32" "$lmf" | "$py" "$bench" table "$steps" "$warmup" "$threads"
