"""Helper of dpo_vs_llamafactory.sh: builds the DPO bench inputs and times one training run.

  lf_dpo_bench.py make DIR [STEPS]
      DIR/model/      random ~40M-parameter Llama: lf_train_bench.py's bench model (hidden 512,
                      8 layers, 8 heads, 4 kv heads, intermediate 1376, tied embeddings,
                      float32) with a 32000-token vocabulary, and a 32000-token byte-level BPE
                      trained here (tests/fixtures/hf/bpe.py's special tokens)
      DIR/data/       a sharegpt ranking dataset (dpo_demo's registration): the prompts and
                      answers of the repo's data/dpo_demo.json, each lengthened with pseudo-word
                      text, so every chosen and every rejected sequence is cut to exactly
                      cutoff_len (1024) tokens; STEPS + 2 pairs
      DIR/train.yaml  stage dpo, pref_loss sigmoid, pref_beta 0.1, LoRA r8 on every linear
                      layer (the reference model is the adapter-less model), cutoff_len 1024,
                      batch 1, fp32, STEPS (default 4) steps, logging every step
  lf_dpo_bench.py watch NAME OUT_DIR WARMUP -- CMD ...
      runs CMD under `/usr/bin/time -v`, timestamps each new line of OUT_DIR/trainer_log.jsonl
      as it appears (logging_steps 1: one line per step), and prints one JSON line: peak RSS,
      wall time, the time from launch to the first step's line (loading + step 1), the time of
      each later step (between consecutive lines), s/step = mean over the steps after WARMUP,
      and the logged losses. Exit code 3 (and no JSON) if CMD says "not implemented".

One step = one pair: the policy's forward and backward over the chosen and the rejected
sequence (2 x 1024 tokens) and the reference model's forward over both (no gradient).
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lf_train_bench import make_tokenizer, run_watched, words  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SEED = 1234
VOCAB, CUTOFF = 32000, 1024
# token lengths the texts are grown to before LF's pairwise cut (infer_seqlen): prompt and
# responses all longer than cutoff_len / 2, so the prompt gets 1024 * 600 / 1400 = 438 tokens
# and each response the remaining 586: both sequences exactly cutoff_len long
PROMPT_TOKENS, RESPONSE_TOKENS = 600, 800


def grow(tok, rng, text, n):
    """`text` followed by pseudo-word sentences until it encodes to at least `n` tokens."""
    while len(tok.encode(text, add_special_tokens=False)) < n:
        text += " " + words(rng, 40) + "."
    return text


def make(out_dir, steps):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = random.Random(SEED)
    with open(os.path.join(ROOT, "data", "dpo_demo.json"), encoding="utf-8") as f:
        demo = json.load(f)
    texts = []
    for r in demo:
        texts += [t["value"] for t in r["conversations"]] + [r["chosen"]["value"],
                                                             r["rejected"]["value"]]
    # 32000 merges need many distinct pseudo-words
    texts += [words(rng, 200) for _ in range(3000)]
    tok = make_tokenizer(os.path.join(out_dir, "model"), texts, vocab_size=VOCAB)

    rows = []
    for i in range(steps + 2):
        r = demo[i % len(demo)]
        prompt = " ".join(t["value"] for t in r["conversations"] if t["from"] == "human")
        rows.append({
            "conversations": [{"from": "human", "value": grow(tok, rng, prompt, PROMPT_TOKENS)}],
            "chosen": {"from": "gpt", "value": grow(tok, rng, r["chosen"]["value"],
                                                    RESPONSE_TOKENS)},
            "rejected": {"from": "gpt", "value": grow(tok, rng, r["rejected"]["value"],
                                                      RESPONSE_TOKENS)},
        })
    os.makedirs(os.path.join(out_dir, "data"), exist_ok=True)
    with open(os.path.join(out_dir, "data", "bench_dpo.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False)
    info = {"bench_dpo": {"file_name": "bench_dpo.json", "formatting": "sharegpt", "ranking": True,
                          "columns": {"messages": "conversations", "chosen": "chosen",
                                      "rejected": "rejected"}}}
    with open(os.path.join(out_dir, "data", "dataset_info.json"), "w") as f:
        json.dump(info, f)

    torch.manual_seed(SEED)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                      rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg).to(torch.float32)
    model.save_pretrained(os.path.join(out_dir, "model"), safe_serialization=True)

    yaml = f"""# bench/scripts/dpo_vs_llamafactory.sh: paths relative to this folder
model_name_or_path: model
stage: dpo
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
lora_dropout: 0.0
pref_beta: 0.1
pref_loss: sigmoid
dataset: bench_dpo
dataset_dir: data
template: llama3
cutoff_len: {CUTOFF}
overwrite_cache: true
per_device_train_batch_size: 1
gradient_accumulation_steps: 1
learning_rate: 1.0e-4
lr_scheduler_type: cosine
max_steps: {steps}
logging_steps: 1
disable_shuffling: true
seed: 42
bf16: false
fp16: false
save_strategy: "no"
report_to: none
plot_loss: false
overwrite_output_dir: true
output_dir: out
"""
    with open(os.path.join(out_dir, "train.yaml"), "w") as f:
        f.write(yaml)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"parameters": n, "tokenizer": len(tok), "pairs": len(rows)}))


def watch(name, out_dir, warmup, cmd):
    stamps, rss_kb, wall = run_watched(name, out_dir, cmd)
    log_path = os.path.join(out_dir, "trainer_log.jsonl")
    steps = sorted(stamps)
    if not steps or steps != list(range(1, steps[-1] + 1)):
        sys.exit(f"{name}: expected one logged line per step in {log_path}, got steps {steps}")
    last = steps[-1]
    if last <= warmup:
        sys.exit(f"{name}: fewer than {warmup + 1} logged steps in {log_path}")
    step_s = {s: stamps[s][0] - stamps[s - 1][0] for s in steps[1:]}
    timed = [step_s[s] for s in steps if s > warmup]
    print(json.dumps({"impl": name, "s_per_step": round(sum(timed) / len(timed), 3),
                      "peak_rss_mb": round(rss_kb / 1024, 1), "wall_s": round(wall, 1),
                      "first_step_at_s": round(stamps[1][0], 1),
                      "step_s": {s: round(t, 3) for s, t in step_s.items()},
                      "steps": last, "warmup_steps": warmup,
                      "losses": [stamps[s][1] for s in steps]}))


def main(argv):
    if argv[:1] == ["make"]:
        return make(argv[1], int(argv[2]) if len(argv) > 2 else 4)
    if argv[:1] == ["watch"]:
        sep = argv.index("--")
        name, out_dir, warmup = argv[1:sep]
        return watch(name, out_dir, int(warmup), argv[sep + 1:])
    sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
