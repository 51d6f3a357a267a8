"""Loading liblmf and declaring its C ABI (``ffi/include/lmf.h``) for ctypes.

Everything here is low level: ``lib`` is the ``ctypes.CDLL`` with every function's argtypes and
restype set, ``check`` turns a status into an ``LmfError``, ``Handle`` owns one raw handle and
``Owned`` is the base of the classes that hold one.
"""

from __future__ import annotations

import ctypes
import enum
import os
import sys
from ctypes import (
    POINTER,
    c_bool,
    c_char_p,
    c_double,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

#: The ABI version this package was written against (``LMF_ABI_VERSION`` of ``lmf.h``).
ABI_VERSION = 1

_LIB_NAME = {"darwin": "liblmf.dylib", "win32": "lmf.dll"}.get(sys.platform, "liblmf.so")


class Status(enum.IntEnum):
    """``LmfStatus``: what a call did."""

    OK = 0
    NULL_POINTER = 1
    INVALID_HANDLE = 2
    INVALID_ARGUMENT = 3
    DTYPE = 4
    SHAPE = 5
    IO = 6
    RUNTIME = 7
    PANIC = 8


class LmfError(Exception):
    """A failed lmf call: ``status`` (a ``Status``) and lmf's message."""

    def __init__(self, status: int, message: str):
        try:
            self.status = Status(status)
            name = self.status.name
        except ValueError:  # a status this package does not know: keep the number
            self.status = status
            name = f"status {status}"
        self.message = message
        super().__init__(f"{name}: {message}")


class GenerateParams(ctypes.Structure):
    """``LmfGenerateParams``: decoding settings of one reply."""

    _fields_ = [
        ("do_sample", c_int32),
        ("temperature", c_double),
        ("top_p", c_double),
        ("top_k", c_int64),
        ("repetition_penalty", c_double),
        ("max_new_tokens", c_int64),
        ("skip_special_tokens", c_int32),
        ("use_seed", c_bool),
        ("seed", c_uint64),
    ]


class ChatInfoC(ctypes.Structure):
    """``LmfChatInfo``: token counts and finish reason of one reply."""

    _fields_ = [
        ("prompt_tokens", c_size_t),
        ("response_tokens", c_size_t),
        ("finish_reason", c_int),
    ]


#: ``LmfTextCallback`` and ``LmfLogCallback``: ``void (*)(const char *, void *)``.
TEXT_CALLBACK = ctypes.CFUNCTYPE(None, c_char_p, c_void_p)
LOG_CALLBACK = ctypes.CFUNCTYPE(None, c_char_p, c_void_p)

_P, _PP, _ST = c_void_p, POINTER(c_void_p), c_int
_SIZES, _DIMS = POINTER(c_size_t), POINTER(c_int64)

_SIGNATURES = {
    "lmf_version": (c_char_p, []),
    "lmf_abi_version": (c_uint32, []),
    "lmf_last_error": (c_char_p, []),
    "lmf_string_free": (None, [_P]),
    "lmf_live_handles": (c_size_t, []),
    "lmf_generate_params_default": (GenerateParams, []),
    # tensors
    "lmf_tensor_from_data": (_ST, [_P, c_int32, _SIZES, c_size_t, _PP]),
    "lmf_tensor_full": (_ST, [c_double, c_int32, _SIZES, c_size_t, c_int32, c_int32, _PP]),
    "lmf_tensor_free": (_ST, [_P]),
    "lmf_tensor_ndim": (_ST, [_P, _SIZES]),
    "lmf_tensor_shape": (_ST, [_P, _SIZES, c_size_t]),
    "lmf_tensor_numel": (_ST, [_P, _SIZES]),
    "lmf_tensor_is_contiguous": (_ST, [_P, POINTER(c_bool)]),
    "lmf_tensor_dtype": (_ST, [_P, POINTER(c_int)]),
    "lmf_tensor_device": (_ST, [_P, POINTER(c_int), POINTER(c_int32)]),
    "lmf_tensor_copy_to": (_ST, [_P, _P, c_size_t]),
    "lmf_tensor_data_ptr": (_ST, [_P, _PP]),
    "lmf_tensor_to_dtype": (_ST, [_P, c_int32, _PP]),
    "lmf_tensor_to_device": (_ST, [_P, c_int32, c_int32, _PP]),
    # ops
    "lmf_unary": (_ST, [_P, c_int32, _PP]),
    "lmf_binary": (_ST, [_P, _P, c_int32, _PP]),
    "lmf_affine": (_ST, [_P, c_double, c_double, _PP]),
    "lmf_powf": (_ST, [_P, c_double, _PP]),
    "lmf_clamp": (_ST, [_P, c_double, c_double, _PP]),
    "lmf_matmul": (_ST, [_P, _P, _PP]),
    "lmf_softmax": (_ST, [_P, c_int64, _PP]),
    "lmf_log_softmax": (_ST, [_P, c_int64, _PP]),
    "lmf_reduce": (_ST, [_P, c_int32, _DIMS, c_size_t, c_bool, _PP]),
    "lmf_reshape": (_ST, [_P, _SIZES, c_size_t, _PP]),
    "lmf_transpose": (_ST, [_P, c_int64, c_int64, _PP]),
    "lmf_permute": (_ST, [_P, _DIMS, c_size_t, _PP]),
    "lmf_narrow": (_ST, [_P, c_int64, c_size_t, c_size_t, _PP]),
    "lmf_contiguous": (_ST, [_P, _PP]),
    "lmf_cat": (_ST, [_PP, c_size_t, c_int64, _PP]),
    "lmf_embedding": (_ST, [_P, _P, _PP]),
    "lmf_rmsnorm": (_ST, [_P, _P, c_double, c_double, _PP]),
    "lmf_swiglu": (_ST, [_P, _P, _PP]),
    # autograd
    "lmf_tensor_set_requires_grad": (_ST, [_P, c_bool]),
    "lmf_tensor_requires_grad": (_ST, [_P, POINTER(c_bool)]),
    "lmf_tensor_detach": (_ST, [_P, _PP]),
    "lmf_backward": (_ST, [_P, _P, _PP]),
    "lmf_grads_get": (_ST, [_P, _P, _PP]),
    "lmf_grads_free": (_ST, [_P]),
    "lmf_set_grad_enabled": (_ST, [c_bool, POINTER(c_bool)]),
    "lmf_is_grad_enabled": (c_bool, []),
    # models
    "lmf_model_load": (_ST, [POINTER(c_char_p), c_size_t, _PP]),
    "lmf_model_free": (_ST, [_P]),
    "lmf_model_forward": (_ST, [_P, _DIMS, c_size_t, _PP]),
    "lmf_model_tokenize": (_ST, [_P, c_char_p, c_bool, _PP]),
    "lmf_model_detokenize": (_ST, [_P, _DIMS, c_size_t, c_bool, _PP]),
    "lmf_model_encode_chat": (_ST, [_P, c_char_p, c_char_p, c_char_p, _PP]),
    "lmf_model_chat": (
        _ST,
        [_P, c_char_p, c_char_p, c_char_p, POINTER(GenerateParams), TEXT_CALLBACK, _P, _PP,
         POINTER(ChatInfoC)],
    ),
    # training
    "lmf_cancel_token_new": (_ST, [_PP]),
    "lmf_cancel_token_cancel": (_ST, [_P]),
    "lmf_cancel_token_free": (_ST, [_P]),
    "lmf_train_from_yaml": (_ST, [POINTER(c_char_p), c_size_t, LOG_CALLBACK, _P, _P, _PP]),
}


def _find_library() -> Path:
    """``$LMF_LIB``, else the nearest ``target/release`` or ``target/debug`` build above here."""
    env = os.environ.get("LMF_LIB")
    if env:
        if not Path(env).is_file():
            raise ImportError(f"LMF_LIB={env} is not a file")
        return Path(env)
    here = Path(__file__).resolve().parent
    for folder in [here, *here.parents]:
        for profile in ("release", "debug"):
            candidate = folder / "target" / profile / _LIB_NAME
            if candidate.is_file():
                return candidate
    raise ImportError(
        f"{_LIB_NAME} not found: build it with `cargo build -p lmf-ffi` (or --release) "
        f"or point LMF_LIB at it"
    )


def _load() -> ctypes.CDLL:
    path = _find_library()
    dll = ctypes.CDLL(str(path))
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(dll, name)
        fn.restype = restype
        fn.argtypes = argtypes
    found = dll.lmf_abi_version()
    if found != ABI_VERSION:
        raise ImportError(f"{path} has ABI version {found}; this package needs {ABI_VERSION}")
    return dll


#: The loaded library, every function declared.
lib = _load()


def check(status: int) -> None:
    """Raises ``LmfError`` (with ``lmf_last_error()``) for any non-zero status."""
    if status != Status.OK:
        raise LmfError(status, (lib.lmf_last_error() or b"").decode("utf-8", "replace"))


def new_handle(fn, *args) -> int:
    """Calls ``fn(*args, &out)`` for a function with one handle out-parameter; returns it."""
    out = c_void_p()
    check(fn(*args, ctypes.byref(out)))
    return out.value


def take_string(ptr: c_void_p) -> str:
    """The UTF-8 text of a string lmf returned, which is then freed."""
    try:
        return ctypes.string_at(ptr.value).decode("utf-8")
    finally:
        lib.lmf_string_free(ptr)


def c_strings(items: list[str]):
    """A ``const char *const *`` array of ``items`` (keep it alive for the call)."""
    return (c_char_p * len(items))(*(s.encode("utf-8") for s in items))


def cli_args(config, overrides: dict) -> list[str]:
    """``lmf``-style arguments: the config file (if any), then ``key=value`` pairs."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return ",".join(map(str, v))
        return str(v)

    head = [] if config is None else [os.fspath(config)]
    return head + [f"{k}={value(v)}" for k, v in overrides.items()]


class Handle:
    """Owns one raw lmf handle and frees it (once) when the last reference goes.

    Objects that must outlive their Python owner (numpy arrays over a tensor's memory) hold a
    reference to the ``Handle``, not to the owner.
    """

    __slots__ = ("ptr", "_free")

    def __init__(self, ptr: int, free):
        self.ptr = ptr
        self._free = free
        if not ptr:
            raise ValueError("NULL handle")

    def __del__(self):
        ptr, self.ptr = self.ptr, None
        if ptr:
            try:
                self._free(ptr)
            except Exception:  # interpreter shutdown: the library may be gone already
                pass


class Owned:
    """Base of the Python objects that own one lmf handle: ``handle``, ``close()``, ``with``."""

    def __init__(self, ptr: int, free):
        self._h = Handle(ptr, free)

    @property
    def handle(self) -> int:
        """The raw handle (an ``int``), for calling ``lib`` directly."""
        if self._h is None:
            raise ValueError(f"the {type(self).__name__} is closed")
        return self._h.ptr

    def close(self) -> None:
        """Lets go of the handle: freed now, or when the last object borrowing it goes.

        Closing twice does nothing; using the object afterwards raises ``ValueError``.
        """
        self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def live_handles() -> int:
    """The number of lmf handles (tensors, grads, models, cancel tokens) not freed yet."""
    return lib.lmf_live_handles()


def version() -> str:
    """lmf's version string."""
    return lib.lmf_version().decode()
