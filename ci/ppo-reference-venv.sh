#!/usr/bin/env bash
# Makes (once, cached) the Python venv that lmf's PPO is checked against: LLaMA-Factory 0.9.3,
# the last release whose pinned TRL (0.9.6) still has the PPOTrainer that `stage: ppo` uses
# (LLaMA-Factory 0.9.5 with TRL >= 0.20 does not start PPO). It runs on the CPU.
# usage: ci/ppo-reference-venv.sh        (venv: ${LMF_PPO_VENV:-~/.cache/lmf-ppo-reference-venv})
# then:  $LMF_PPO_VENV/bin/python tests/fixtures/hf/ppo/make_ppo_step.py   (see that README)
# Notes: torch comes from PyPI (its Linux wheels pull the CUDA libraries, ~3 GB to download;
# the CPU-only index is not reachable from these machines); the first install took 2 min 40 s
# on the 2-core dev machine (~8 GB on disk). torch 2.9.1 is the same torch as the main
# reference venv (shared/tools/reference-venv.sh), so the two venvs differ only in
# transformers/TRL/PEFT/LLaMA-Factory.
# numpy must stay < 2 (LLaMA-Factory 0.9.3 pins it) and then pyarrow must be < 20.
# torchvision is not installed: nothing on the text-only PPO path imports it.
set -euo pipefail
LMF_PPO_VENV="${LMF_PPO_VENV:-$HOME/.cache/lmf-ppo-reference-venv}"
LMF_PPO_PINS="torch==2.9.1 llamafactory==0.9.3 transformers==4.52.4 trl==0.9.6 peft==0.15.2 accelerate==1.7.0 tokenizers==0.21.1 datasets==3.6.0 numpy==1.26.4 pyarrow==19.0.1 safetensors==0.5.3"
# The stamp holds the pins the venv was made with: changing them rebuilds it.
if [ "$(cat "$LMF_PPO_VENV/.lmf-pins" 2>/dev/null)" != "$LMF_PPO_PINS" ]; then
  rm -rf "$LMF_PPO_VENV"
  python3 -m venv "$LMF_PPO_VENV"
  "$LMF_PPO_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  # shellcheck disable=SC2086 # the pins are separate words
  "$LMF_PPO_VENV/bin/python" -m pip install --quiet --disable-pip-version-check $LMF_PPO_PINS
  echo "$LMF_PPO_PINS" > "$LMF_PPO_VENV/.lmf-pins"
fi
# Smoke checks: the CLI starts, TRL's PPO classes import.
DISABLE_VERSION_CHECK=1 "$LMF_PPO_VENV/bin/llamafactory-cli" version | grep -q "0.9.3"
"$LMF_PPO_VENV/bin/python" -c "import trl; from trl import PPOTrainer, PPOConfig, AutoModelForCausalLMWithValueHead"
"$LMF_PPO_VENV/bin/python" - <<'EOF'
import importlib.metadata as m
print(" ".join(f"{p}=={m.version(p)}" for p in
      ["torch", "llamafactory", "transformers", "trl", "peft", "accelerate", "tokenizers",
       "datasets", "numpy", "pyarrow", "safetensors"]))
EOF
echo "ppo reference venv ready: $LMF_PPO_VENV"
