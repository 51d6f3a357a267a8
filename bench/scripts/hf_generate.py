"""Transformers' side of the CPU generation-throughput comparison (generate_vs_transformers.sh).

  hf_generate.py make DIR            random ~27M-parameter Llama saved to DIR (config.json +
                                     model.safetensors, float32) and DIR/prompts.json
  hf_generate.py run DIR N REPEATS [--tokens-out FILE] [--threads T]
                                     greedy `model.generate` of N new tokens for each batch of
                                     prompts.json; one JSON line per batch (median of REPEATS
                                     timed runs after a warm-up); FILE gets batch 1's new ids

Measured like bench/src/bin/generate_tps.rs: the same prompts, no eos (every row makes
exactly N tokens), tokens/s = batch * N / median seconds, T torch threads (default: one per
core).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SEED = 1234
PROMPT_LEN = 32
BATCHES = (1, 4)


def make(out_dir):
    """Builds and saves the random model and its prompts."""
    torch.manual_seed(SEED)
    cfg = LlamaConfig(
        vocab_size=8192,
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        # A wide init spread makes the logits peaked, so greedy picks are far from ties
        # (the token comparison with lmf is then meaningful) and the text is not one token
        # repeated.
        initializer_range=0.2,
        # No eos: every row generates exactly max_new_tokens, on both sides.
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    model.generation_config.pad_token_id = None
    model.save_pretrained(out_dir, safe_serialization=True)
    g = torch.Generator().manual_seed(SEED + 1)
    prompts = {
        str(b): torch.randint(0, cfg.vocab_size, (b, PROMPT_LEN), generator=g).tolist()
        for b in BATCHES
    }
    with open(os.path.join(out_dir, "prompts.json"), "w") as f:
        json.dump(prompts, f)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"impl": "transformers", "parameters": n}))


def run(model_dir, new_tokens, repeats, tokens_out, threads):
    """Times greedy generation for each batch and prints one JSON line per batch."""
    torch.set_num_threads(threads or os.cpu_count() or 1)
    model = LlamaForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="sdpa"
    ).eval()
    with open(os.path.join(model_dir, "prompts.json")) as f:
        prompts = json.load(f)
    print(
        json.dumps({"impl": "transformers", "parameters": model.num_parameters()}),
        flush=True,
    )
    for b in BATCHES:
        ids = torch.tensor(prompts[str(b)], dtype=torch.long)
        mask = torch.ones_like(ids)

        def gen():
            return model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                eos_token_id=None,
                pad_token_id=0,
            )

        with torch.no_grad():
            out = gen()  # warm-up
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                out = gen()
                times.append(time.perf_counter() - t)
        new = out[:, ids.shape[1]:]
        if new.shape[1] != new_tokens:
            sys.exit(f"transformers stopped after {new.shape[1]} of {new_tokens} tokens")
        if b == 1 and tokens_out:
            with open(tokens_out, "w") as f:
                json.dump(new.tolist(), f)
        s = statistics.median(times)
        distinct = len(set(new[0].tolist()))
        print(
            json.dumps(
                {
                    "impl": "transformers",
                    "batch": b,
                    "new_tokens": new_tokens,
                    "seconds": round(s, 4),
                    "tokens_per_s": round(b * new_tokens / s, 1),
                    "runs": [round(x, 4) for x in times],
                    "distinct_tokens_row0": distinct,
                }
            ),
            flush=True,
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("new_tokens", type=int)
    r.add_argument("repeats", type=int)
    r.add_argument("--tokens-out")
    r.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.cmd == "make":
        make(a.dir)
    else:
        run(a.dir, a.new_tokens, a.repeats, a.tokens_out, a.threads)


if __name__ == "__main__":
    main()
