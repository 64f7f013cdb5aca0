//! Host side of the `kv` interface: reads see the call's own writes, writes go
//! to a per-call overlay that is committed only when `apply` returns `Ok`.

use std::ops::Bound;

use super::Kv;
use super::bindings::kv::{Entry, Host, KvError};
use super::store::Overlay;
use super::store::{CallMode, CallState};

impl CallState {
    fn check_write(&mut self, key: &[u8], value_len: usize) -> Result<(), KvError> {
        if self.mode == CallMode::Query {
            self.write_in_query = true;
            return Err(KvError::ReadOnly);
        }
        if key.len() > self.limits.max_key_bytes {
            return Err(KvError::KeyTooLarge);
        }
        if value_len > self.limits.max_value_bytes {
            return Err(KvError::ValueTooLarge);
        }
        Ok(())
    }
}

impl Host for CallState {
    fn get(&mut self, key: Vec<u8>) -> Option<Vec<u8>> {
        match self.overlay.get(&key) {
            Some(pending) => pending.clone(),
            None => self.base.get(&key).cloned(),
        }
    }

    fn set(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError> {
        self.check_write(&key, value.len())?;
        self.overlay.insert(key, Some(value));
        Ok(())
    }

    fn delete(&mut self, key: Vec<u8>) -> Result<(), KvError> {
        self.check_write(&key, 0)?;
        self.overlay.insert(key, None);
        Ok(())
    }

    fn scan(&mut self, start: Vec<u8>, end: Option<Vec<u8>>, limit: u32) -> Vec<Entry> {
        let limit = (limit as usize).min(self.limits.max_scan_entries);
        merged_range(&self.base, &self.overlay, start, end, limit)
            .into_iter()
            .map(|(key, value)| Entry { key, value })
            .collect()
    }
}

/// Entries with `start <= key < end` of `base` as modified by `overlay`, in key
/// order, at most `limit`. The overlay wins on equal keys and its deletes hide
/// committed keys.
pub(crate) fn merged_range(
    base: &Kv,
    overlay: &Overlay,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    if end.as_ref().is_some_and(|e| *e <= start) {
        return Vec::new();
    }
    let range = (
        Bound::Included(start),
        end.map_or(Bound::Unbounded, Bound::Excluded),
    );
    let mut base = base.range(range.clone()).peekable();
    let mut over = overlay.range(range).peekable();
    let mut out = Vec::with_capacity(limit.min(64));
    while out.len() < limit {
        let take_over = match (base.peek(), over.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((bk, _)), Some((ok, _))) => ok <= bk,
        };
        if take_over {
            let (k, v) = over.next().expect("peeked");
            if base.peek().is_some_and(|(bk, _)| *bk == k) {
                base.next();
            }
            if let Some(v) = v {
                out.push((k.clone(), v.clone()));
            }
        } else {
            let (k, v) = base.next().expect("peeked");
            out.push((k.clone(), v.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn scan_merges_overlay_in_key_order_and_honours_limit() {
        let base: Kv = [("a", "1"), ("c", "3"), ("e", "5"), ("g", "7")]
            .iter()
            .map(|(k, v)| (b(k), b(v)))
            .collect();
        let mut overlay = Overlay::new();
        overlay.insert(b("b"), Some(b("2")));
        overlay.insert(b("c"), Some(b("33")));
        overlay.insert(b("e"), None);
        let all = merged_range(&base, &overlay, Vec::new(), None, 100);
        let keys: Vec<_> = all
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                )
            })
            .collect();
        assert_eq!(keys, ["a=1", "b=2", "c=33", "g=7"]);
        assert_eq!(merged_range(&base, &overlay, Vec::new(), None, 2).len(), 2);
        let mid = merged_range(&base, &overlay, b("b"), Some(b("g")), 100);
        assert_eq!(
            mid.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            [b("b"), b("c")]
        );
        assert!(merged_range(&base, &overlay, b("g"), Some(b("a")), 100).is_empty());
    }
}
