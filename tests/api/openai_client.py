"""Drives a running `lmf api` with the official `openai` client (and raw HTTP for bodies the
client would never send), and prints one JSON report on stdout for tests/api_openai.rs, which
checks it against the model run in-process. Asserts here only what needs no reference.

usage: openai_client.py BASE_URL API_KEY MODEL_NAME PROMPTS_JSON
PROMPTS_JSON: {"plain": str, "tool": str, "tools": [...], "batch": [[str, max_tokens], ...]}
"""

import http.client
import json
import sys
import threading
import urllib.parse

import openai

base, key, model, prompts_path = sys.argv[1:5]
P = json.load(open(prompts_path))
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)
report = {}


def user(text):
    return [{"role": "user", "content": text}]


def greedy(text, max_tokens=None):
    kw = {} if max_tokens is None else {"max_tokens": max_tokens}
    r = client.chat.completions.create(model=model, messages=user(text), temperature=0, **kw)
    c = r.choices[0]
    return {
        "content": c.message.content,
        "finish_reason": c.finish_reason,
        "usage": [r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens],
    }


# models
report["models"] = [m.id for m in client.models.list().data]

# a plain greedy completion, then the same streamed
report["plain"] = greedy(P["plain"])
stream = client.chat.completions.create(
    model=model, messages=user(P["plain"]), temperature=0, stream=True
)
pieces, finishes, roles = [], [], []
for chunk in stream:
    d = chunk.choices[0].delta
    if d.role:
        roles.append(d.role)
    if d.content:
        pieces.append(d.content)
    if chunk.choices[0].finish_reason:
        finishes.append(chunk.choices[0].finish_reason)
report["stream"] = {"text": "".join(pieces), "chunks": len(pieces), "finishes": finishes, "roles": roles}

# a tool call
r = client.chat.completions.create(
    model=model,
    messages=user(P["tool"]),
    tools=[{"type": "function", "function": f} for f in P["tools"]],
    temperature=0,
)
c = r.choices[0]
report["tool"] = {
    "finish_reason": c.finish_reason,
    "content": c.message.content,
    "calls": [
        {"id": t.id, "type": t.type, "name": t.function.name, "arguments": t.function.arguments}
        for t in (c.message.tool_calls or [])
    ],
}

# n = 2 (sampled, seeded: the same request twice gives the same two replies)
def two():
    r = client.chat.completions.create(
        model=model, messages=user(P["plain"]), n=2, temperature=0.9, seed=7, max_tokens=12
    )
    return [[c.index, c.message.content, c.finish_reason] for c in r.choices], r.usage.completion_tokens


report["n2"], report["n2_tokens"] = two()
report["n2_again"], _ = two()

# stop: a piece from the middle of the greedy reply
plain = report["plain"]["content"]
stop = plain[len(plain) // 2 : len(plain) // 2 + 3]
r = client.chat.completions.create(model=model, messages=user(P["plain"]), temperature=0, stop=[stop])
report["stop"] = {"stop": stop, "content": r.choices[0].message.content, "finish_reason": r.choices[0].finish_reason}
stream = client.chat.completions.create(
    model=model, messages=user(P["plain"]), temperature=0, stop=stop, stream=True
)
report["stop_stream"] = "".join(ch.choices[0].delta.content or "" for ch in stream)

# errors
def status_of(fn):
    try:
        fn()
        return None
    except openai.APIStatusError as e:
        return [e.status_code, type(e).__name__, e.body.get("message") if isinstance(e.body, dict) else None]


bad_key = openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0)
report["wrong_key"] = status_of(lambda: bad_key.models.list())
report["wrong_key_chat"] = status_of(
    lambda: bad_key.chat.completions.create(model=model, messages=user("hi"))
)
report["unknown_model"] = status_of(
    lambda: client.chat.completions.create(model="no-such-model", messages=user("hi"))
)
report["bad_role"] = status_of(
    lambda: client.chat.completions.create(model=model, messages=[{"role": "assistant", "content": "hi"}])
)
report["even_turns"] = status_of(
    lambda: client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    )
)
report["too_long"] = status_of(
    lambda: client.chat.completions.create(model=model, messages=user("word " * 5000))
)
report["stream_n2"] = status_of(
    lambda: client.chat.completions.create(model=model, messages=user("hi"), n=2, stream=True)
)
headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
url = urllib.parse.urlparse(base + "/chat/completions")


def post(body):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request("POST", url.path, body=body, headers=headers)
    return conn, conn.getresponse()


raw = {}
for name, body in {
    "not_json": b'{"model": "x", "messages": [',
    "messages_not_list": json.dumps({"model": model, "messages": "hi"}).encode(),
    "missing_messages": json.dumps({"model": model}).encode(),
}.items():
    conn, resp = post(body)
    err = json.loads(resp.read()).get("error", {})
    raw[name] = [resp.status, sorted(err.keys())]
    conn.close()
report["raw_errors"] = raw

# a client that goes away mid-stream: the server must go on serving
body = {"model": model, "messages": user(P["plain"]), "stream": True, "max_tokens": 200}
conn, resp = post(json.dumps(body).encode())
for _ in range(3):
    resp.readline()
conn.close()
report["after_disconnect"] = greedy(P["plain"])

# 16 requests of different lengths: one at a time, then all at once
solo = [greedy(text, m) for text, m in P["batch"]]
together = [None] * len(P["batch"])


def worker(i):
    text, m = P["batch"][i]
    together[i] = greedy(text, m)


threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(P["batch"]))]
for t in threads:
    t.start()
for t in threads:
    t.join()
report["batch_solo"] = solo
report["batch_together"] = together

print(json.dumps(report))
