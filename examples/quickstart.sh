#!/usr/bin/env bash
# The offline quickstart: build lmf, create a tiny random Llama (tokenizer trained on data/),
# LoRA-fine-tune it on the demo data, chat with the result, merge the adapter into a model.
# Everything stays under saves/; no network is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
LMF=${LMF:-}
if [ -z "$LMF" ]; then
  cargo build --release --bin lmf
  LMF=./target/release/lmf
fi
[ -d saves/tiny-llama ] && [ -f saves/tiny-llama/model.safetensors ] || "$LMF" init saves/tiny-llama
"$LMF" train examples/train_lora/tiny_lora_sft.yaml "$@"
printf 'Who are you?\nexit\n' | "$LMF" chat examples/inference/tiny_lora_sft.yaml
"$LMF" export examples/merge_lora/tiny_lora_sft.yaml
ls saves/tiny-llama/lora/sft saves/tiny-llama/merged
