"""Cairn guest SDK for Python: write a replicated, deterministic state machine as one class, test it with pytest against `cairn_sdk.testing.MockHost`, build it into a component with componentize-py.

A plugin is a class with two methods over decoded JSON::

    from cairn_sdk import Item, PluginError, export

    TOTAL = Item("total")

    class Counter:
        def apply(self, ctx, command):      # may write; runs on every node
            total = TOTAL.load(ctx, 0) + command["add"]
            TOTAL.save(ctx, total)
            ctx.emit("total", str(total))
            return {"total": total}

        def query(self, ctx, query):        # read-only
            return {"total": TOTAL.load(ctx, 0)}

    WitWorld = export(Counter)              # what componentize-py looks for

Rules that keep every node identical (the host enforces most of them): keep
all state in the KV store (each call runs in a fresh instance); use
`ctx.timestamp_ms()` and `ctx.random_bytes()`, never clocks or OS randomness;
raise `PluginError` to reject a command, which discards all its writes and
events. Any other exception traps the call (like a Rust panic): also rolled
back, reported as a trap.

Storage is byte-for-byte the Rust SDK's (`guest-sdk/src/storage.rs`): an
`Item` named `n` lives at key `n`, a `Map` named `n` stores key `k` at
`n + b"\\0" + encode(k)`; values are JSON written exactly as serde_json writes
a `serde_json::Value` (compact, object keys sorted, its float layout). So a Python
plugin and a Rust plugin given the same commands hold the same bytes.
"""

from . import _json
from ._json import JsonError
from ._json import dumps as json_text  # a value as serde_json's compact text (for messages)
from ._json import same as json_equal  # equality as serde_json::Value defines it (1 != 1.0)

__all__ = [
    "BAD_INPUT",
    "BAD_OUTPUT",
    "CORRUPT_STATE",
    "Ctx",
    "Item",
    "KEY_TOO_LARGE",
    "Map",
    "PluginError",
    "OPTIONAL",
    "READ_ONLY",
    "REQUIRED",
    "VALUE_TOO_LARGE",
    "export",
    "fields",
    "json_equal",
    "json_text",
    "run_apply",
    "run_query",
    "tagged",
    "to_json",
    "from_json",
]

# Error codes, identical to the Rust SDK's `PluginError::*` constants.
BAD_INPUT = "bad-input"
BAD_OUTPUT = "bad-output"
CORRUPT_STATE = "corrupt-state"
READ_ONLY = "read-only"
KEY_TOO_LARGE = "key-too-large"
VALUE_TOO_LARGE = "value-too-large"

# The Rust SDK's `KvError` messages, by code.
KV_ERROR_MESSAGES = {
    READ_ONLY: "write refused: the store is read-only during query",
    KEY_TOO_LARGE: "write refused: key exceeds the host's size limit",
    VALUE_TOO_LARGE: "write refused: value exceeds the host's size limit",
}

# Entries asked of the host per `scan`, as in the Rust SDK.
SCAN_PAGE = 256


class PluginError(Exception):
    """A failure a plugin reports on purpose: a stable kebab-case `code` and a human `message`.

    The host records it (the same on every node), discards every KV write and
    event of the call and returns it to the client.
    """

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def bad_input(cls, message):
        """A `bad-input` error: the caller sent something the plugin cannot use."""
        return cls(BAD_INPUT, message)

    @classmethod
    def corrupt_state(cls, message):
        """A `corrupt-state` error: stored bytes do not decode."""
        return cls(CORRUPT_STATE, message)

    @classmethod
    def kv(cls, code):
        """The error for a KV write the host refused (`read-only`, `key-too-large`, `value-too-large`)."""
        return cls(code, KV_ERROR_MESSAGES.get(code, "write refused"))

    def __eq__(self, other):
        return isinstance(other, PluginError) and (self.code, self.message) == (
            other.code,
            other.message,
        )

    def __hash__(self):
        return hash((self.code, self.message))

    def __repr__(self):
        return f"PluginError({self.code!r}, {self.message!r})"


def to_json(value):
    """`value` as the JSON bytes serde_json would write for it; `bad-output` if it is not JSON."""
    try:
        return _json.dumpb(value)
    except JsonError as e:
        raise PluginError(BAD_OUTPUT, f"cannot encode as JSON: {e}") from None


def from_json(data):
    """JSON bytes decoded as serde_json would; raises `JsonError`."""
    return _json.loads(data)


class Ctx:
    """The plugin's view of the host during one `apply` or `query` call.

    Everything it returns is identical on every node: the log index, the
    leader's timestamp, randomness seeded from the log index. During `query`
    writes fail with `PluginError("read-only", …)` and events are dropped.
    """

    __slots__ = ("_host",)

    def __init__(self, host):
        self._host = host

    def index(self):
        """The Raft log index of the command being applied; in `query`, that of the last applied command."""
        return self._host.log_index()

    def timestamp_ms(self):
        """Milliseconds since the Unix epoch, stamped by the leader when it proposed the command."""
        return self._host.timestamp_ms()

    def random_bytes(self, n):
        """`n` deterministic pseudo-random bytes (seeded from the log index and plugin name; not secret)."""
        return bytes(self._host.random_bytes(n))

    def random_u64(self):
        """A deterministic pseudo-random integer in [0, 2**64), little-endian from `random_bytes(8)` like the Rust SDK."""
        return int.from_bytes(self.random_bytes(8).ljust(8, b"\0")[:8], "little")

    def emit(self, topic, payload):
        """Emits an event (`payload`: bytes, or str sent as UTF-8). Dropped if the call fails."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        self._host.emit(topic, bytes(payload))

    def emit_json(self, topic, value):
        """Emits an event whose payload is `value` as JSON."""
        self.emit(topic, to_json(value))

    def get(self, key):
        """The raw value under `key` (bytes), or None."""
        v = self._host.get(bytes(key))
        return None if v is None else bytes(v)

    def set(self, key, value):
        """Stores raw `value` under `key`; committed only if `apply` succeeds."""
        self._host.set(bytes(key), bytes(value))

    def delete(self, key):
        """Removes `key`; removing a missing key is not an error."""
        self._host.delete(bytes(key))

    def scan(self, start, end=None, limit=SCAN_PAGE):
        """One host scan: up to `limit` `(key, value)` pairs with `start <= key < end`, possibly fewer."""
        return self._host.scan(bytes(start), None if end is None else bytes(end), limit)

    def entries(self, start, end=None, limit=None):
        """Iterates `(key, value)` pairs with `start <= key < end` in key order, paging through the host."""
        remaining = float("inf") if limit is None else limit
        start = bytes(start)
        while remaining > 0:
            page = self.scan(start, end, int(min(remaining, SCAN_PAGE)))
            # Only an empty page proves the end: the host may cap the page.
            if not page:
                return
            for entry in page:
                if remaining <= 0:
                    return
                remaining -= 1
                yield entry
            start = page[-1][0] + b"\0"


def _show(key):
    """A key for error messages, escaped like Rust's `escape_ascii`."""
    out = []
    for b in key:
        if b in (0x09, 0x0A, 0x0D):
            out.append({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}[b])
        elif b in (0x22, 0x27, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return '"' + "".join(out) + '"'


def _encode_value(value, key):
    try:
        return _json.dumpb(value)
    except JsonError as e:
        raise PluginError(
            BAD_OUTPUT, f"cannot encode the value for key {_show(key)}: {e}"
        ) from None


def _decode_value(raw, key):
    try:
        return _json.loads(raw, track_duplicates=False)
    except JsonError as e:
        raise PluginError.corrupt_state(
            f"the value at key {_show(key)} does not decode: {e}"
        ) from None


def _check_name(name):
    if not isinstance(name, str) or "\0" in name:
        raise ValueError("storage names must be strings without a NUL byte")
    return name


_MISSING = object()


class Item:
    """One JSON value stored under a fixed key (the key is the name, as in the Rust SDK)."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = _check_name(key).encode("utf-8")

    def load(self, ctx, default=None):
        """The stored value, or `default` if absent."""
        raw = ctx.get(self.key)
        return default if raw is None else _decode_value(raw, self.key)

    def exists(self, ctx):
        """Whether a value is stored."""
        return ctx.get(self.key) is not None

    def save(self, ctx, value):
        """Stores `value`."""
        ctx.set(self.key, _encode_value(value, self.key))

    def remove(self, ctx):
        """Removes the value (no error if absent)."""
        ctx.delete(self.key)

    def update(self, ctx, f):
        """Saves and returns `f(current or None)`; if `f` raises, nothing is written."""
        new = f(self.load(ctx))
        self.save(ctx, new)
        return new


class _StrKey:
    name = "str"

    @staticmethod
    def encode(k):
        if not isinstance(k, str):
            raise TypeError(f"map key must be str, not {type(k).__name__}")
        return k.encode("utf-8")

    @staticmethod
    def decode(b):
        return b.decode("utf-8")


class _BytesKey:
    name = "bytes"

    @staticmethod
    def encode(k):
        if not isinstance(k, (bytes, bytearray)):
            raise TypeError(f"map key must be bytes, not {type(k).__name__}")
        return bytes(k)

    @staticmethod
    def decode(b):
        return bytes(b)


class _IntKey:
    """Fixed-width big-endian integers; signed ones flip the sign bit, as the Rust `Key` impls do."""

    def __init__(self, name, bits, signed):
        self.name, self.width, self.signed = name, bits // 8, signed
        self.lo = -(1 << (bits - 1)) if signed else 0
        self.hi = (1 << (bits - 1)) if signed else (1 << bits)
        self.flip = (1 << (bits - 1)) if signed else 0

    def encode(self, k):
        if isinstance(k, bool) or not isinstance(k, int) or not self.lo <= k < self.hi:
            raise TypeError(f"map key must be an integer in [{self.lo}, {self.hi}), got {k!r}")
        return ((k % (1 << (8 * self.width))) ^ self.flip).to_bytes(self.width, "big")

    def decode(self, b):
        if len(b) != self.width:
            raise ValueError("wrong width")
        n = int.from_bytes(b, "big") ^ self.flip
        return n - (1 << (8 * self.width)) if self.signed and n >= self.hi else n


KEY_TYPES = {
    str: _StrKey,
    "str": _StrKey,
    bytes: _BytesKey,
    "bytes": _BytesKey,
    "u8": _IntKey("u8", 8, False),
    "u16": _IntKey("u16", 16, False),
    "u32": _IntKey("u32", 32, False),
    "u64": _IntKey("u64", 64, False),
    "u128": _IntKey("u128", 128, False),
    "i32": _IntKey("i32", 32, True),
    "i64": _IntKey("i64", 64, True),
}


def _successor(prefix):
    """The smallest byte string greater than every string starting with `prefix`."""
    out = bytearray(prefix)
    while out:
        last = out.pop()
        if last != 0xFF:
            out.append(last + 1)
            return bytes(out)
    raise AssertionError("map prefixes always contain a non-0xFF byte")


class Map:
    """JSON values under keys of one type, in a namespace; iterates in key order.

    `key` is `str` (default; lexicographic by UTF-8 bytes), `bytes`, or one of
    "u8" "u16" "u32" "u64" "u128" "i32" "i64" (numeric order) — the Rust SDK's
    `Key` encodings, so `Map("balance", key="u64")` reads what a Rust
    `Map<u64, _>` named "balance" wrote.
    """

    __slots__ = ("namespace", "_key", "_prefix")

    def __init__(self, namespace, key=str):
        self.namespace = _check_name(namespace)
        try:
            self._key = KEY_TYPES[key]
        except (KeyError, TypeError):
            raise ValueError(f"unsupported map key type {key!r}") from None
        self._prefix = namespace.encode("utf-8") + b"\0"

    def raw_key(self, key):
        """The raw KV key under which `key` is stored."""
        return self._prefix + self._key.encode(key)

    def load(self, ctx, key, default=None):
        """The value under `key`, or `default`."""
        raw = self.raw_key(key)
        value = ctx.get(raw)
        return default if value is None else _decode_value(value, raw)

    def has(self, ctx, key):
        """Whether a value is stored under `key`."""
        return ctx.get(self.raw_key(key)) is not None

    def save(self, ctx, key, value):
        """Stores `value` under `key`."""
        raw = self.raw_key(key)
        ctx.set(raw, _encode_value(value, raw))

    def remove(self, ctx, key):
        """Removes `key` (no error if absent)."""
        ctx.delete(self.raw_key(key))

    def update(self, ctx, key, f):
        """Saves and returns `f(current or None)`; if `f` raises, nothing is written."""
        new = f(self.load(ctx, key))
        self.save(ctx, key, new)
        return new

    def iter(self, ctx, start=None, end=None, limit=None):
        """Yields `(key, value)` with `start <= key < end` in key order (None: unbounded)."""
        lo = self._prefix if start is None else self.raw_key(start)
        hi = self._prefix[:-1] + b"\x01" if end is None else self.raw_key(end)
        return self._decoded(ctx, lo, hi, limit)

    def range(self, ctx, start=None, end=None, limit=None):
        """Up to `limit` `(key, value)` pairs with `start <= key < end`, as a list."""
        return list(self.iter(ctx, start, end, limit))

    def prefix(self, ctx, prefix, limit=None):
        """Up to `limit` pairs whose encoded key starts with the encoding of `prefix`."""
        lo = self.raw_key(prefix)
        return list(self._decoded(ctx, lo, _successor(lo), limit))

    def _decoded(self, ctx, lo, hi, limit):
        skip = len(self._prefix)
        for raw, value in ctx.entries(lo, hi, limit):
            try:
                key = self._key.decode(raw[skip:])
            except (ValueError, UnicodeDecodeError):
                raise PluginError.corrupt_state(
                    f"the key {_show(raw)} does not decode as {self._key.name}"
                ) from None
            yield key, _decode_value(value, raw)


def tagged(value, what="command"):
    """Splits a serde "externally tagged" enum value `{"name": body}` into `(name, body)`.

    Anything else is `bad-input`, as in a Rust plugin whose command is an enum.
    """
    if not isinstance(value, dict) or len(value) != 1:
        raise PluginError.bad_input(
            f"{what} is not valid JSON for this plugin: expected an object with one key naming the {what}"
        )
    ((name, body),) = value.items()
    return name, body


# Markers for `fields`. REQUIRED: the field must be present. OPTIONAL: like a
# Rust `Option` field without `#[serde(default)]`: None when missing from an
# object, but an array must still have it.
REQUIRED = object()
OPTIONAL = object()


def fields(body, spec, what="command"):
    """Reads a struct body as serde would: an object (unknown keys ignored, duplicates refused) or an array in field order.

    `spec` is a list of `(name, default)` pairs; `default` is `REQUIRED` when
    the field must be present, `OPTIONAL` for an `Option` field. Returns the
    values in `spec` order.
    """
    names = [n for n, _ in spec]
    if isinstance(body, dict):
        if getattr(body, "duplicates", False):
            raise PluginError.bad_input(f"{what} is not valid JSON for this plugin: duplicate field")
        out = []
        for name, default in spec:
            if name in body:
                out.append(body[name])
            elif default is REQUIRED:
                raise PluginError.bad_input(
                    f"{what} is not valid JSON for this plugin: missing field `{name}`"
                )
            else:
                out.append(None if default is OPTIONAL else default)
        return out
    if isinstance(body, list):
        if len(body) > len(spec):
            raise PluginError.bad_input(
                f"{what} is not valid JSON for this plugin: invalid length {len(body)}, expected {len(names)} fields"
            )
        out = list(body)
        for name, default in spec[len(body):]:
            if default is REQUIRED or default is OPTIONAL:
                raise PluginError.bad_input(
                    f"{what} is not valid JSON for this plugin: invalid length {len(body)}, expected {len(names)} fields"
                )
            out.append(default)
        return out
    raise PluginError.bad_input(
        f"{what} is not valid JSON for this plugin: expected a struct with fields {names}"
    )


def _decode_input(data, what):
    try:
        return _json.loads(data)
    except JsonError as e:
        raise PluginError.bad_input(f"{what} is not valid JSON: {e}") from None


def run_apply(plugin, ctx, data):
    """The wire path of `apply`: JSON bytes in, JSON bytes out (shared by the component and MockHost)."""
    command = _decode_input(data, "command")
    return _encode_output(plugin.apply(ctx, command))


def run_query(plugin, ctx, data):
    """The wire path of `query` (see `run_apply`)."""
    query = _decode_input(data, "query")
    return _encode_output(plugin.query(ctx, query))


def _encode_output(value):
    try:
        return _json.dumpb(value)
    except JsonError as e:
        raise PluginError(BAD_OUTPUT, f"cannot encode the output as JSON: {e}") from None


def export(plugin_class):
    """The class componentize-py exports for world `plugin`; assign it to `WitWorld` in the app module.

    Each call builds a fresh `plugin_class()`, as the host gives each call a
    fresh instance: keep no state on `self` between calls.
    """
    from ._wasm import make_world

    return make_world(plugin_class)
