"""Load generator of api_vs_llamafactory.sh: OpenAI-style chat-completion throughput.

Standard library only (http.client in threads): runs under any python 3.9+.

  api_load.py wait URL [--key K] [--pid P] [--timeout S]
      polls GET URL/v1/models until it answers 200 (the server has loaded its model); prints
      one JSON line {"ready_after_s": ...}. Exit 3 if process P exits first (the server failed
      to start, or does not have the command), 4 on timeout.
  api_load.py warmup URL --model NAME [--key K] [--prompts FILE]
      sends every prompt once, one at a time, with max_tokens 2 (each prompt length is seen
      once before the timed runs: first-call costs of a shape, such as oneDNN primitive
      creation, stay out of them); prints {"warmup_s": ...}.
  api_load.py run URL --model NAME --clients C --requests N --max-tokens M [--key K]
                  [--label L] [--prompts FILE] [--responses-out FILE] [--timeout S]
      one warm-up request (not timed), then C client threads send N non-streamed
      POST URL/v1/chat/completions requests between them (thread j sends requests j, j + C,
      j + 2C, ...; request i asks about prompt i mod len(prompts)), greedy (`temperature: 0`)
      with `max_tokens: M`, each thread one request at a time. All threads start together;
      wall = from the start to the last answer. Prints one JSON line: wall_s, req_per_s = N /
      wall, out_tok_per_s = sum of usage.completion_tokens / wall, mean / p50 / p90 / max
      latency, mean prompt and completion tokens per request, finish reasons, errors.
      FILE (--responses-out) gets {prompt index: answer text} (the first answer per prompt).
  api_load.py prompts
      prints the built-in prompt list (JSON), for inspection.
  api_load.py table LF_LABEL LMF_LABEL [RESPONSES_DIR] < JSON lines of `run`
      the comparison table of api_vs_llamafactory.sh: per client count, both sides' req/s and
      output tok/s and the ratio lmf / LF of output tok/s; with RESPONSES_DIR, how many prompts
      got the same greedy text from both (files resp_<label>_<clients>.json).

Prompts: build_prompts() below, 16 fixed questions, each followed by 0 to 12 fixed sentences of
context, so that requests differ in length and content; the same list for every server. With
the bench model's 8192-token BPE (trained on pseudo-words: ~2.3 tokens an English word) the
prompts are ~13 to ~440 tokens long before the chat template, ~170 on average.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse

QUESTIONS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain in two sentences why the sky is blue.",
    "List three uses of a paperclip.",
    "Summarise the text below in one paragraph.",
    "Translate the following passage into plain English for a child.",
    "Which of the facts below is the most surprising, and why?",
    "Write a title for the following notes.",
    "Give a step-by-step recipe for a cup of tea.",
    "Describe a busy train station at eight in the morning.",
    "Rewrite the following text in the passive voice.",
    "What questions would you ask the author of the text below?",
    "Name five animals that live in the desert.",
    "Continue the story below for a few more sentences.",
    "Point out any contradictions in the following statements.",
    "Explain the text below to someone who has never heard of the topic.",
]
SENTENCES = [
    "The river rises in the northern hills and reaches the coast after four hundred kilometres.",
    "Most of the town's houses were rebuilt in stone after the great fire of 1862.",
    "A bicycle converts about ninety percent of the rider's effort into forward motion.",
    "The library opens at nine, closes at six, and lends up to ten books per member.",
    "Honey found in ancient tombs has been reported to be still edible after thousands of years.",
    "The committee met twice in March but postponed its decision until the summer.",
    "Octopuses have three hearts and blue blood that carries oxygen with copper.",
    "The train was forty minutes late because a tree had fallen across the line near the bridge.",
    "She planted tomatoes, beans and a row of sunflowers along the southern fence.",
    "The new bridge is designed to carry twenty thousand vehicles a day.",
    "Bananas are botanically berries, while strawberries are not.",
    "The old map showed a path through the forest that no longer exists.",
]
CONTEXT_SENTENCES = [0, 1, 2, 3, 4, 6, 9, 12]


def build_prompts():
    out = []
    for i, q in enumerate(QUESTIONS):
        n = CONTEXT_SENTENCES[i % len(CONTEXT_SENTENCES)]
        ctx = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(n))
        out.append(q + ("\n\n" + ctx if ctx else ""))
    return out


def split_url(url):
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port or 80, u.path.rstrip("/")


def request(url, method, path, body=None, key=None, timeout=600.0):
    host, port, base = split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, base + path, body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", errors="replace")
        return resp.status, text
    finally:
        conn.close()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent shell) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def wait(args):
    t0 = time.perf_counter()
    while True:
        try:
            status, _ = request(args.url, "GET", "/v1/models", key=args.key, timeout=5)
            if status == 200:
                print(json.dumps({"ready_after_s": round(time.perf_counter() - t0, 1)}))
                return 0
        except OSError:
            pass
        if args.pid and not pid_alive(args.pid):
            print(f"server process {args.pid} exited before answering", file=sys.stderr)
            return 3
        if time.perf_counter() - t0 > args.timeout:
            print(f"no answer from {args.url}/v1/models after {args.timeout} s", file=sys.stderr)
            return 4
        time.sleep(0.25)


def chat(args, prompt):
    body = {"model": args.model, "messages": [{"role": "user", "content": prompt}],
            "temperature": 0, "max_tokens": args.max_tokens, "stream": False}
    t = time.perf_counter()
    status, text = request(args.url, "POST", "/v1/chat/completions", body, args.key, args.timeout)
    dt = time.perf_counter() - t
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {text[:300]}")
    r = json.loads(text)
    usage = r.get("usage") or {}
    choice = r["choices"][0]
    return {"latency": dt, "completion_tokens": int(usage["completion_tokens"]),
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "finish": choice.get("finish_reason"),
            "content": (choice.get("message") or {}).get("content") or ""}


def load_prompts(args):
    if args.prompts:
        with open(args.prompts) as f:
            return json.load(f)
    return build_prompts()


def warmup(args):
    t0 = time.perf_counter()
    args.max_tokens = 2
    for p in load_prompts(args):
        chat(args, p)
    print(json.dumps({"warmup_s": round(time.perf_counter() - t0, 1)}))
    return 0


def run(args):
    prompts = load_prompts(args)
    chat(args, prompts[-1])  # warm-up (the longest prompt), not timed
    n, c = args.requests, args.clients
    results = [None] * n
    errors = []
    barrier = threading.Barrier(c + 1)

    def client(j):
        barrier.wait()
        for i in range(j, n, c):
            try:
                results[i] = chat(args, prompts[i % len(prompts)])
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"request {i}: {e!r}")

    threads = [threading.Thread(target=client, args=(j,), daemon=True) for j in range(c)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = [r for r in results if r]
    lat = sorted(r["latency"] for r in ok)
    comp = sum(r["completion_tokens"] for r in ok)
    finish = {}
    for r in ok:
        finish[r["finish"]] = finish.get(r["finish"], 0) + 1

    def q(p):
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else None

    out = {"impl": args.label, "clients": c, "requests": n, "max_tokens": args.max_tokens,
           "ok": len(ok), "errors": len(errors), "wall_s": round(wall, 3),
           "req_per_s": round(len(ok) / wall, 3), "out_tok_per_s": round(comp / wall, 2),
           "completion_tokens": comp,
           "mean_completion_tokens": round(comp / len(ok), 1) if ok else None,
           "mean_prompt_tokens": round(sum(r["prompt_tokens"] for r in ok) / len(ok), 1)
           if ok else None,
           "mean_latency_s": round(statistics.mean(lat), 3) if lat else None,
           "p50_latency_s": q(0.5), "p90_latency_s": q(0.9),
           "max_latency_s": round(lat[-1], 3) if lat else None, "finish": finish}
    if errors:
        out["first_error"] = errors[0]
    print(json.dumps(out), flush=True)
    if args.responses_out:
        texts = {}
        for i, r in enumerate(results):
            if r:
                texts.setdefault(str(i % len(prompts)), r["content"])
        with open(args.responses_out, "w") as f:
            json.dump(texts, f, ensure_ascii=False)
    return 0 if ok and not errors else 1


def table(lf_label, lmf_label, resp_dir, lines):
    rows = [json.loads(line) for line in lines if line.startswith("{")]
    by = {(r["impl"], r["clients"]): r for r in rows if "clients" in r}
    clients = sorted({k[1] for k in by})
    print("%7s %10s %14s %10s %14s %18s %13s %13s %10s" % (
        "clients", "LF req/s", "LF out tok/s", "lmf req/s", "lmf out tok/s",
        "ratio (out tok/s)", "LF lat s", "lmf lat s", "same text"))

    def fmt(r, key, f="%.2f"):
        return f % r[key] if r and r.get(key) is not None else "-"

    for c in clients:
        lf, lm = by.get((lf_label, c)), by.get((lmf_label, c))
        ratio = "%.2fx" % (lm["out_tok_per_s"] / lf["out_tok_per_s"]) \
            if lf and lm and lf["out_tok_per_s"] else "-"
        same = "-"
        if resp_dir:
            try:
                with open(os.path.join(resp_dir, f"resp_{lf_label}_{c}.json")) as f:
                    a = json.load(f)
                with open(os.path.join(resp_dir, f"resp_{lmf_label}_{c}.json")) as f:
                    b = json.load(f)
                keys = sorted(set(a) & set(b))
                same = "%d/%d" % (sum(a[k] == b[k] for k in keys), len(keys))
            except OSError:
                pass
        print("%7d %10s %14s %10s %14s %18s %13s %13s %10s" % (
            c, fmt(lf, "req_per_s"), fmt(lf, "out_tok_per_s"), fmt(lm, "req_per_s"),
            fmt(lm, "out_tok_per_s"), ratio, fmt(lf, "mean_latency_s", "%.3f"),
            fmt(lm, "mean_latency_s", "%.3f"), same))
    for label in (lf_label, lmf_label):
        for c in clients:
            r = by.get((label, c))
            if r and (r["errors"] or r["mean_completion_tokens"] != r["max_tokens"]):
                print(f"  {label} @ {c}: {r['ok']} ok, {r['errors']} errors, mean completion "
                      f"tokens {r['mean_completion_tokens']} (max_tokens {r['max_tokens']}), "
                      f"finish {r['finish']}" + (f"; {r['first_error']}" if r.get("first_error")
                                                 else ""))
    targets = {1: 1.0, 16: 4.0}
    for c, want in targets.items():
        lf, lm = by.get((lf_label, c)), by.get((lmf_label, c))
        if lf and lm and lf["out_tok_per_s"]:
            got = lm["out_tok_per_s"] / lf["out_tok_per_s"]
            print(f"target at {c} client{'s' if c > 1 else ''}: >= {want:g}x LF output tok/s: "
                  f"{got:.2f}x, {'met' if got >= want else 'NOT met'}")


def main(argv):
    if argv[:1] == ["table"]:
        return table(argv[1], argv[2], argv[3] if len(argv) > 3 else None, sys.stdin)
    if argv[:1] == ["prompts"]:
        print(json.dumps(build_prompts(), indent=1))
        return 0
    p = argparse.ArgumentParser(usage=__doc__)
    p.add_argument("cmd", choices=["wait", "warmup", "run"])
    p.add_argument("url")
    p.add_argument("--key", default=None)
    p.add_argument("--pid", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--model", default="bench")
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--requests", type=int, default=48)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--label", default="server")
    p.add_argument("--prompts", default=None)
    p.add_argument("--responses-out", default=None)
    args = p.parse_args(argv)
    return {"wait": wait, "warmup": warmup, "run": run}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
