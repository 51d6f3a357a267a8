"""The package against the header it binds: every function of ``lmf.h`` declared (and no
other), the enum values, the struct fields in order, and the ABI version."""

import re

import lmf
from lmf import _enums, _lib

from conftest import REPO

HEADER = (REPO / "ffi/include/lmf.h").read_text()


def enum_values(prefix):
    """``{NAME: value}`` of the ``LMF_<prefix>_NAME = value`` constants."""
    return {name: int(v) for name, v in re.findall(rf"\bLMF_{prefix}_(\w+) = (\d+)", HEADER)}


def struct_fields(name):
    body = re.search(rf"typedef struct {name} {{(.*?)}} {name};", HEADER, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    return re.findall(r"(\w+);", body)


def test_every_function_is_declared():
    in_header = set(re.findall(r"^\S.*?\b(lmf_\w+)\(", HEADER, re.M))
    assert len(in_header) > 50
    assert set(_lib._SIGNATURES) == in_header


def test_abi_version():
    assert f"#define LMF_ABI_VERSION {lmf.ABI_VERSION}\n" in HEADER
    assert lmf.lib.lmf_abi_version() == lmf.ABI_VERSION
    assert re.fullmatch(r"\d+\.\d+\.\d+", lmf.version())


def test_enums():
    assert enum_values("STATUS") == {s.name: s.value for s in lmf.Status}
    dtypes = {_enums.ALIASES[n.lower()]: v for n, v in enum_values("DTYPE").items()}
    assert dtypes == lmf.DTYPES
    renamed = {"SQR": "square", "RECIP": "reciprocal", "GELU_TANH": "gelu"}
    unary = {renamed.get(n, n.lower()): v for n, v in enum_values("UNARY_OP").items()}
    assert unary == _enums.UNARY
    assert {n.lower(): v for n, v in enum_values("BINARY_OP").items()} == _enums.BINARY
    assert {n.lower(): v for n, v in enum_values("REDUCE_OP").items()} == _enums.REDUCE
    assert enum_values("DEVICE_KIND") == {"CPU": 0, "CUDA": 1}
    assert {n.lower(): v for n, v in enum_values("FINISH_REASON").items()} == {
        v: k for k, v in _enums.FINISH_REASONS.items()}


def test_structs():
    assert struct_fields("LmfGenerateParams") == [f for f, _ in _lib.GenerateParams._fields_]
    assert struct_fields("LmfChatInfo") == [f for f, _ in _lib.ChatInfoC._fields_]
    defaults = lmf.lib.lmf_generate_params_default()
    assert (defaults.do_sample, defaults.max_new_tokens, defaults.use_seed) == (-1, 0, False)
