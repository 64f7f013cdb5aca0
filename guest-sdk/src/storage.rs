//! Typed storage on top of the raw KV store: `Item<T>` (one JSON value under a fixed key) and `Map<K, V>` (JSON values under a namespace, iterable in key order).
//!
//! Layout, so that any two helpers with different names never collide:
//! an `Item` named `n` lives at key `n`; a `Map` named `n` stores key `k` at
//! `n ++ 0x00 ++ encode(k)`. Names must not contain a NUL byte (checked at
//! compile time for `const` items), which makes the `n ++ 0x00` prefixes of
//! different maps disjoint and distinct from every item key.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ctx::Ctx;
use crate::error::PluginError;
use crate::key::Key;

/// Panics (a compile error in `const` context) if `name` contains a NUL byte.
const fn check_name(name: &str) {
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i] != 0, "storage names must not contain a NUL byte");
        i += 1;
    }
}

fn encode<T: Serialize + ?Sized>(value: &T, key: &[u8]) -> Result<Vec<u8>, PluginError> {
    serde_json::to_vec(value).map_err(|e| {
        PluginError::new(
            PluginError::BAD_OUTPUT,
            format!("cannot encode the value for key {}: {e}", show(key)),
        )
    })
}

fn decode<T: DeserializeOwned>(bytes: &[u8], key: &[u8]) -> Result<T, PluginError> {
    serde_json::from_slice(bytes).map_err(|e| {
        PluginError::corrupt_state(format!(
            "the value at key {} does not decode as {}: {e}",
            show(key),
            std::any::type_name::<T>()
        ))
    })
}

/// A key for error messages: text where possible, escaped bytes otherwise.
fn show(key: &[u8]) -> String {
    format!("\"{}\"", key.escape_ascii())
}

/// One value of type `T`, stored as JSON under a fixed key.
///
/// ```
/// use cairn_sdk::{Item, MockHost};
/// const OWNER: Item<String> = Item::new("owner");
///
/// let mock = MockHost::new();
/// let mut ctx = mock.ctx();
/// assert_eq!(OWNER.load(&ctx).unwrap(), None);
/// OWNER.save(&mut ctx, &"alice".to_string()).unwrap();
/// assert_eq!(OWNER.load(&ctx).unwrap().as_deref(), Some("alice"));
/// ```
pub struct Item<T> {
    key: &'static str,
    _value: PhantomData<fn() -> T>,
}

impl<T> Item<T> {
    /// An item stored under `key` (which must not contain a NUL byte).
    pub const fn new(key: &'static str) -> Self {
        check_name(key);
        Self {
            key,
            _value: PhantomData,
        }
    }

    /// The raw KV key.
    pub const fn key(&self) -> &'static str {
        self.key
    }
}

impl<T: Serialize + DeserializeOwned> Item<T> {
    /// The stored value, or `None` if it was never saved (or was removed).
    pub fn load(&self, ctx: &Ctx) -> Result<Option<T>, PluginError> {
        let key = self.key.as_bytes();
        ctx.get(key).map(|b| decode(&b, key)).transpose()
    }

    /// The stored value, or `T::default()` if absent.
    pub fn load_or_default(&self, ctx: &Ctx) -> Result<T, PluginError>
    where
        T: Default,
    {
        Ok(self.load(ctx)?.unwrap_or_default())
    }

    /// Whether a value is stored.
    pub fn exists(&self, ctx: &Ctx) -> bool {
        ctx.get(self.key.as_bytes()).is_some()
    }

    /// Stores `value`.
    pub fn save(&self, ctx: &mut Ctx, value: &T) -> Result<(), PluginError> {
        let key = self.key.as_bytes();
        ctx.set(key, &encode(value, key)?)?;
        Ok(())
    }

    /// Removes the value (no error if absent).
    pub fn remove(&self, ctx: &mut Ctx) -> Result<(), PluginError> {
        ctx.delete(self.key.as_bytes())?;
        Ok(())
    }

    /// Loads the value, passes it to `f`, saves and returns what `f` returns.
    /// If `f` fails nothing is written.
    pub fn update(
        &self,
        ctx: &mut Ctx,
        f: impl FnOnce(Option<T>) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        let new = f(self.load(ctx)?)?;
        self.save(ctx, &new)?;
        Ok(new)
    }
}

/// Values of type `V` stored as JSON under keys of type `K`, in a namespace.
///
/// Iteration is in key order (bytewise on the encoded key: lexicographic for
/// strings, numeric for integers). Key arguments are taken by value; for a
/// `Map<&str, V>` that means a `&str`, so `&String` works through deref.
///
/// ```
/// use cairn_sdk::{Map, MockHost};
/// const BALANCES: Map<&str, u64> = Map::new("balance");
///
/// let mock = MockHost::new();
/// let mut ctx = mock.ctx();
/// BALANCES.save(&mut ctx, "bob", &5).unwrap();
/// BALANCES.save(&mut ctx, "alice", &7).unwrap();
/// let name = String::from("alice");
/// assert_eq!(BALANCES.load(&ctx, &name).unwrap(), Some(7));
/// let all = BALANCES.range(&ctx, None, None, 10).unwrap();
/// assert_eq!(all, vec![("alice".to_string(), 7), ("bob".to_string(), 5)]);
/// ```
pub struct Map<K, V> {
    namespace: &'static str,
    // Covariant in `K` so that a `const Map<&'static str, V>` can be used
    // with keys borrowed for shorter lifetimes.
    _types: PhantomData<(K, fn() -> V)>,
}

impl<K, V> Map<K, V> {
    /// A map in `namespace` (which must not contain a NUL byte).
    pub const fn new(namespace: &'static str) -> Self {
        check_name(namespace);
        Self {
            namespace,
            _types: PhantomData,
        }
    }

    /// The namespace.
    pub const fn namespace(&self) -> &'static str {
        self.namespace
    }

    /// `namespace ++ 0x00`: the prefix of every raw key of this map.
    fn prefix_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.namespace.len() + 24);
        out.extend_from_slice(self.namespace.as_bytes());
        out.push(0);
        out
    }

    /// The first raw key after every key of this map.
    fn end_bytes(&self) -> Vec<u8> {
        let mut out = self.prefix_bytes();
        *out.last_mut().expect("prefix is never empty") = 1;
        out
    }
}

impl<K: Key, V: Serialize + DeserializeOwned> Map<K, V> {
    /// The raw KV key under which `key` is stored.
    pub fn raw_key(&self, key: K) -> Vec<u8> {
        let mut out = self.prefix_bytes();
        key.encode_key(&mut out);
        out
    }

    /// The value under `key`, if any.
    pub fn load(&self, ctx: &Ctx, key: K) -> Result<Option<V>, PluginError> {
        let raw = self.raw_key(key);
        ctx.get(&raw).map(|b| decode(&b, &raw)).transpose()
    }

    /// Whether a value is stored under `key`.
    pub fn has(&self, ctx: &Ctx, key: K) -> bool {
        ctx.get(&self.raw_key(key)).is_some()
    }

    /// Stores `value` under `key`.
    pub fn save(&self, ctx: &mut Ctx, key: K, value: &V) -> Result<(), PluginError> {
        let raw = self.raw_key(key);
        ctx.set(&raw, &encode(value, &raw)?)?;
        Ok(())
    }

    /// Removes `key` (no error if absent).
    pub fn remove(&self, ctx: &mut Ctx, key: K) -> Result<(), PluginError> {
        ctx.delete(&self.raw_key(key))?;
        Ok(())
    }

    /// Loads the value under `key`, passes it to `f`, saves and returns what
    /// `f` returns. If `f` fails nothing is written.
    pub fn update(
        &self,
        ctx: &mut Ctx,
        key: K,
        f: impl FnOnce(Option<V>) -> Result<V, PluginError>,
    ) -> Result<V, PluginError> {
        let raw = self.raw_key(key);
        let old = ctx.get(&raw).map(|b| decode(&b, &raw)).transpose()?;
        let new = f(old)?;
        ctx.set(&raw, &encode(&new, &raw)?)?;
        Ok(new)
    }

    /// Iterates entries with `start <= key < end` in key order (`None`: no
    /// bound). Pages through the host lazily; each item is `Err` only if a
    /// stored key or value does not decode.
    pub fn iter<'c>(
        &self,
        ctx: &'c Ctx,
        start: Option<K>,
        end: Option<K>,
    ) -> impl Iterator<Item = Result<(K::Output, V), PluginError>> + 'c
    where
        K: 'c,
        V: 'c,
    {
        self.bounded(ctx, start, end, usize::MAX)
    }

    /// Collects up to `limit` entries with `start <= key < end` in key order.
    pub fn range(
        &self,
        ctx: &Ctx,
        start: Option<K>,
        end: Option<K>,
        limit: usize,
    ) -> Result<Vec<(K::Output, V)>, PluginError> {
        self.bounded(ctx, start, end, limit).collect()
    }

    /// Collects up to `limit` entries whose encoded key starts with the
    /// encoding of `prefix`, in key order. For string keys that is a string
    /// prefix: `prefix(ctx, "user/", 10)`.
    pub fn prefix(
        &self,
        ctx: &Ctx,
        prefix: K,
        limit: usize,
    ) -> Result<Vec<(K::Output, V)>, PluginError> {
        let start = self.raw_key(prefix);
        let end = successor(&start);
        self.decode_entries(ctx, start, Some(end), limit).collect()
    }

    fn bounded<'c>(
        &self,
        ctx: &'c Ctx,
        start: Option<K>,
        end: Option<K>,
        limit: usize,
    ) -> impl Iterator<Item = Result<(K::Output, V), PluginError>> + 'c
    where
        K: 'c,
        V: 'c,
    {
        let start = start.map_or_else(|| self.prefix_bytes(), |k| self.raw_key(k));
        let end = end.map_or_else(|| self.end_bytes(), |k| self.raw_key(k));
        self.decode_entries(ctx, start, Some(end), limit)
    }

    fn decode_entries<'c>(
        &self,
        ctx: &'c Ctx,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: usize,
    ) -> impl Iterator<Item = Result<(K::Output, V), PluginError>> + 'c
    where
        K: 'c,
        V: 'c,
    {
        let skip = self.namespace.len() + 1;
        ctx.entries(&start, end.as_deref(), limit)
            .map(move |(raw, value)| {
                let key = K::decode_key(&raw[skip..]).ok_or_else(|| {
                    PluginError::corrupt_state(format!(
                        "the key {} does not decode as {}",
                        show(&raw),
                        std::any::type_name::<K>()
                    ))
                })?;
                Ok((key, decode(&value, &raw)?))
            })
    }
}

/// The smallest byte string greater than every string starting with `prefix`.
/// Always exists here because map prefixes contain a 0x00 byte.
fn successor(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last != 0xFF {
            out.push(last + 1);
            return out;
        }
    }
    unreachable!("map prefixes always contain a non-0xFF byte")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_handles_ff() {
        assert_eq!(successor(b"a\0\xff\xff"), b"a\x01".to_vec());
        assert_eq!(successor(b"ab"), b"ac".to_vec());
    }
}
