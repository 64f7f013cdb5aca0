"""Kv (Python) against the pure-Python MockHost: wire format, error codes and stored bytes as the Rust plugins/kv."""

import pytest

from app import Kv
from cairn_sdk import PluginError
from cairn_sdk.testing import MockHost


def err(mock, call, data):
    with pytest.raises(PluginError) as e:
        call(Kv, data)
    return e.value


def test_put_get_delete_and_stored_bytes():
    mock = MockHost()
    assert mock.apply(Kv, {"put": {"key": "a", "value": {"z": 1, "b": [1.0, "é"]}}}) == {"previous": None}
    # Stored exactly as serde_json writes a Value: compact, keys sorted, raw UTF-8.
    assert mock.get(b"kv\0a") == '{"b":[1.0,"é"],"z":1}'.encode()
    assert mock.apply_raw(Kv, b'{"get":{"key":"a"}}') == '{"value":{"b":[1.0,"é"],"z":1}}'.encode()
    assert mock.query(Kv, {"get": {"key": "missing"}}) == {"value": None}
    assert mock.apply(Kv, {"delete": {"key": "a"}}) == {"previous": {"b": [1.0, "é"], "z": 1}}
    assert mock.dump() == {}
    assert mock.apply(Kv, {"delete": {"key": "a"}}) == {"previous": None}


def test_cas_compares_as_json_values():
    mock = MockHost()
    assert mock.apply(Kv, {"cas": {"key": "n", "new": 1}}) == {"previous": None}
    e = err(mock, mock.apply_raw, b'{"cas":{"key":"n","expected":1.0,"new":2}}')
    assert (e.code, e.message) == ("cas-mismatch", "expected 1.0, current 1")
    e = err(mock, mock.apply_raw, b'{"cas":{"key":"n","new":2}}')
    assert (e.code, e.message) == ("cas-mismatch", "expected null, current 1")
    assert mock.apply(Kv, {"cas": {"key": "n", "expected": 1}}) == {"previous": 1}
    assert mock.get(b"kv\0n") is None


def test_list_and_range_in_byte_order_and_paged():
    mock = MockHost(scan_cap=2)  # forces the SDK to page
    for k in ["user/2", "user/10", "a", "user/1", "z", "é"]:
        mock.apply(Kv, {"put": {"key": k, "value": k}})
    keys = lambda out: [e["key"] for e in out["entries"]]
    assert keys(mock.query(Kv, {"list": {"prefix": "user/"}})) == ["user/1", "user/10", "user/2"]
    assert keys(mock.query(Kv, {"list": {}})) == ["a", "user/1", "user/10", "user/2", "z", "é"]
    assert keys(mock.query(Kv, {"list": {"limit": 2}})) == ["a", "user/1"]
    assert keys(mock.query(Kv, {"range": {"start": "b", "end": "z"}})) == ["user/1", "user/10", "user/2"]
    assert keys(mock.query(Kv, {"range": {"start": "z", "end": "b"}})) == []
    assert keys(mock.query(Kv, {"range": {"limit": 0}})) == []


def test_bad_input_codes_and_rollback():
    mock = MockHost()
    mock.apply(Kv, {"put": {"key": "a", "value": 1}})
    for data in [
        b"{",
        b"\xff",
        b"",
        b'{"nope":{}}',
        b'{"put":{"key":"a"}}',
        b'{"put":{"key":1,"value":1}}',
        b'{"put":{"key":"a","value":null}}',
        b'{"put":{"key":"a","key":"b","value":1}}',
        b'{"put":{"key":"a","value":NaN}}',
        b'{"put":{"key":"a","value":1e400}}',
        b'{"put":{"key":"a","value":"\\ud800"}}',
        b'"put"',
        b'{"put":{"key":"a","value":1},"get":{"key":"a"}}',
    ]:
        e = err(mock, mock.apply_raw, data)
        assert e.code == "bad-input", (data, e)
    e = err(mock, mock.query_raw, b'{"list":{"limit":-1}}')
    assert e.code == "bad-input"
    e = err(mock, mock.query_raw, b'{"list":{"limit":4294967296}}')
    assert e.code == "bad-input"
    e = err(mock, mock.query_raw, b'{"range":["a"]}')
    assert e.code == "bad-input"
    # serde also reads a struct from an array in field order.
    assert mock.apply_raw(Kv, b'{"put":["b",2]}') == b'{"previous":null}'
    assert mock.query_raw(Kv, b'{"range":["a","c",null]}') == b'{"entries":[{"key":"a","value":1},{"key":"b","value":2}]}'
    # Failed commands consumed indexes but changed nothing.
    assert mock.index == 2 + 13


def test_number_encoding_matches_serde_json():
    mock = MockHost()
    cases = {
        b"1e20": b"1e+20",
        b"1.5e-7": b"1.5e-7",
        b"0.1": b"0.1",
        b"100.0": b"100.0",
        b"-0": b"-0.0",
        b"18446744073709551615": b"18446744073709551615",
        b"18446744073709551616": b"1.8446744073709552e+19",
        b"-9223372036854775809": b"-9.223372036854776e+18",
        b"123456789012345678.0": b"1.2345678901234568e+17",
        b"0.00001": b"0.00001",
        b"0.000001": b"1e-6",
        b"1e16": b"1e+16",
        b"1e15": b"1000000000000000.0",
        b"0.0001": b"0.0001",
    }
    for raw, stored in cases.items():
        mock.apply_raw(Kv, b'{"put":{"key":"n","value":' + raw + b"}}")
        assert mock.get(b"kv\0n") == stored, raw
