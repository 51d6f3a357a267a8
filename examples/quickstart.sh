#!/usr/bin/env bash
# The offline quickstart, about a minute on 2 cores: build lmf, create a tiny random Llama
# (tokenizer trained on data/), ask it who it is, LoRA-fine-tune it on the identity demo set
# with a name filled in, ask again, and merge the adapter into a standalone model.
# Everything stays under saves/; no network is needed. NAME and AUTHOR choose the identity.
set -euo pipefail
cd "$(dirname "$0")/.."
LMF=${LMF:-}
if [ -z "$LMF" ]; then
  cargo build --release --bin lmf
  LMF=./target/release/lmf
fi
NAME=${NAME:-Tiny Lmf}
AUTHOR=${AUTHOR:-the lmf team}
QUESTION="Who are you?"

# The model's first answer to QUESTION, through the chat CLI (greedy).
ask() {
  printf '%s\nexit\n' "$QUESTION" | "$LMF" chat "$@" 2>/dev/null |
    sed -n 's/^User: Assistant: *//p' | head -n 1
}

[ -f saves/tiny-llama/model.safetensors ] || "$LMF" init saves/tiny-llama

# LLaMA-Factory's identity set ships with {{name}} / {{author}} placeholders: fill them in, as
# its README says, in a copy under saves/data (data/ stays as it is).
mkdir -p saves/data
sed -e "s|{{name}}|$NAME|g" -e "s|{{author}}|$AUTHOR|g" data/identity.json >saves/data/identity.json
printf '{\n  "identity": {\n    "file_name": "identity.json"\n  }\n}\n' >saves/data/dataset_info.json

before=$(ask --model_name_or_path saves/tiny-llama --template chatml --do_sample false --max_new_tokens 32)
"$LMF" train examples/train_lora/tiny_lora_sft.yaml "$@"
after=$(ask examples/inference/tiny_lora_sft.yaml)

echo
echo "User:   $QUESTION"
echo "Before: $before"
echo "After:  $after"
echo
"$LMF" export examples/merge_lora/tiny_lora_sft.yaml
echo "adapter: saves/tiny-llama/lora/sft    merged model: saves/tiny-llama/merged"
echo "chat with it: $LMF chat examples/inference/tiny_lora_sft.yaml"
