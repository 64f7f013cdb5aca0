// The JSON codec matches serde_json 1.0 (the Rust SDK's): numbers, key order, escapes, refusals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Float, equal, parse, stringify, utf8Decode, utf8Encode } from "../src/json.js";

const roundTrip = (text) => stringify(parse(text));

test("numbers keep serde_json's integer/float split and spelling", () => {
  const cases = {
    "0": "0", "-0": "-0.0", "1": "1", "1.0": "1.0", "-1": "-1", "1e2": "100.0", "1.5": "1.5",
    "1e20": "1e+20", "1e16": "1e+16", "1e15": "1000000000000000.0", "0.0001": "0.0001",
    "0.00001": "0.00001", "0.000001": "1e-6", "1.5e-7": "1.5e-7", "123456.789e3": "123456789.0",
    "18446744073709551615": "18446744073709551615", "18446744073709551616": "1.8446744073709552e+19",
    "-9223372036854775808": "-9223372036854775808", "-9223372036854775809": "-9.223372036854776e+18",
    "9007199254740993": "9007199254740993", "1e-400": "0.0", "-1e-400": "-0.0", "0.1": "0.1",
    "1.7976931348623157e308": "1.7976931348623157e+308",
  };
  for (const [input, want] of Object.entries(cases)) assert.equal(roundTrip(input), want, input);
  assert.equal(typeof parse("9007199254740993"), "bigint");
  assert.ok(parse("2.0") instanceof Float);
  assert.equal(stringify(new Float(3)), "3.0");
  assert.equal(stringify(NaN), "null");
});

test("objects are written with keys in code point order, compactly", () => {
  assert.equal(roundTrip('{ "b" : 1, "a" : [ true , null ], "\uffff": 0, "\ud83d\ude00": 1, "é": 2 }'),
    '{"a":[true,null],"b":1,"é":2,"\uffff":0,"\ud83d\ude00":1}');
  assert.equal(roundTrip('{"a":1,"a":2}'), '{"a":2}');
  assert.equal(roundTrip('{"__proto__":1}'), '{"__proto__":1}');
});

test("strings escape like serde_json", () => {
  assert.equal(roundTrip('"\\u0001\\/\\b\\f\\n\\r\\t\\"\\\\\u007f é"'), '"\\u0001/\\b\\f\\n\\r\\t\\"\\\\\u007f é"');
  assert.equal(roundTrip('"\\ud83d\\ude00"'), '"\ud83d\ude00"');
});

test("malformed input is refused where serde_json refuses it", () => {
  const bad = ["", "{", "[1,]", '{"a":1,}', "01", "1.", "1e", "-", ".5", "+1", "nul", "[1] x", '"\\ud800"', '"\\udc00"',
    '"a\nb"', '"\\x"', "1e400", "NaN", "{1:2}", "'a'"];
  for (const b of bad) assert.throws(() => parse(b), undefined, JSON.stringify(b));
  assert.throws(() => parse(Uint8Array.of(0x22, 0xff, 0x22)), /invalid unicode/);
  assert.throws(() => parse(Uint8Array.of(0x22, 0xed, 0xa0, 0x80, 0x22)), /invalid unicode/); // UTF-8 surrogate
  // serde_json's recursion limit: 127 nested arrays parse, 128 do not.
  assert.doesNotThrow(() => parse("[".repeat(127) + "]".repeat(127)));
  assert.throws(() => parse("[".repeat(128) + "]".repeat(128)), /recursion limit/);
});

test("equality is serde_json Value equality", () => {
  assert.ok(!equal(parse("1"), parse("1.0")));
  assert.ok(equal(parse("0.0"), parse("-0.0")));
  assert.ok(equal(parse('{"a":1,"b":[2]}'), parse('{"b":[2],"a":1}')));
  assert.ok(equal(parse("18446744073709551615"), 18446744073709551615n));
  assert.ok(!equal(parse("[1]"), parse("[1,2]")));
  assert.ok(equal(null, undefined));
});

test("UTF-8 round trip and strictness", () => {
  const s = "a\u00e9\u4e2d\ud83d\ude00";
  assert.equal(utf8Decode(utf8Encode(s)), s);
  assert.equal(utf8Decode(Uint8Array.of(0xc0, 0x80)), null); // overlong
  assert.throws(() => utf8Encode("\ud800"), /lone surrogate/);
});

test("the fast path never changes the answer", () => {
  // Each pair: text that JSON.parse would read differently from serde_json.
  assert.equal(roundTrip('{"a":[1.0, -0, 1e2, 12345678901234567]}'), '{"a":[1.0,-0.0,100.0,12345678901234567]}');
  assert.equal(roundTrip('{"k":"1.5","n":2}'), '{"k":"1.5","n":2}');
  assert.throws(() => parse('"\\ud800"'));
  assert.throws(() => parse("[".repeat(130) + "]".repeat(130)), /recursion/);
});
