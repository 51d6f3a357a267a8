"""The Python sides of the batch-1 decode comparison (decode_vs_llamacpp.sh).

  decode_bench.py make DIR             random ~220M-parameter Llama saved to DIR (config.json,
                                       model.safetensors in float32, a small sentencepiece
                                       tokenizer.model for llama.cpp's converter) and
                                       DIR/prompts.json (one prompt of 32 random ids)
  decode_bench.py llamacpp GGUF DIR N REPEATS --threads T [--tokens-out F]
                                       llama.cpp (llama-cpp-python) greedy decoding
  decode_bench.py hf DIR N REPEATS --threads T --dtype f32|bf16 [--tokens-out F]
                                       transformers' greedy `model.generate`
  decode_bench.py bandwidth --threads T
                                       the machine's memory bandwidth: a 1 GiB copy
                                       (read + write bytes) and a 1 GiB sum (read bytes)

Every side is measured like bench/src/bin/generate_tps.rs: the same prompt, no eos (exactly
N new tokens), one warm-up then the median of REPEATS timed runs of the whole generation
(prefill of the 32-token prompt included), tokens/s = N / median seconds. Each prints one
JSON line.
"""
import argparse
import json
import os
import statistics
import sys
import time

SEED = 4321
PROMPT_LEN = 32


def make(out_dir):
    """Builds and saves the random model, its tokenizer and the prompt."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    cfg = LlamaConfig(
        vocab_size=32000,
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=12,
        num_attention_heads=16,
        num_key_value_heads=8,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        # A wide init keeps greedy picks far from ties, so the three sides' tokens can be
        # compared (at f32; bf16 rounds differently on each side).
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    # llama.cpp's converter reads the vocabulary from a sentencepiece model (it pads the ids
    # past the tokenizer's own with unused entries); the ids of the prompt are random anyway
    train_tokenizer(out_dir)
    g = torch.Generator().manual_seed(SEED + 1)
    # ids above the tokenizer's vocabulary are fine for every side (plain embedding rows)
    prompt = torch.randint(3, cfg.vocab_size, (1, PROMPT_LEN), generator=g).tolist()
    with open(os.path.join(out_dir, "prompts.json"), "w") as f:
        json.dump({"1": prompt}, f)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"impl": "transformers", "parameters": n}))


def train_tokenizer(out_dir):
    """A 1000-piece sentencepiece BPE model trained on generated text."""
    import random

    import sentencepiece as spm

    rng = random.Random(SEED)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(3000)]
    text = os.path.join(out_dir, "tokenizer_corpus.txt")
    with open(text, "w") as f:
        for _ in range(4000):
            f.write(" ".join(rng.choice(words) for _ in range(12)) + "\n")
    spm.SentencePieceTrainer.train(
        input=text,
        model_prefix=os.path.join(out_dir, "tokenizer"),
        vocab_size=1000,
        model_type="bpe",
        bos_id=1,
        eos_id=2,
        unk_id=0,
        minloglevel=2,
    )
    os.remove(text)
    os.remove(os.path.join(out_dir, "tokenizer.vocab"))


def prompt_of(model_dir):
    with open(os.path.join(model_dir, "prompts.json")) as f:
        return json.load(f)["1"][0]


def report(impl, dtype, new_tokens, times, tokens, tokens_out, extra=None):
    if len(tokens) != new_tokens:
        sys.exit(f"{impl} stopped after {len(tokens)} of {new_tokens} tokens")
    if tokens_out:
        with open(tokens_out, "w") as f:
            json.dump([tokens], f)
    s = statistics.median(times)
    row = {
        "impl": impl,
        "dtype": dtype,
        "batch": 1,
        "new_tokens": new_tokens,
        "seconds": round(s, 4),
        "tokens_per_s": round(new_tokens / s, 2),
        "runs": [round(x, 4) for x in times],
    }
    row.update(extra or {})
    print(json.dumps(row), flush=True)


def llamacpp(gguf, model_dir, new_tokens, repeats, threads, tokens_out, dtype):
    """Greedy decoding with llama-cpp-python's `Llama.generate` (sampling in C)."""
    from llama_cpp import Llama

    prompt = prompt_of(model_dir)
    llm = Llama(
        model_path=gguf,
        n_ctx=PROMPT_LEN + new_tokens + 16,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        # the KV cache in f32, as lmf's and transformers' (llama.cpp's default is f16, which
        # moves the logits by ~1e-2 here)
        type_k=0,  # GGML_TYPE_F32
        type_v=0,
        verbose=False,
    )

    def gen():
        llm.reset()  # no prompt reuse between runs: every run prefills
        out = []
        for tok in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            out.append(int(tok))
            if len(out) == new_tokens:
                break
        return out

    gen()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = gen()
        times.append(time.perf_counter() - t)
    report("llama.cpp", dtype, new_tokens, times, out, tokens_out)


def hf(model_dir, new_tokens, repeats, threads, dtype, tokens_out):
    """Greedy `model.generate` (sdpa attention, KV cache) in float32 or bfloat16."""
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(threads)
    tdt = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
    model = LlamaForCausalLM.from_pretrained(
        model_dir, dtype=tdt, attn_implementation="sdpa"
    ).eval()
    ids = torch.tensor([prompt_of(model_dir)], dtype=torch.long)

    def gen():
        return model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
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
    report("transformers", dtype, new_tokens, times, out[0, ids.shape[1]:].tolist(), tokens_out)


def bandwidth(threads):
    """Best of 5: a 1 GiB f32 copy (GB/s of bytes read + written) and a 1 GiB f32 sum (bytes
    read), on `threads` torch threads."""
    import torch

    torch.set_num_threads(threads)
    n = (1 << 30) // 4
    src = torch.rand(n)
    dst = torch.empty_like(src)
    dst.copy_(src)
    copy, read = [], []
    for _ in range(5):
        t = time.perf_counter()
        dst.copy_(src)
        copy.append(time.perf_counter() - t)
        t = time.perf_counter()
        float(src.sum())
        read.append(time.perf_counter() - t)
    print(json.dumps({
        "copy_gb_per_s": round(2 * 4 * n / min(copy) / 1e9, 2),
        "read_gb_per_s": round(4 * n / min(read) / 1e9, 2),
    }))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    for name in ("llamacpp", "hf"):
        r = sub.add_parser(name)
        if name == "llamacpp":
            r.add_argument("gguf")
        r.add_argument("dir")
        r.add_argument("new_tokens", type=int)
        r.add_argument("repeats", type=int)
        r.add_argument("--threads", type=int, default=os.cpu_count() or 1)
        r.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
        r.add_argument("--tokens-out")
    b = sub.add_parser("bandwidth")
    b.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = p.parse_args()
    if a.cmd == "make":
        make(a.dir)
    elif a.cmd == "llamacpp":
        llamacpp(a.gguf, a.dir, a.new_tokens, a.repeats, a.threads, a.tokens_out, a.dtype)
    elif a.cmd == "hf":
        hf(a.dir, a.new_tokens, a.repeats, a.threads, a.dtype, a.tokens_out)
    else:
        bandwidth(a.threads)


if __name__ == "__main__":
    main()
