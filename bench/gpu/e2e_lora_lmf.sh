#!/usr/bin/env bash
# End-to-end LoRA training step, lmf side of ci/gpu-check.sh: `lmf train` (stage pt, LoRA r=8
# on all linear layers, bf16, packed 2048-token rows, gradient checkpointing on as in
# LLaMA-Factory) on MODEL_DIR with the text in TEXT_FILE (jsonl, {"text": ...}). Tokens/s is
# taken from two runs' `train_runtime` (train_results.json): (long - short) steps over the
# difference in time, so model loading, kernel compilation and the first steps do not count.
# Prints one JSON line like e2e_lora_torch.py.
#
# Usage: e2e_lora_lmf.sh LMF_BIN MODEL_DIR TEXT_FILE WORK_DIR [SHORT_STEPS LONG_STEPS]
set -euo pipefail
LMF="$1"; MODEL="$2"; TEXT="$3"; W="$4"; SHORT="${5:-2}"; LONG="${6:-12}"
mkdir -p "$W/data"
cp "$TEXT" "$W/data/e2e.jsonl"
echo '{"e2e": {"file_name": "e2e.jsonl", "columns": {"prompt": "text"}}}' > "$W/data/dataset_info.json"
run() {  # $1 = max_steps
  local out="$W/out-$1"
  rm -rf "$out"
  cat > "$W/e2e-$1.yaml" <<YAML
model_name_or_path: $MODEL
stage: pt
do_train: true
finetuning_type: lora
lora_target: all
lora_rank: 8
lora_alpha: 16
dataset: e2e
dataset_dir: $W/data
cutoff_len: 2048
per_device_train_batch_size: 1
gradient_accumulation_steps: 1
max_steps: $1
learning_rate: 1.0e-4
lr_scheduler_type: constant
bf16: true
logging_steps: 1
save_strategy: "no"
plot_loss: false
report_to: none
disable_shuffling: true
output_dir: $out
YAML
  LMF_DEVICE="${LMF_E2E_DEVICE:-cuda:0}" "$LMF" train "$W/e2e-$1.yaml" 2> "$W/e2e-$1.log" >&2 || { tail -20 "$W/e2e-$1.log" >&2; return 1; }
}
run "$SHORT"
run "$LONG"
python3 - "$W" "$SHORT" "$LONG" <<'PY'
import json, re, sys
w, short, long_ = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rt = {n: json.load(open(f"{w}/out-{n}/train_results.json"))["train_runtime"] for n in (short, long_)}
peak = 0
for line in open(f"{w}/e2e-{long_}.log"):
    m = re.search(r"peak CUDA memory (\d+) bytes", line)
    if m:
        peak = int(m.group(1))
tps = (long_ - short) * 2048 / max(rt[long_] - rt[short], 1e-9)
print(json.dumps({"bench": "e2e_lora_step", "impl": "lmf", "tokens_per_s": tps, "peak_bytes": peak, "seq": 2048}), flush=True)
PY
