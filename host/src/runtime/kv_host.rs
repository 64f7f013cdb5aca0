//! Host side of the `kv` interface: reads see the call's own writes, writes go
//! to a per-call overlay that is committed only when `apply` returns `Ok`.

use std::ops::Bound;

use super::bindings::kv::{Entry, Host, KvError};
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
        let upper = match &end {
            Some(e) => Bound::Excluded(e.clone()),
            None => Bound::Unbounded,
        };
        if let Some(e) = &end
            && e <= &start
        {
            return Vec::new();
        }
        let range = (Bound::Included(start), upper);
        // Merge the committed map with this call's overlay, both in key order;
        // the overlay wins on equal keys and its deletes hide committed keys.
        let mut base = self.base.range(range.clone()).peekable();
        let mut over = self.overlay.range(range).peekable();
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
                    out.push(Entry { key: k.clone(), value: v.clone() });
                }
            } else {
                let (k, v) = base.next().expect("peeked");
                out.push(Entry { key: k.clone(), value: v.clone() });
            }
        }
        out
    }
}
