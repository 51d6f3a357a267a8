"""Timing hook for ppo_vs_trl.sh, loaded into `llamafactory-cli train` through PYTHONPATH
(the technique of tests/fixtures/hf/ppo/capture/sitecustomize.py).

Does nothing unless LMF_PPO_BENCH_TIMES names a file. Then it imports LLaMA-Factory 0.9.3's
PPO trainer up front and wraps, without changing what they compute:
  - CustomPPOTrainer.get_inputs (the rollout: `generate` on a mini-batch and LF's cutting of
    the responses): its time, and the new tokens = the sum of the cut response lengths;
  - CustomPPOTrainer.get_rewards (the score: here the HTTP request to the api reward server);
  - CustomPPOTrainer.step (TRL 0.9.6's PPOTrainer.step: the forward passes of the policy and
    the reference, rewards / advantages, ppo_epochs x mini-batches of forward + backward +
    optimizer step).
After each `step` it appends one JSON line to $LMF_PPO_BENCH_TIMES:
  {"step": N, "generate_s": ..., "new_tokens": ..., "score_s": ..., "optimize_s": ...}
(generate and score summed over the step's mini-batches).
With LMF_PPO_BENCH_FP32=1 it also replaces `self.amp_context` (LF: torch.autocast("cpu") =
bf16 autocast on a CPU) by a disabled autocast, so the PPO forward passes run in float32.
"""

import json
import os
import time

if os.environ.get("LMF_PPO_BENCH_TIMES"):
    import torch
    from llamafactory.train.ppo import trainer as _lf_ppo

    _out = open(os.environ["LMF_PPO_BENCH_TIMES"], "a", encoding="utf-8")
    _fp32 = os.environ.get("LMF_PPO_BENCH_FP32") == "1"
    _acc = {"generate_s": 0.0, "new_tokens": 0, "score_s": 0.0}
    _n = [0]

    _Trainer = _lf_ppo.CustomPPOTrainer
    _orig_init = _Trainer.__init__

    def _init(self, *args, **kwargs):
        _orig_init(self, *args, **kwargs)
        if _fp32:
            self.amp_context = torch.autocast(self.current_device.type, enabled=False)

    _Trainer.__init__ = _init

    _orig_get_inputs = _Trainer.get_inputs

    def _get_inputs(self, batch):
        t0 = time.perf_counter()
        q, r = _orig_get_inputs(self, batch)
        _acc["generate_s"] += time.perf_counter() - t0
        _acc["new_tokens"] += sum(len(x) for x in r)
        return q, r

    _Trainer.get_inputs = _get_inputs

    _orig_get_rewards = _Trainer.get_rewards

    def _get_rewards(self, queries, responses):
        t0 = time.perf_counter()
        rew = _orig_get_rewards(self, queries, responses)
        _acc["score_s"] += time.perf_counter() - t0
        return rew

    _Trainer.get_rewards = _get_rewards

    _orig_step = _Trainer.step

    def _step(self, *args, **kwargs):
        t0 = time.perf_counter()
        stats = _orig_step(self, *args, **kwargs)
        _n[0] += 1
        _out.write(json.dumps({"step": _n[0], **_acc, "optimize_s": time.perf_counter() - t0}) + "\n")
        _out.flush()
        _acc.update(generate_s=0.0, new_tokens=0, score_s=0.0)
        return stats

    _Trainer.step = _step
