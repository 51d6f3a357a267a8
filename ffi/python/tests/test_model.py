"""Models: the llama3 fixture against LLaMA-Factory's recorded chat (prompt ids, greedy reply,
first token), streaming, tokenizer round trip, seeded sampling, argument errors."""

import ctypes
import json

import numpy as np
import pytest

import lmf
from lmf import LmfError, Model, Status

from conftest import REPO

EXPECTED = json.loads((REPO / "tests/fixtures/hf/expected/chat_llama3.json").read_text())
TURN = EXPECTED["turns"][0]
MODEL_DIR = REPO / "tests/fixtures/hf/models/llama3"


@pytest.fixture(scope="module")
def model():
    with Model.load(model_name_or_path=MODEL_DIR, template="llama3", do_sample=False) as m:
        yield m


def test_encode_chat_matches_llamafactory(model):
    ids = model.encode_chat(TURN["messages"])
    assert ids.dtype == np.int64
    assert ids.tolist() == TURN["prompt_ids"]


def test_greedy_chat_matches_llamafactory_and_streams(model):
    config = EXPECTED["lf_generation_config_used"]
    assert config["do_sample"] is False
    pieces = []
    reply, info = model.chat(TURN["messages"], stream=pieces.append,
                             max_new_tokens=config["max_new_tokens"], return_info=True)
    assert reply == TURN["response_text"]
    assert len(pieces) > 1 and "".join(pieces) == reply
    assert info == lmf.ChatInfo(len(TURN["prompt_ids"]), TURN["response_length"],
                                TURN["finish_reason"])


def test_chat_stops_at_max_new_tokens(model):
    reply, info = model.chat(TURN["messages"], max_new_tokens=3, return_info=True)
    assert info.response_tokens == 3 and info.finish_reason == "length"
    assert reply == model.detokenize(TURN["generated_ids"][:3])


def test_forward_predicts_the_first_generated_token(model):
    logits = model.forward(TURN["prompt_ids"])
    assert logits.shape[0] == len(TURN["prompt_ids"]) and logits.dtype == np.float32
    assert int(logits[-1].argmax()) == TURN["generated_ids"][0]


def test_tokenize_detokenize_round_trip(model):
    text = TURN["messages"][0]["content"]
    plain = model.tokenize(text, add_special_tokens=False)
    with_bos = model.tokenize(text)
    assert with_bos.dtype == np.int64
    assert with_bos[1:].tolist() == plain.tolist() and len(with_bos) == len(plain) + 1
    assert model.detokenize(plain) == text
    assert model.detokenize(with_bos) == text, "special tokens are skipped by default"
    assert model.detokenize(with_bos, skip_special_tokens=False) == "<|begin_of_text|>" + text


def test_seeded_sampling_repeats(model):
    first = model.chat(TURN["messages"], do_sample=True, seed=7, max_new_tokens=20)
    second = model.chat(TURN["messages"], do_sample=True, seed=7, max_new_tokens=20)
    assert first == second
    assert first != TURN["response_text"][: len(first)], "sampling, not greedy decoding"


def test_stream_exception_is_raised_after_the_call(model):
    seen = []

    def stream(piece):
        seen.append(piece)
        raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        model.chat(TURN["messages"], stream=stream, max_new_tokens=10)
    assert len(seen) == 1, "no piece after the exception"


def test_bad_messages(model):
    out = ctypes.c_void_p()
    status = lmf.lib.lmf_model_encode_chat(model.handle, b"[{not json", None, None,
                                           ctypes.byref(out))
    assert status == Status.INVALID_ARGUMENT
    assert b"JSON" in lmf.lib.lmf_last_error()
    with pytest.raises(LmfError) as e:
        model.chat([{"role": "wizard", "content": "hi"}])
    assert e.value.status == Status.INVALID_ARGUMENT and "wizard" in e.value.message
    with pytest.raises(LmfError) as e:
        model.encode_chat([{"role": "system", "content": "a"}, {"role": "user", "content": "b"}],
                          system="twice")
    assert e.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(LmfError) as e:
        model.chat(TURN["messages"], top_p=2.0)
    assert e.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(TypeError, match="beams"):
        model.chat(TURN["messages"], beams=2)


def test_system_prompt_goes_into_the_prompt(model):
    plain = model.encode_chat(TURN["messages"])
    by_arg = model.encode_chat(TURN["messages"], system="Be brief.")
    by_message = model.encode_chat([{"role": "system", "content": "Be brief."}] + TURN["messages"])
    assert by_arg.tolist() == by_message.tolist()
    assert len(by_arg) > len(plain)


def test_load_errors():
    with pytest.raises(LmfError) as e:
        Model.load(model_name_or_path=MODEL_DIR, template="llama3", no_such_argument=1)
    assert e.value.status == Status.INVALID_ARGUMENT and "no_such_argument" in e.value.message
    with pytest.raises(LmfError, match="does-not-exist"):
        Model.load(model_name_or_path=REPO / "does-not-exist", template="llama3")
