"""Models: what ``lmf chat`` loads, with its tokenizer, chat template and generation."""

from __future__ import annotations

import json
from ctypes import POINTER, byref, c_int64, c_void_p
from dataclasses import dataclass

import numpy as np

from ._enums import FINISH_REASONS
from ._lib import (
    TEXT_CALLBACK,
    ChatInfoC,
    GenerateParams,
    Owned,
    Status,
    c_strings,
    check,
    cli_args,
    lib,
    new_handle,
    take_string,
)
from .tensor import Tensor

#: ``const int64_t *`` (token ids).
_ID_PTR = POINTER(c_int64)


@dataclass(frozen=True)
class ChatInfo:
    """What a reply cost and why it ended (``"stop"`` or ``"length"``)."""

    prompt_tokens: int
    response_tokens: int
    finish_reason: str


def _params(overrides: dict) -> GenerateParams:
    """``LmfGenerateParams``: the configured settings, changed by ``overrides`` (``do_sample``,
    ``temperature``, ``top_p``, ``top_k``, ``repetition_penalty``, ``max_new_tokens``,
    ``skip_special_tokens``, ``seed``)."""
    p = lib.lmf_generate_params_default()
    for key, value in overrides.items():
        if key == "seed":
            p.use_seed, p.seed = True, value
        elif key in ("do_sample", "skip_special_tokens"):
            setattr(p, key, int(bool(value)))
        elif key in {name for name, _ in GenerateParams._fields_} - {"use_seed"}:
            setattr(p, key, value)
        else:
            raise TypeError(f"unknown generation parameter {key!r}")
    return p


def _ids(ids) -> np.ndarray:
    """Token ids as a flat, contiguous int64 array."""
    return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)


def _json_or_none(value) -> bytes | None:
    """A JSON argument: ``None`` stays NULL, a str is passed as is, anything else is dumped."""
    if value is None:
        return None
    return (value if isinstance(value, str) else json.dumps(value)).encode("utf-8")


def _text_or_none(text: str | None) -> bytes | None:
    """A plain string argument (the system prompt): ``None`` stays NULL."""
    return None if text is None else text.encode("utf-8")


class Model(Owned):
    """A loaded model (an ``LmfModel*``) with its tokenizer and chat template."""

    def __init__(self, handle: int):
        """Takes ownership of a raw ``LmfModel*`` handle."""
        super().__init__(handle, lib.lmf_model_free)

    @classmethod
    def load(cls, config=None, **kwargs) -> Model:
        """Loads what ``lmf chat`` would: ``config`` (a YAML/JSON file) and/or its arguments
        as keywords, e.g. ``Model.load(model_name_or_path="...", template="llama3")``."""
        args = cli_args(config, kwargs)
        return cls(new_handle(lib.lmf_model_load, c_strings(args), len(args)))

    def tokenize(self, text: str, add_special_tokens: bool = True) -> np.ndarray:
        """The token ids (int64) of ``text``."""
        t = Tensor(new_handle(lib.lmf_model_tokenize, self.handle, text.encode("utf-8"),
                              add_special_tokens))
        return t.numpy(copy=True)

    def detokenize(self, ids, skip_special_tokens: bool = True) -> str:
        """The text of token ``ids``."""
        ids = _ids(ids)
        text = c_void_p()
        check(lib.lmf_model_detokenize(self.handle, ids.ctypes.data_as(_ID_PTR), len(ids),
                                       skip_special_tokens, byref(text)))
        return take_string(text)

    def forward(self, ids) -> np.ndarray:
        """The logits ``[len(ids), vocab]`` (float32, read-only) of one sequence."""
        ids = _ids(ids)
        return Tensor(new_handle(lib.lmf_model_forward, self.handle,
                                 ids.ctypes.data_as(_ID_PTR), len(ids))).numpy()

    def encode_chat(self, messages, system: str | None = None, tools=None) -> np.ndarray:
        """The prompt ids ``lmf chat`` feeds the model for ``messages`` (a list of
        ``{"role", "content"}`` dicts ending with a user or observation turn)."""
        t = Tensor(new_handle(lib.lmf_model_encode_chat, self.handle, _json_or_none(messages),
                              _text_or_none(system), _json_or_none(tools)))
        return t.numpy(copy=True)

    def chat(self, messages, system: str | None = None, tools=None, stream=None,
             return_info: bool = False, **params):
        """The assistant's reply to ``messages``, generated as ``lmf chat`` does.

        ``stream`` (a callable) gets each printable piece as it is decoded; ``params`` override
        the configured decoding (``max_new_tokens=``, ``do_sample=``, ``temperature=``,
        ``top_p=``, ``top_k=``, ``repetition_penalty=``, ``skip_special_tokens=``, ``seed=``).
        Returns the text, or ``(text, ChatInfo)`` with ``return_info``. An exception raised
        by ``stream`` is raised here once generation ends (later pieces are not passed on).
        """
        failure: list[BaseException] = []

        def on_piece(piece: bytes, _user_data) -> None:
            if failure:
                return
            try:
                stream(piece.decode("utf-8"))
            except BaseException as e:  # noqa: BLE001 - re-raised after the call
                failure.append(e)

        callback = TEXT_CALLBACK(on_piece) if stream is not None else TEXT_CALLBACK()
        p, info, reply = _params(params), ChatInfoC(), c_void_p()
        status = lib.lmf_model_chat(self.handle, _json_or_none(messages), _text_or_none(system),
                                    _json_or_none(tools), byref(p), callback, None, byref(reply),
                                    byref(info))
        if status == Status.OK:
            text = take_string(reply)
        if failure:
            raise failure[0]
        check(status)
        if not return_info:
            return text
        reason = FINISH_REASONS.get(info.finish_reason, str(info.finish_reason))
        return text, ChatInfo(info.prompt_tokens, info.response_tokens, reason)
