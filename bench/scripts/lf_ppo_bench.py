"""Helper of ppo_vs_trl.sh: builds the PPO bench inputs and times one PPO training run.

  lf_ppo_bench.py make DIR [STEPS]     (run it with the PPO reference venv's python:
                                        transformers 4.52.4 writes the model)
      DIR/model/      random ~40M-parameter Llama, dpo_vs_llamafactory.sh's bench model: hidden
                      512, 8 layers, 8 heads, 4 kv heads, intermediate 1376, tied embeddings,
                      float32, a 32000-token byte-level BPE trained here
                      (lf_train_bench.make_tokenizer); config.json written by transformers
                      4.52.4 (plain `rope_theta`, `rope_scaling: null`, checked), so LF 0.9.3
                      reads it natively and lmf reads the same model;
                      `summary_dropout_prob: 0.0` (TRL's value head: no dropout, as lmf)
      DIR/data/       4 alpaca rows (= one batch: every step rolls out the same 4 prompts on
                      both sides, whatever order each side shuffles them in), instructions of
                      pseudo-word text grown until the templated prompts (llama3) are 128,
                      171, 213 and 256 tokens long
      DIR/train.yaml  stage ppo, LoRA r8 on every linear layer, reward_model_type api (the live
                      URL is passed on the command line by `watch`), greedy rollouts of
                      max_new_tokens 64, batch 4, ppo_epochs 4, lr 1e-5, max_grad_norm 100,
                      STEPS (default 4) steps, logging every step
  lf_ppo_bench.py watch NAME OUT_DIR WARMUP MODE -- CMD ...
      starts the reward server (below) on 127.0.0.1, runs CMD + `reward_model=<its URL>` under
      `/usr/bin/time -v` (lf_train_bench.run_watched: peak RSS, and the moment each step's
      trainer_log.jsonl line appears), and prints one JSON line with the per-step times of the
      steps after WARMUP. MODE says where those come from:
        lf, lf-fp32  LLaMA-Factory 0.9.3 with ppo_timing/sitecustomize.py on PYTHONPATH (times
                     get_inputs = generate, get_rewards = score, step = optimize); lf-fp32 also
                     turns LF's bf16 autocast (`amp_context`) off;
        lmf          the `ppo step N: generate X s (T new tokens), score Y s, optimize Z s`
                     lines of OUT_DIR/running_log.txt.
      total s/step = the time between consecutive trainer_log.jsonl lines (so step 1, which
      also covers loading, is never in it); rollout tokens/s = new tokens / generate seconds,
      summed over the measured steps.
  lf_ppo_bench.py table STEPS WARMUP THREADS < JSON lines
      the table of ppo_vs_trl.sh from the `make` line and the `watch` lines (stdin).

Reward server: POST {"model": ..., "messages": [text, ...]} -> {"scores": [...]}; each text is
the decoded prompt + response; score = the share of ASCII letters in the part after the last
assistant header (deterministic, instant). The first request's texts (the step-1 rollouts) are
hashed (sorted, so the batch order does not matter): equal hashes = identical greedy rollouts.
"""
import hashlib
import json
import os
import random
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from lf_train_bench import ROOT, make_tokenizer, run_watched, words  # noqa: E402

SEED = 1234
VOCAB = 32000
BATCH, NEW_TOKENS, PPO_EPOCHS = 4, 64, 4
PROMPT_TOKENS = [128, 171, 213, 256]  # templated prompt lengths, one row each
MARK = "<|start_header_id|>assistant<|end_header_id|>\n\n"
STEP_RE = re.compile(r"ppo step (\d+): generate ([\d.]+) s \((\d+) new tokens\), "
                     r"score ([\d.]+) s, optimize ([\d.]+) s")


def llama3_prompt(text):
    return (f"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{text}<|eot_id|>"
            f"{MARK}")


def make(out_dir, steps):
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = random.Random(SEED)
    rows = []
    for name in ("alpaca_demo.json", "identity.json"):
        with open(os.path.join(ROOT, "data", name), encoding="utf-8") as f:
            rows += json.load(f)
    # 32000 merges need many distinct pseudo-words (as lf_dpo_bench.py)
    texts = [" ".join(r.values()) for r in rows] + [words(rng, 200) for _ in range(3000)]
    tok = make_tokenizer(os.path.join(out_dir, "model"), texts, vocab_size=VOCAB)

    data, lengths = [], []
    for i, n in enumerate(PROMPT_TOKENS):
        r = rows[i]
        text = " ".join(x for x in (r["instruction"], r["input"]) if x)
        while len(tok.encode(llama3_prompt(text), add_special_tokens=False)) < n:
            text += " " + words(rng, 1)
        lengths.append(len(tok.encode(llama3_prompt(text), add_special_tokens=False)))
        data.append({"instruction": text, "input": "", "output": r["output"]})
    os.makedirs(os.path.join(out_dir, "data"), exist_ok=True)
    with open(os.path.join(out_dir, "data", "bench_ppo.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "data", "dataset_info.json"), "w") as f:
        json.dump({"bench_ppo": {"file_name": "bench_ppo.json"}}, f)

    torch.manual_seed(SEED)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                      rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=None,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      summary_dropout_prob=0.0)
    model = LlamaForCausalLM(cfg).to(torch.float32)
    model.save_pretrained(os.path.join(out_dir, "model"), safe_serialization=True)
    with open(os.path.join(out_dir, "model", "config.json")) as f:
        written = json.load(f)
    # the old stack (LF 0.9.3) must read exactly this model: plain RoPE, no 5.x keys
    assert written.get("rope_theta") == 10000.0 and written.get("rope_scaling") is None, written
    assert "rope_parameters" not in written, written

    yaml = f"""# bench/scripts/ppo_vs_trl.sh: paths relative to this folder
model_name_or_path: model
stage: ppo
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
lora_dropout: 0.0
reward_model: http://127.0.0.1:1/score  # the live server's URL is passed on the command line
reward_model_type: api
ppo_epochs: {PPO_EPOCHS}
do_sample: false
max_new_tokens: {NEW_TOKENS}
dataset: bench_ppo
dataset_dir: data
template: llama3
cutoff_len: 1024
overwrite_cache: true
per_device_train_batch_size: {BATCH}
gradient_accumulation_steps: 1
learning_rate: 1.0e-5
max_steps: {steps}
max_grad_norm: 100.0
logging_steps: 1
save_steps: 100000
seed: 42
bf16: false
fp16: false
report_to: none
plot_loss: false
overwrite_output_dir: true
output_dir: out
"""
    with open(os.path.join(out_dir, "train.yaml"), "w") as f:
        f.write(yaml)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"parameters": n, "tokenizer": len(tok), "prompt_tokens": lengths,
                      "transformers": transformers.__version__}))


def score_text(text):
    s = text.rsplit(MARK, 1)[-1]
    return round(sum(1 for c in s if c.isascii() and c.isalpha()) / max(len(s), 1), 6)


class RewardServer:
    def __init__(self):
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body["messages"])
                data = json.dumps({"scores": [score_text(t) for t in body["messages"]]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/score"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def step_times(mode, out_dir, times_path):
    """{step: (generate s, new tokens, score s, optimize s)} of the run."""
    out = {}
    if mode == "lmf":
        with open(os.path.join(out_dir, "running_log.txt"), errors="replace") as f:
            for m in STEP_RE.finditer(f.read()):
                out[int(m[1])] = (float(m[2]), int(m[3]), float(m[4]), float(m[5]))
    else:
        with open(times_path) as f:
            for line in f:
                r = json.loads(line)
                out[r["step"]] = (r["generate_s"], r["new_tokens"], r["score_s"], r["optimize_s"])
    return out


def watch(name, out_dir, warmup, mode, cmd):
    parent = os.path.dirname(os.path.abspath(out_dir))
    times_path = os.path.join(parent, f"{name}.times.jsonl")
    if mode in ("lf", "lf-fp32"):
        # read by the child's ppo_timing/sitecustomize.py (this process's already ran)
        os.environ["PYTHONPATH"] = os.path.join(HERE, "ppo_timing")
        os.environ["LMF_PPO_BENCH_TIMES"] = times_path
        os.environ["LMF_PPO_BENCH_FP32"] = "1" if mode == "lf-fp32" else "0"
        if os.path.exists(times_path):
            os.remove(times_path)
    elif mode != "lmf":
        sys.exit(f"unknown mode {mode}")
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    server = RewardServer()
    stamps, rss_kb, wall = run_watched(name, out_dir, cmd + [f"reward_model={server.url}"])
    server.httpd.shutdown()

    times = step_times(mode, out_dir, times_path)
    steps = sorted(times)
    if not steps or steps != list(range(1, steps[-1] + 1)) or sorted(stamps) != steps:
        sys.exit(f"{name}: step timings {steps} and logged steps {sorted(stamps)} do not match")
    measured = [s for s in steps if s > warmup]
    if not measured:
        sys.exit(f"{name}: fewer than {warmup + 1} steps")
    gen = [times[s][0] for s in measured]
    tokens = [times[s][1] for s in measured]
    score = [times[s][2] for s in measured]
    opt = [times[s][3] for s in measured]
    total = [stamps[s][0] - stamps[s - 1][0] for s in measured if s >= 2]
    rewards = []
    with open(os.path.join(out_dir, "trainer_log.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "reward" in rec:
                rewards.append(rec["reward"])
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    first = sorted(server.requests[0]) if server.requests else []
    print(json.dumps({
        "impl": name, "mode": mode, "steps": steps[-1], "warmup_steps": warmup,
        "tokens_per_s": round(sum(tokens) / sum(gen), 1),
        "generate_s": round(mean(gen), 3), "score_s": round(mean(score), 4),
        "optimize_s": round(mean(opt), 3), "total_s": round(mean(total), 3),
        "new_tokens_per_step": round(mean(tokens), 1),
        "peak_rss_mb": round(rss_kb / 1024, 1), "wall_s": round(wall, 1),
        "first_step_at_s": round(stamps[1][0], 1),
        "per_step": {s: {"generate_s": round(times[s][0], 3), "new_tokens": times[s][1],
                         "score_s": round(times[s][2], 4), "optimize_s": round(times[s][3], 3),
                         "total_s": round(stamps[s][0] - stamps[s - 1][0], 3) if s >= 2 else None}
                     for s in steps},
        "losses": [stamps[s][1] for s in steps], "rewards": rewards,
        "step1_rollouts_sha1": hashlib.sha1(json.dumps(first).encode()).hexdigest()[:12],
    }))


LABELS = {"lf_bf16": "LF 0.9.3 (bf16 autocast, as shipped)", "lf_fp32": "LF 0.9.3 (fp32)",
          "lmf": "lmf (fp32)"}


def table(steps, warmup, threads, lines):
    """The table of ppo_vs_trl.sh from `make`'s and the `watch` runs' JSON lines."""
    rows = [json.loads(line) for line in lines if line.startswith("{")]
    made, res = rows[0], {r["impl"]: r for r in rows[1:]}
    p = made["prompt_tokens"]
    print("%.1fM parameters, vocab %d, LoRA r8 all linear, batch 4 prompts of %d-%d tokens, "
          "%d greedy new tokens, ppo_epochs %d, %s steps (first %s not timed), %s threads"
          % (made["parameters"] / 1e6, made["tokenizer"], p[0], p[-1], NEW_TOKENS, PPO_EPOCHS,
             steps, warmup, threads))
    cols = ("rollout tok/s", "generate s", "score s", "optimize s", "total s/step",
            "peak RSS MiB")
    print("%-38s" % "" + "".join("%14s" % c for c in cols))
    for k, label in LABELS.items():
        r = res.get(k)
        if r:
            print("%-38s%14.1f%14.2f%14.4f%14.2f%14.2f%14.1f" % (
                label, r["tokens_per_s"], r["generate_s"], r["score_s"], r["optimize_s"],
                r["total_s"], r["peak_rss_mb"]))
    lm = res.get("lmf")
    for k in ("lf_bf16", "lf_fp32"):
        lf = res.get(k)
        if lf and lm:
            print("%-38s%13.2fx%13.2fx%13.2fx%13.2fx%13.2fx%13.2fx" % (
                "lmf vs " + LABELS[k].split(" ", 2)[2], lm["tokens_per_s"] / lf["tokens_per_s"],
                lf["generate_s"] / lm["generate_s"], lf["score_s"] / lm["score_s"],
                lf["optimize_s"] / lm["optimize_s"], lf["total_s"] / lm["total_s"],
                lm["peak_rss_mb"] / lf["peak_rss_mb"]))
    print("(ratios: rollout tok/s lmf / LF; times LF / lmf (> 1: lmf faster); RSS lmf / LF)")
    print()
    for k, label in LABELS.items():
        r = res.get(k)
        if not r:
            continue
        per = "; ".join(
            "%s: gen %.2f s (%d tok), opt %.2f s, total %s" % (
                s, v["generate_s"], v["new_tokens"], v["optimize_s"],
                "-" if v["total_s"] is None else "%.2f s" % v["total_s"])
            for s, v in r["per_step"].items())
        print("%s: load + step 1 %.1f s, wall %.1f s; %s" % (label, r["first_step_at_s"],
                                                             r["wall_s"], per))
        print("    rewards %s, losses %s, step-1 rollouts sha1 %s" % (
            r["rewards"], r["losses"], r["step1_rollouts_sha1"]))


def main(argv):
    if argv[:1] == ["make"]:
        return make(argv[1], int(argv[2]) if len(argv) > 2 else 4)
    if argv[:1] == ["watch"]:
        sep = argv.index("--")
        name, out_dir, warmup, mode = argv[1:sep]
        return watch(name, out_dir, int(warmup), mode, argv[sep + 1:])
    if argv[:1] == ["table"]:
        return table(*argv[1:4], sys.stdin)
    sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
