"""Training: ``lmf train`` as a function, with a log callback and a cancel token."""

from __future__ import annotations

import json
from ctypes import byref, c_void_p

from ._lib import (
    LOG_CALLBACK,
    Owned,
    Status,
    c_strings,
    check,
    cli_args,
    lib,
    new_handle,
    take_string,
)


class CancelToken(Owned):
    """A stop flag for ``train`` (an ``LmfCancelToken*``). ``cancel()`` works from any thread:
    the run stops at the end of the optimizer step in progress and saves a checkpoint; from
    the log callback (which runs once a step has finished), that is the end of the next step.
    """

    def __init__(self):
        super().__init__(new_handle(lib.lmf_cancel_token_new), lib.lmf_cancel_token_free)

    def cancel(self) -> None:
        check(lib.lmf_cancel_token_cancel(self.handle))


def train(config=None, callback=None, cancel: CancelToken | None = None, **overrides) -> dict:
    """Runs ``lmf train`` on ``config`` (a LLaMA-Factory YAML/JSON file) with ``key=value``
    ``overrides``, writing the same output folder.

    ``callback(record)`` gets each log record as a dict (``loss``, ``grad_norm``,
    ``learning_rate``, ``epoch``, ``step``, or ``eval_*`` metrics). An exception raised by the
    callback cancels the run (through ``cancel`` when given) and is raised here once the run
    has stopped. Returns ``{"interrupted", "global_step", "train", "eval", "predict"}``.
    """
    args = cli_args(config, overrides)
    token = cancel if cancel is not None else CancelToken()
    failure: list[BaseException] = []

    def on_log(record: bytes, _user_data) -> None:
        if failure:
            return
        try:
            callback(json.loads(record))
        except BaseException as e:  # noqa: BLE001 - re-raised after the run
            failure.append(e)
            token.cancel()

    log = LOG_CALLBACK(on_log) if callback is not None else LOG_CALLBACK()
    argv, result = c_strings(args), c_void_p()
    status = lib.lmf_train_from_yaml(argv, len(args), log, None, token.handle, byref(result))
    text = take_string(result) if status == Status.OK else None
    if failure:
        raise failure[0]
    check(status)
    return json.loads(text)
