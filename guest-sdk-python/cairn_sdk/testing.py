"""`MockHost`: an in-memory Cairn node for pytest, with the rules of the real host and of the Rust SDK's `MockHost` (ordered KV, read-only queries, rollback on error, one log index per apply, deterministic context).

    from cairn_sdk.testing import MockHost
    mock = MockHost()
    assert mock.apply(Counter, {"add": 2}) == {"total": 2}
    assert mock.query(Counter, {}) == {"total": 2}
"""

import bisect
from dataclasses import dataclass

from . import Ctx, PluginError, _json, run_apply, run_query

_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class Event:
    """An event a plugin emitted, as captured by `MockHost`."""

    index: int
    topic: str
    payload: bytes

    def json(self):
        """The payload decoded as JSON."""
        return _json.loads(self.payload)


class _View:
    """One view of the mock state; `read_only` is what the real host decides from the kind of call."""

    def __init__(self, mock, read_only):
        self._mock = mock
        self._read_only = read_only

    def get(self, key):
        return self._mock._kv.get(key)

    def set(self, key, value):
        if self._read_only:
            raise PluginError.kv("read-only")
        self._mock._write(key, value)

    def delete(self, key):
        if self._read_only:
            raise PluginError.kv("read-only")
        self._mock._write(key, None)

    def scan(self, start, end, limit):
        m = self._mock
        if m.scan_cap:
            limit = min(limit, m.scan_cap)
        if end is not None and end <= start:
            return []
        keys = m._keys
        i = bisect.bisect_left(keys, start)
        j = len(keys) if end is None else bisect.bisect_left(keys, end)
        j = min(j, i + limit)
        return [(k, m._kv[k]) for k in keys[i:j]]

    def log_index(self):
        return self._mock.index

    def timestamp_ms(self):
        return self._mock.timestamp_ms

    def random_bytes(self, n):
        out = bytearray()
        while len(out) < n:
            out += self._mock._next_random().to_bytes(8, "little")
        return bytes(out[:n])

    def emit(self, topic, payload):
        # The host drops events of queries.
        if not self._read_only:
            self._mock._events.append(Event(self._mock.index, topic, bytes(payload)))


class MockHost:
    """An in-memory stand-in for a Cairn node, for testing plugins without Wasm.

    - the KV store is ordered bytewise;
    - `apply*` runs a command as a transaction at the next log index: if the
      plugin raises (a `PluginError` or anything else), its writes and events
      are discarded;
    - `query*` is read-only: writes raise `PluginError("read-only", …)`,
      events are dropped;
    - timestamp and randomness are deterministic and settable;
    - each call gets a fresh plugin instance, as on the real host.

    `scan_cap` makes every scan return at most that many entries (0: no cap);
    `max_key_bytes`/`max_value_bytes` make larger writes fail (0: no limit).
    """

    def __init__(self, index=0, timestamp_ms=0, seed=0, scan_cap=0, max_key_bytes=0, max_value_bytes=0):
        self._kv = {}
        self._keys = []  # sorted keys of `_kv`
        self._undo = None
        self._events = []
        self.seed = seed
        self.timestamp_ms = timestamp_ms
        self.scan_cap = scan_cap
        self.max_key_bytes = max_key_bytes
        self.max_value_bytes = max_value_bytes
        self.set_index(index)

    # -- context ------------------------------------------------------------

    def set_index(self, index):
        """Sets the current log index (the next apply runs at `index + 1`)."""
        self.index = index
        # Like the host: the stream depends only on the seed and the log index.
        self._rng = (self.seed ^ (index * 0x9E3779B97F4A7C15)) & _MASK

    def _next_random(self):
        # splitmix64, as the Rust MockHost.
        s = (self._rng + 0x9E3779B97F4A7C15) & _MASK
        self._rng = s
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    # -- store --------------------------------------------------------------

    def _write(self, key, value):
        if self.max_key_bytes and len(key) > self.max_key_bytes:
            raise PluginError.kv("key-too-large")
        if value is not None and self.max_value_bytes and len(value) > self.max_value_bytes:
            raise PluginError.kv("value-too-large")
        previous = self._kv.get(key)
        self._put(key, value)
        if self._undo is not None:
            self._undo.append((key, previous))

    def _put(self, key, value):
        if value is None:
            if key in self._kv:
                del self._kv[key]
                self._keys.pop(bisect.bisect_left(self._keys, key))
        else:
            if key not in self._kv:
                bisect.insort(self._keys, key)
            self._kv[key] = value

    def get(self, key):
        """Reads a key directly, bypassing any plugin."""
        return self._kv.get(bytes(key))

    def insert(self, key, value):
        """Writes a key directly, bypassing any plugin and all limits (test setup)."""
        self._put(bytes(key), bytes(value))

    def dump(self):
        """A copy of the whole store, in key order."""
        return {k: self._kv[k] for k in self._keys}

    def events(self):
        """Every event committed so far, oldest first."""
        return list(self._events)

    def take_events(self):
        """Removes and returns every event committed so far."""
        events, self._events = self._events, []
        return events

    # -- calls --------------------------------------------------------------

    def ctx(self):
        """A writable context at the current index; writes apply at once (no transaction)."""
        return Ctx(_View(self, False))

    def query_ctx(self):
        """A read-only context, as a query gets."""
        return Ctx(_View(self, True))

    def transaction(self, f):
        """Runs `f(ctx)` as the host runs `apply`: at the next index, rolled back if it raises."""
        if self._undo is not None:
            raise RuntimeError("MockHost transactions do not nest")
        self.set_index(self.index + 1)
        self._undo = []
        events_before = len(self._events)
        try:
            result = f(self.ctx())
        except BaseException:
            for key, previous in reversed(self._undo):
                self._put(key, previous)
            del self._events[events_before:]
            raise
        finally:
            self._undo = None
        return result

    def apply_raw(self, plugin_class, data):
        """Applies raw input bytes exactly as the host would; returns the output bytes or raises `PluginError`."""
        return self.transaction(lambda ctx: run_apply(plugin_class(), ctx, _bytes(data)))

    def query_raw(self, plugin_class, data):
        """Runs a raw query exactly as the host would; returns the output bytes."""
        return run_query(plugin_class(), self.query_ctx(), _bytes(data))

    def apply(self, plugin_class, command):
        """Applies `command` (a JSON value) through the full wire path; returns the decoded output."""
        return _json.loads(self.apply_raw(plugin_class, _json.dumpb(command)))

    def query(self, plugin_class, query):
        """Runs `query` (a JSON value) through the full wire path, read-only; returns the decoded output."""
        return _json.loads(self.query_raw(plugin_class, _json.dumpb(query)))

    def __repr__(self):
        return f"MockHost(index={self.index}, keys={len(self._kv)}, events={len(self._events)})"


def _bytes(data):
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)
