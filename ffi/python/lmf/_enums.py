"""The enum values of ``lmf.h`` by Python name (dtypes, devices, ops), and the numpy dtype
that holds each lmf dtype."""

from __future__ import annotations

import numpy as np

#: ``LmfDtype`` values by name.
DTYPES = {
    "float32": 0,
    "float64": 1,
    "bfloat16": 2,
    "float16": 3,
    "int32": 4,
    "int64": 5,
    "uint8": 6,
}
NAMES = {code: name for name, code in DTYPES.items()}
#: Short dtype names (the header's) that ``dtype_code`` takes too.
ALIASES = {"f32": "float32", "f64": "float64", "bf16": "bfloat16", "f16": "float16",
           "i32": "int32", "i64": "int64", "u8": "uint8"}
#: The numpy dtype that holds each lmf dtype; bfloat16 travels as its uint16 bits.
HOLDER = {name: np.dtype(name) for name in DTYPES if name != "bfloat16"}
HOLDER["bfloat16"] = np.dtype(np.uint16)
BF16 = DTYPES["bfloat16"]

#: ``LmfUnaryOp``, ``LmfBinaryOp``, ``LmfReduceOp`` values by Tensor method name.
UNARY = {"neg": 0, "exp": 1, "log": 2, "sqrt": 3, "square": 4, "reciprocal": 5, "tanh": 6,
         "sigmoid": 7, "silu": 8, "gelu": 9, "relu": 10, "sin": 11, "cos": 12}
BINARY = {"add": 0, "sub": 1, "mul": 2, "div": 3, "maximum": 4, "minimum": 5}
REDUCE = {"sum": 0, "mean": 1, "max": 2, "min": 3}
#: ``LmfFinishReason`` names by value.
FINISH_REASONS = {0: "stop", 1: "length"}


def dtype_code(dtype) -> int:
    """The ``LmfDtype`` of a name (``"float32"``, ``"bf16"``, ...) or a numpy dtype."""
    if isinstance(dtype, str) and ALIASES.get(dtype, dtype) in DTYPES:
        return DTYPES[ALIASES.get(dtype, dtype)]
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name in DTYPES:
        return DTYPES[name]
    hint = " (pass dtype='bfloat16' for bf16 bits)" if name == "uint16" else ""
    raise TypeError(f"lmf has no dtype {dtype!r}; it takes {', '.join(DTYPES)}{hint}")


def device_code(device: str) -> tuple[int, int]:
    """``(LmfDeviceKind, index)`` of ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return 0, 0
    if kind == "cuda":
        return 1, int(index or 0)
    raise ValueError(f"unknown device {device!r} (cpu, cuda or cuda:N)")
