"""End-to-end LoRA training step, transformers + peft side of ci/gpu-check.sh.

Loads the same model folder `lmf train` trains (made by `lmf init`, Llama-3.2-1B-shaped),
in bf16 with sdpa attention and gradient checkpointing (LLaMA-Factory's defaults), adds
LoRA r=8 on every linear layer of the decoder, and runs AdamW steps on packed 2048-token
rows of the same text file. Prints one JSON line: tokens/s over the timed steps (after the
warm-up steps) and the peak allocated CUDA memory.

Usage: python3 e2e_lora_torch.py MODEL_DIR TEXT_FILE [--seq 2048] [--warmup 2] [--steps 10]
"""

import argparse
import json
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("text")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cuda", help="cpu only to check the script itself")
    a = ap.parse_args()

    tok = AutoTokenizer.from_pretrained(a.model)
    ids = []
    with open(a.text, encoding="utf-8") as f:
        for line in f:
            ids.extend(tok(json.loads(line)["text"])["input_ids"] + [tok.eos_token_id])
    need = (a.warmup + a.steps) * a.seq
    while len(ids) < need:
        ids = ids + ids
    rows = [ids[i * a.seq : (i + 1) * a.seq] for i in range(a.warmup + a.steps)]

    model = AutoModelForCausalLM.from_pretrained(
        a.model, dtype=torch.bfloat16, attn_implementation="sdpa"
    ).to(a.device)
    cuda = a.device.startswith("cuda")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets))
    # LLaMA-Factory upcasts the trainable (LoRA) parameters to fp32.
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(row):
        x = torch.tensor([row], device=a.device)
        with torch.autocast(a.device.split(":")[0], dtype=torch.bfloat16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for r in rows[: a.warmup]:
        step(r)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for r in rows[a.warmup :]:
        step(r)
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "bench": "e2e_lora_step",
                "impl": "transformers+peft",
                "tokens_per_s": a.steps * a.seq / dt,
                "peak_bytes": torch.cuda.max_memory_allocated() if cuda else 0,
                "seq": a.seq,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
