"""The SDK's contract: the Rust SDK's key layout and value bytes, and MockHost's rules (read-only queries, rollback, one index per apply)."""

import pytest

from cairn_sdk import Item, Map, PluginError, export, from_json, to_json
from cairn_sdk.testing import MockHost

COUNT = Item("count")
NAMES = Map("name")
BY_ID = Map("id", key="u64")
SIGNED = Map("s", key="i64")


class Counter:
    def apply(self, ctx, command):
        n = COUNT.load(ctx, 0) + command["add"]
        COUNT.save(ctx, n)
        ctx.emit("count", str(n))
        if command.get("fail"):
            raise PluginError("failed", "on purpose")
        if command.get("crash"):
            raise RuntimeError("a bug")
        return {"count": n, "index": ctx.index()}

    def query(self, ctx, query):
        if query == "write":
            COUNT.save(ctx, 99)
        return {"count": COUNT.load(ctx, 0), "index": ctx.index()}


def test_key_layout_is_the_rust_sdks():
    assert COUNT.key == b"count"
    assert NAMES.raw_key("bob") == b"name\0bob"
    assert BY_ID.raw_key(258) == b"id\0" + bytes([0, 0, 0, 0, 0, 0, 1, 2])
    assert SIGNED.raw_key(-1) == b"s\0" + bytes([0x7F] + [0xFF] * 7)
    assert SIGNED.raw_key(0) == b"s\0" + bytes([0x80] + [0] * 7)
    assert Map("x", key="i32").raw_key(-2) == b"x\0\x7f\xff\xff\xfe"
    with pytest.raises(TypeError):
        BY_ID.raw_key(-1)
    with pytest.raises(ValueError):
        Item("a\0b")


def test_maps_iterate_in_numeric_and_byte_order_and_page():
    mock = MockHost(scan_cap=2)
    ctx = mock.ctx()
    for n in [10, -3, 7, 0, -100]:
        SIGNED.save(ctx, n, n * 2)
    for n in [300, 2, 1 << 40]:
        BY_ID.save(ctx, n, str(n))
    COUNT.save(ctx, 5)  # an item does not leak into maps
    assert [k for k, _ in SIGNED.iter(ctx)] == [-100, -3, 0, 7, 10]
    assert SIGNED.range(ctx, -3, 7) == [(-3, -6), (0, 0)]
    assert [k for k, _ in BY_ID.range(ctx, limit=2)] == [2, 300]
    for k in ["b", "ab", "a", "abc", "é"]:
        NAMES.save(ctx, k, k)
    assert [k for k, _ in NAMES.prefix(ctx, "a")] == ["a", "ab", "abc"]
    assert [k for k, _ in NAMES.iter(ctx)] == ["a", "ab", "abc", "b", "é"]


def test_values_are_serde_json_bytes():
    assert to_json({"b": 1, "a": [1.0, None, True, "é\n"]}) == '{"a":[1.0,null,true,"é\\n"],"b":1}'.encode()
    assert to_json(1e21) == b"1e+21" and to_json(-0.0) == b"-0.0" and to_json(0.3) == b"0.3"
    assert to_json(123.456) == b"123.456" and to_json(1e-7) == b"1e-7"
    assert from_json(b"-0") == -0.0 and isinstance(from_json(b"18446744073709551616"), float)
    # Fast (C) and slow (float-aware) paths agree, non-string keys included.
    assert to_json({10: 1, 9: 2}) == b'{"9":2,"10":1}'
    assert to_json({10: 1.5, 9: 2}) == b'{"9":2,"10":1.5}'
    assert to_json({"s": "1.5e3 in a string", "n": [1, 2]}) == b'{"n":[1,2],"s":"1.5e3 in a string"}'
    assert to_json([float("nan"), 1]) == b"[null,1]"
    for bad in [{1: 2, "a": 3}, object(), "\ud800"]:
        with pytest.raises(PluginError) as e:
            to_json(bad)
        assert e.value.code == "bad-output"


def test_mock_applies_at_successive_indexes_and_rolls_back_failures():
    mock = MockHost()
    assert mock.apply(Counter, {"add": 2}) == {"count": 2, "index": 1}
    with pytest.raises(PluginError) as e:
        mock.apply(Counter, {"add": 5, "fail": True})
    assert (e.value.code, e.value.message) == ("failed", "on purpose")
    with pytest.raises(RuntimeError):
        mock.apply(Counter, {"add": 5, "crash": True})
    # Both failures consumed an index, changed nothing and emitted nothing.
    assert mock.query(Counter, None) == {"count": 2, "index": 3}
    assert [(e.index, e.topic, e.payload) for e in mock.events()] == [(1, "count", b"2")]


def test_mock_queries_are_read_only_and_inputs_are_checked():
    mock = MockHost()
    with pytest.raises(PluginError) as e:
        mock.query(Counter, "write")
    assert e.value.code == "read-only"
    assert e.value.message == "write refused: the store is read-only during query"
    for bad in [b"{", b"\xff", b"", b"NaN"]:
        with pytest.raises(PluginError) as e:
            mock.apply_raw(Counter, bad)
        assert e.value.code == "bad-input" and e.value.message.startswith("command is not valid JSON")
    mock2 = MockHost(max_key_bytes=3, max_value_bytes=2)
    with pytest.raises(PluginError) as e:
        mock2.transaction(lambda ctx: ctx.set(b"long", b"v"))
    assert e.value.code == "key-too-large"
    with pytest.raises(PluginError) as e:
        mock2.transaction(lambda ctx: ctx.set(b"k", b"vvv"))
    assert e.value.code == "value-too-large"


def test_random_is_deterministic_per_index_and_time_is_settable():
    a, b = MockHost(seed=7, timestamp_ms=1234), MockHost(seed=7, timestamp_ms=1234)
    draw = lambda m: m.transaction(lambda ctx: (ctx.random_bytes(12), ctx.random_u64(), ctx.timestamp_ms()))
    assert draw(a) == draw(b)
    first, second = draw(a), draw(a)
    assert first[0] != second[0] and len(first[0]) == 12 and first[2] == 1234


def test_export_outside_a_component_is_a_clear_error():
    world = export(Counter)()
    with pytest.raises(RuntimeError, match="MockHost"):
        world.apply(b"{}")
