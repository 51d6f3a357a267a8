"""Helper of train_vs_llamafactory.sh: builds the bench inputs and times one training run.

  lf_train_bench.py make DIR [STEPS]
      DIR/model/      random ~27M-parameter Llama (hidden 512, 8 layers, 8 heads, 4 kv heads,
                      intermediate 1376, vocab 8192, tied embeddings, float32) + an 8192-token
                      byte-level BPE trained here (tests/fixtures/hf/bpe.py's special tokens,
                      so LLaMA-Factory's llama3 template adds none)
      DIR/data/       an alpaca dataset (the repo's data/alpaca_demo.json + identity.json,
                      repeated) with enough packed 512-token rows for STEPS steps of batch 4
      DIR/train.yaml  LoRA r8 on every linear layer, packing, cutoff_len 512, batch 4, fp32,
                      STEPS (default 20) steps, logging every step; paths relative to DIR
  lf_train_bench.py watch NAME OUT_DIR WARMUP TOKENS_PER_STEP -- CMD ...
      runs CMD under `/usr/bin/time -v`, timestamps each new line of OUT_DIR/trainer_log.jsonl
      as it appears (both LLaMA-Factory and lmf append one line per logged step), and prints one
      JSON line: peak RSS, wall time, tokens/s = TOKENS_PER_STEP * (steps after WARMUP) / (time
      from the end of step WARMUP to the end of the last step), and the logged losses. Exit code
      3 (and no JSON) if CMD says "not implemented".

Tokens per step count every position of the packed rows (batch * cutoff_len), padding included,
the same on both sides.
"""
import json
import os
import random
import re
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SEED = 1234
BATCH, CUTOFF = 4, 512


def words(rng, n):
    """Pseudo-words from a small syllable set: enough distinct pairs for 8192 BPE merges."""
    syll = [c + v for c in "bcdfghjklmnprstvwz" for v in ["a", "e", "i", "o", "u", "ai", "ou"]]
    return " ".join("".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(n))


def make_tokenizer(out_dir, texts, vocab_size=8192):
    sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures", "hf"))
    from bpe import SPECIAL_TOKENS  # noqa: E402
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token="<|eot_id|>",
                                   pad_token="<|end_of_text|>", unk_token="<unk>")
    fast.save_pretrained(out_dir)
    return fast


def make(out_dir, steps):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = random.Random(SEED)
    rows = []
    for name in ("alpaca_demo.json", "identity.json"):
        with open(os.path.join(ROOT, "data", name), encoding="utf-8") as f:
            rows += json.load(f)
    texts = [" ".join(r.values()) for r in rows] + [words(rng, 200) for _ in range(400)]
    tok = make_tokenizer(os.path.join(out_dir, "model"), texts)

    # enough rows for `steps` packed batches (+25% for knapsack slack), each row made longer
    # with a pseudo-word paragraph so the data is not one demo set repeated verbatim
    need = steps * BATCH * CUTOFF * 5 // 4
    data, total = [], 0
    while total < need:
        r = dict(rows[len(data) % len(rows)])
        r["output"] = r["output"] + " " + words(rng, rng.randint(10, 60))
        data.append(r)
        total += len(tok.encode(" ".join(r.values()))) + 12  # + template tokens
    os.makedirs(os.path.join(out_dir, "data"), exist_ok=True)
    with open(os.path.join(out_dir, "data", "bench.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "data", "dataset_info.json"), "w") as f:
        json.dump({"bench": {"file_name": "bench.json"}}, f)

    torch.manual_seed(SEED)
    cfg = LlamaConfig(vocab_size=8192, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                      rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg).to(torch.float32)
    model.save_pretrained(os.path.join(out_dir, "model"), safe_serialization=True)

    yaml = f"""# bench/scripts/train_vs_llamafactory.sh: paths relative to this folder
model_name_or_path: model
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
lora_dropout: 0.0
dataset: bench
dataset_dir: data
template: llama3
cutoff_len: {CUTOFF}
packing: true
overwrite_cache: true
per_device_train_batch_size: {BATCH}
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
    print(json.dumps({"parameters": n, "tokenizer": len(tok), "rows": len(data)}))


def run_watched(name, out_dir, cmd):
    """Runs `cmd` under `/usr/bin/time -v`, stamping each logged step of
    `out_dir/trainer_log.jsonl` as it appears. Returns ({step: (seconds since start, loss)},
    peak RSS in kB, wall seconds); exits 3 when the command says "not implemented"."""
    log_path = os.path.join(out_dir, "trainer_log.jsonl")
    if os.path.exists(log_path):
        os.remove(log_path)
    parent = os.path.dirname(os.path.abspath(out_dir))
    time_log = os.path.join(parent, f"{name}.time.txt")
    out_log = os.path.join(parent, f"{name}.log")
    t0 = time.perf_counter()
    with open(out_log, "w") as out:
        proc = subprocess.Popen(["/usr/bin/time", "-v", "-o", time_log] + cmd, stdout=out,
                                stderr=subprocess.STDOUT)
        seen, stamps = 0, {}
        while True:
            done = proc.poll() is not None
            if os.path.exists(log_path):
                with open(log_path) as f:
                    lines = f.read().splitlines()
                now = time.perf_counter()
                for line in lines[seen:]:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:  # a line being written: read it next time
                        break
                    if "loss" in rec:
                        stamps[rec["current_steps"]] = (now - t0, rec["loss"])
                    seen += 1
            if done:
                break
            time.sleep(0.02)
    wall = time.perf_counter() - t0
    text = open(out_log, errors="replace").read()
    if proc.returncode != 0:
        if "not implemented" in text:
            sys.exit(3)
        sys.stderr.write(text[-3000:])
        sys.exit(proc.returncode)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(time_log).read()).group(1))
    return stamps, rss_kb, wall


def watch(name, out_dir, warmup, tokens_per_step, cmd):
    stamps, rss_kb, wall = run_watched(name, out_dir, cmd)
    log_path = os.path.join(out_dir, "trainer_log.jsonl")
    steps = sorted(stamps)
    last = steps[-1]
    if warmup not in stamps or last <= warmup:
        sys.exit(f"{name}: fewer than {warmup + 1} logged steps in {log_path}")
    tps = tokens_per_step * (last - warmup) / (stamps[last][0] - stamps[warmup][0])
    print(json.dumps({"impl": name, "tokens_per_s": round(tps, 1), "peak_rss_mb": round(rss_kb / 1024, 1),
                      "wall_s": round(wall, 1), "steps": last, "warmup_steps": warmup,
                      "losses": [stamps[s][1] for s in steps]}))


def main(argv):
    if argv[:1] == ["make"]:
        return make(argv[1], int(argv[2]) if len(argv) > 2 else 20)
    if argv[:1] == ["watch"]:
        sep = argv.index("--")
        name, out_dir, warmup, tps = argv[1:sep]
        return watch(name, out_dir, int(warmup), int(tps), argv[sep + 1:])
    sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
