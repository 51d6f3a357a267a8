"""Training: a three-step LoRA SFT run of the llama3 fixture through ``lmf.train``, its log
callback against ``trainer_log.jsonl``, and cancelling from the callback."""

import json

import pytest

import lmf

from conftest import REPO

CONFIG = """\
model_name_or_path: {repo}/tests/fixtures/hf/models/llama3
stage: sft
do_train: true
finetuning_type: lora
lora_target: all
dataset: alpaca_demo
dataset_dir: {repo}/data
template: llama3
cutoff_len: 64
max_samples: 16
output_dir: {out}
per_device_train_batch_size: 2
gradient_accumulation_steps: 1
max_steps: {max_steps}
logging_steps: 1
learning_rate: 1.0e-3
report_to: none
overwrite_output_dir: true
disable_tqdm: true
"""


def write_config(tmp_path, max_steps):
    out = tmp_path / "out"
    path = tmp_path / "train.yaml"
    path.write_text(CONFIG.format(repo=REPO, out=out, max_steps=max_steps))
    return path, out


def test_train_logs_every_step(tmp_path):
    config, out = write_config(tmp_path, max_steps=3)
    records = []
    result = lmf.train(config, callback=records.append)
    assert result["interrupted"] is False
    assert result["global_step"] == 3
    assert result["train"]["train_loss"] > 0
    assert (out / "adapter_model.safetensors").is_file()

    losses = [r for r in records if "loss" in r]
    assert [r["step"] for r in losses] == [1, 2, 3]
    logged = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in losses] == [r["loss"] for r in logged if "loss" in r]


def test_overrides_win_over_the_file(tmp_path):
    config, out = write_config(tmp_path, max_steps=3)
    result = lmf.train(config, max_steps=1, output_dir=tmp_path / "other")
    assert result["global_step"] == 1
    assert (tmp_path / "other" / "adapter_model.safetensors").is_file()
    assert not out.exists()


def test_cancel_from_the_callback(tmp_path):
    config, out = write_config(tmp_path, max_steps=50)
    token = lmf.CancelToken()
    steps = []

    def on_log(record):
        steps.append(record.get("step"))
        token.cancel()

    with token:
        result = lmf.train(config, callback=on_log, cancel=token)
    assert result["interrupted"] is True
    # lmf.h: cancelled from the callback, the run stops at the end of the next step.
    assert result["global_step"] == 2 < 50
    assert steps[:2] == [1, 2]
    assert (out / "checkpoint-2").is_dir(), "a cancelled run saves a checkpoint"


def test_callback_exception_cancels_and_is_raised(tmp_path):
    config, out = write_config(tmp_path, max_steps=50)

    def on_log(record):
        raise ValueError(f"bad record at step {record.get('step')}")

    with pytest.raises(ValueError, match="bad record at step 1"):
        lmf.train(config, callback=on_log)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2, "cancelled at step 1: stops at the end of step 2"


def test_bad_arguments_are_refused(tmp_path):
    config, _ = write_config(tmp_path, max_steps=3)
    with pytest.raises(lmf.LmfError) as e:
        lmf.train(config, no_such_key=1)
    assert e.value.status == lmf.Status.INVALID_ARGUMENT and "no_such_key" in e.value.message
