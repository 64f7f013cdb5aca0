"""Kv in Python: the same replicated JSON key-value store as plugins/kv (Rust), with the same wire format, error codes and stored bytes.

Wire format (JSON), as in plugins/kv/src/lib.rs:

| call  | input | output |
|-------|-------|--------|
| apply | `{"put":{"key":"a","value":1}}` | `{"previous":null}` |
| apply | `{"delete":{"key":"a"}}` | `{"previous":1}` |
| apply | `{"cas":{"key":"a","expected":null,"new":1}}` | `{"previous":null}` |
| apply | `{"get":{"key":"a"}}` | `{"value":1}` |
| query | `{"get":{"key":"a"}}` | `{"value":1}` or `{"value":null}` |
| query | `{"list":{"prefix":"user/","limit":10}}` | `{"entries":[{"key":"user/1","value":1}]}` |
| query | `{"range":{"start":"a","end":"m","limit":10}}` | `{"entries":[...]}` |

`cas`: `expected` null/omitted means "must not exist"; `new` null/omitted
deletes. Mismatch: code `cas-mismatch`, message `expected <json>, current
<json>`. `put` of null is `bad-input`. `limit` defaults to 100, at most 10000.
"""

from cairn_sdk import OPTIONAL, REQUIRED, Map, PluginError, export, fields, json_equal, json_text, tagged

DATA = Map("kv")
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
# The Rust plugin's `usize` is 32 bits wide in wasm32: larger limits do not decode.
USIZE_END = 2**32


def _key(value, what):
    if not isinstance(value, str):
        raise PluginError.bad_input(f"{what} is not valid JSON for this plugin: `key` must be a string")
    return value


def _opt_str(value, name, what):
    if value is not None and not isinstance(value, str):
        raise PluginError.bad_input(f"{what} is not valid JSON for this plugin: `{name}` must be a string")
    return value


def _limit(value, what):
    if value is None:
        return DEFAULT_LIMIT
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < USIZE_END:
        raise PluginError.bad_input(f"{what} is not valid JSON for this plugin: `limit` must be a count")
    return min(value, MAX_LIMIT)


class Kv:
    """The plugin: a class with `apply` and `query` over decoded JSON."""

    def apply(self, ctx, command):
        name, body = tagged(command, "command")
        if name == "get":
            (key,) = fields(body, [("key", REQUIRED)])
            return {"value": DATA.load(ctx, _key(key, "command"))}
        if name == "put":
            key, value = fields(body, [("key", REQUIRED), ("value", REQUIRED)])
            key = _key(key, "command")
            if value is None:
                raise PluginError.bad_input("put of null; use delete")
            expected, new = _MISSING, value
        elif name == "delete":
            (key,) = fields(body, [("key", REQUIRED)])
            key, expected, new = _key(key, "command"), _MISSING, None
        elif name == "cas":
            key, expected, new = fields(body, [("key", REQUIRED), ("expected", None), ("new", None)])
            key = _key(key, "command")
        else:
            raise PluginError.bad_input(f"command is not valid JSON for this plugin: unknown variant `{name}`")
        # One read serves both the CAS check and the returned previous value.
        previous = DATA.load(ctx, key)
        if expected is not _MISSING and not json_equal(previous, expected):
            raise PluginError("cas-mismatch", f"expected {json_text(expected)}, current {json_text(previous)}")
        if new is None:
            if previous is not None:  # nothing to delete: skip the host call
                DATA.remove(ctx, key)
        else:
            DATA.save(ctx, key, new)
        return {"previous": previous}

    def query(self, ctx, query):
        name, body = tagged(query, "query")
        if name == "get":
            (key,) = fields(body, [("key", REQUIRED)], "query")
            return {"value": DATA.load(ctx, _key(key, "query"))}
        if name == "list":
            prefix, limit = fields(body, [("prefix", ""), ("limit", OPTIONAL)], "query")
            if not isinstance(prefix, str):
                raise PluginError.bad_input("query is not valid JSON for this plugin: `prefix` must be a string")
            entries = DATA.prefix(ctx, prefix, _limit(limit, "query"))
        elif name == "range":
            start, end, limit = fields(
                body, [("start", OPTIONAL), ("end", OPTIONAL), ("limit", OPTIONAL)], "query"
            )
            entries = DATA.range(
                ctx, _opt_str(start, "start", "query"), _opt_str(end, "end", "query"), _limit(limit, "query")
            )
        else:
            raise PluginError.bad_input(f"query is not valid JSON for this plugin: unknown variant `{name}`")
        return {"entries": [{"key": k, "value": v} for k, v in entries]}


_MISSING = object()

WitWorld = export(Kv)
