"""JSON exactly as the Rust SDK (serde_json) reads and writes it, so a Python plugin stores and returns the same bytes as a Rust one.

Why not plain `json`: serde_json writes compact JSON with object keys sorted
(its `Value` map is ordered), raw UTF-8 (no `\\uXXXX` for non-ASCII) and
floats in their shortest form laid out its own way (`1e+20`, `1.5e-7`,
`1.0`, `0.00001`), while Python writes `1e+20`, `1.5e-07`, `1e-05`; and serde_json refuses `NaN`, numbers out of range,
lone surrogates and nesting deeper than 127, turns integers outside
[-2**63, 2**64) and `-0` into floats, and treats `1` and `1.0` as different
values. Stored bytes feed the cluster's state hash, so "almost the same JSON"
would make a Python and a Rust plugin disagree.
"""

import json
import re

# Python's own string escaper with `ensure_ascii=False` escapes exactly what
# serde_json escapes: `"`, `\\`, \b \f \n \r \t by name and other control
# characters as lowercase `\u00XX`.
try:
    from json.encoder import c_encode_basestring as _encode_str  # type: ignore
except ImportError:  # pragma: no cover - CPython always has the C accelerator
    _encode_str = None
if _encode_str is None:  # pragma: no cover
    from json.encoder import py_encode_basestring as _encode_str  # type: ignore

_I64_MIN = -(2**63)
_U64_END = 2**64
# serde_json refuses the 128th level of nesting.
_MAX_DEPTH = 127


class JsonError(ValueError):
    """The bytes are not JSON that serde_json would accept, or a value cannot be written as JSON."""


class _Object(dict):
    """A decoded JSON object that remembers whether a key appeared twice.

    serde_json keeps the last of duplicate keys in a free-form value but
    refuses duplicates in a typed struct, so the struct helpers need to know.
    """

    __slots__ = ("duplicates",)


def _pairs(pairs):
    obj = _Object(pairs)
    obj.duplicates = len(obj) != len(pairs)
    return obj


def _parse_int(text):
    n = int(text)
    if _I64_MIN <= n < _U64_END:
        if n == 0 and text.startswith("-"):
            return -0.0  # serde_json reads `-0` as the float -0.0
        return n
    # serde_json keeps such integers only as f64.
    return _parse_float(text)


def _parse_float(text):
    f = float(text)
    if f in (float("inf"), float("-inf")):
        raise JsonError("number out of range")
    return f


def _parse_constant(name):
    raise JsonError(f"expected value, found {name}")


def _check(value, depth):
    """Refuses what serde_json refuses after parsing: deep nesting and lone surrogates."""
    if depth > _MAX_DEPTH:
        raise JsonError("recursion limit exceeded")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonError("lone surrogate in a string escape") from None
    elif isinstance(value, list):
        for v in value:
            _check(v, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check(k, depth + 1)
            _check(v, depth + 1)


# Built once: a decoder per call would cost fuel on every read.
_STRICT = json.JSONDecoder(
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_parse_constant,
    object_pairs_hook=_pairs,
)
_PLAIN = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)


def loads(data, track_duplicates=True):
    """Decodes UTF-8 JSON bytes (or text) as serde_json would; raises `JsonError`.

    `track_duplicates=False` skips recording duplicate object keys (only typed
    command bodies care): cheaper, for values the SDK itself wrote.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
    except UnicodeDecodeError as e:
        raise JsonError(f"invalid UTF-8: {e.reason} at byte {e.start}") from None
    try:
        value = (_STRICT if track_duplicates else _PLAIN).decode(text)
    except JsonError:
        raise
    except (ValueError, RecursionError) as e:
        raise JsonError(str(e)) from None
    # Only walk the value when it could contain what the parser let through.
    if "\\u" in text or text.count("[") + text.count("{") > _MAX_DEPTH:
        _check(value, 0)
    return value


def _float(f):
    """Formats a float as serde_json 1.0.154 (zmij) does: fixed for decimal exponents -5..=15, else `d.ddde±N`."""
    if f != f or f in (float("inf"), float("-inf")):
        # serde_json writes non-finite floats as null.
        return "null"
    r = repr(f)
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    # `repr` gives the shortest round-trip digits, as serde_json does; only the
    # layout differs. Split into digits and a decimal exponent.
    if "e" in r:
        mant, exp = r.split("e")
        exp = int(exp)
    else:
        mant, exp = r, 0
    if "." in mant:
        whole, frac = mant.split(".")
    else:
        whole, frac = mant, ""
    digits = (whole + frac).lstrip("0")
    # value = 0.digits... shifted: digits * 10**(exp - len(frac)), minus stripped zeros
    k = exp - len(frac)
    if not digits:
        return sign + "0.0"
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + k  # 10**(kk-1) <= value < 10**kk
    if 0 <= k and kk <= 16:
        return sign + digits + "0" * k + ".0"
    if 0 < kk <= 16:
        return sign + digits[:kk] + "." + digits[kk:]
    if -5 < kk <= 0:
        return sign + "0." + "0" * (-kk) + digits
    # Exponent form, sign always written: `1e+20`, `1.5e-7`.
    exp = kk - 1
    tail = ("e+" if exp >= 0 else "e-") + str(abs(exp))
    if length == 1:
        return sign + digits + tail
    return sign + digits[0] + "." + digits[1:] + tail


def _key_text(k):
    if isinstance(k, str):
        return k
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, int):
        return int.__repr__(k)
    if isinstance(k, float):
        return float.__repr__(k)
    raise JsonError(f"object keys must be strings, not {type(k).__name__}")


def _encode(value, out):
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        # Sorted by the keys themselves, then non-string keys written as
        # `json` writes them: exactly what the fast path does.
        try:
            items = sorted(value.items(), key=lambda kv: kv[0])
        except TypeError:
            raise JsonError("object keys of different types cannot be sorted") from None
        for k, v in items:
            if not first:
                out.append(",")
            first = False
            out.append(_encode_str(_key_text(k)))
            out.append(":")
            _encode(v, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _encode(v, out)
        out.append("]")
    else:
        raise JsonError(f"{type(value).__name__} is not a JSON value")


# CPython's C encoder, configured as serde_json writes: compact, keys sorted,
# raw UTF-8. Only its float layout differs, so it is used when the output
# holds no float (a digit followed by `.`/`e`; a string holding such text
# just takes the slow path).
_FAST = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)
_MAYBE_FLOAT = re.compile(r"\d[.eE]")


def dumps(value):
    """Encodes `value` as serde_json writes a `serde_json::Value`; returns text."""
    try:
        text = _FAST.encode(value)
    except (TypeError, ValueError):
        text = None  # NaN, non-JSON types, mixed keys: the slow path says why
    if text is not None and _MAYBE_FLOAT.search(text) is None:
        return text
    out = []
    _encode(value, out)
    return "".join(out)


def dumpb(value):
    """`dumps` as UTF-8 bytes."""
    try:
        return dumps(value).encode("utf-8")
    except UnicodeEncodeError:
        raise JsonError("a string contains a lone surrogate") from None


def same(a, b):
    """Equality as `serde_json::Value` defines it: `1` and `1.0` differ, `true` is not `1`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int) or isinstance(b, int):
        return isinstance(a, int) and isinstance(b, int) and a == b
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and a == b
    if isinstance(a, (list, tuple)):
        return (
            isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b))
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(same(a[k], b[k]) for k in a)
        )
    return type(a) is type(b) and a == b
