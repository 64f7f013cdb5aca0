//! Host side of the `kv` interface: reads see the call's own writes, writes go
//! to a per-call overlay that is committed only when `apply` returns `Ok`.
//!
//! Linked by hand rather than through the generated `Host` trait, because each
//! import needs the store to charge fuel (see `metering`). Arguments arrive as
//! `WasmList`s — views into guest memory — so sizes are checked and paid for
//! before anything is copied.

use std::ops::Bound;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList};

use super::Kv;
use super::bindings::kv::{Entry, KvError};
use super::metering::{allowance, charge, charge_bytes, exceeded, out_of_fuel};
use super::store::{Budget, CallMode, CallState, Overlay};

type Ctx<'a> = StoreContextMut<'a, CallState>;

impl CallState {
    /// The value `key` has as seen by this call (its own writes first).
    fn lookup(&self, key: &[u8]) -> Option<&[u8]> {
        match self.overlay.get(key) {
            Some(pending) => pending.as_deref(),
            None => self.base.get(key).map(|v| &**v),
        }
    }

    /// Decides whether a write of this size may happen: `Ok(Err)` is a refusal
    /// the guest sees; `Err` ends the call (the write budget is spent).
    fn admit_write(
        &mut self,
        key_len: usize,
        value_len: usize,
    ) -> wasmtime::Result<Result<(), KvError>> {
        if self.mode == CallMode::Query {
            self.write_in_query = true;
            return Ok(Err(KvError::ReadOnly));
        }
        if key_len > self.limits.max_key_bytes {
            return Ok(Err(KvError::KeyTooLarge));
        }
        if value_len > self.limits.max_value_bytes {
            return Ok(Err(KvError::ValueTooLarge));
        }
        let total = self.write_bytes + key_len + value_len;
        if total > self.limits.max_write_bytes_per_call {
            return exceeded(self, Budget::Write);
        }
        self.write_bytes = total;
        Ok(Ok(()))
    }
}

/// Why a scan stopped gathering before its limit.
enum Cut {
    Budget,
    Fuel,
}

/// Links `cairn:plugin/kv` into `linker`.
///
/// `version` is the package version to link it under (the host links every
/// version it runs; the functions are the same in each).
pub(super) fn add_to_linker(linker: &mut Linker<CallState>, version: &str) -> wasmtime::Result<()> {
    let mut kv = linker.instance(&format!("cairn:plugin/kv@{version}"))?;
    kv.func_wrap("get", |mut store: Ctx<'_>, (key,): (WasmList<u8>,)| {
        charge(&mut store, key.len())?;
        // One lookup with the key read in place from guest memory: the value
        // is copied only if the fuel left pays for it, then paid for.
        let fuel = allowance(&store)?;
        let found = {
            let key = key.as_le_slice(&store);
            match store.data().lookup(key) {
                Some(value) if !fuel.affords(value.len()) => None,
                found => Some(found.map(<[u8]>::to_vec)),
            }
        };
        let Some(value) = found else {
            return out_of_fuel(&mut store).map(|()| (None,));
        };
        charge_bytes(&mut store, value.as_ref().map_or(0, Vec::len))?;
        Ok((value,))
    })?;
    kv.func_wrap(
        "set",
        |mut store: Ctx<'_>, (key, value): (WasmList<u8>, WasmList<u8>)| {
            charge(&mut store, key.len() + value.len())?;
            if let Err(refused) = store.data_mut().admit_write(key.len(), value.len())? {
                return Ok((Err(refused),));
            }
            let key = key.as_le_slice(&store).to_vec();
            let value = value.as_le_slice(&store).to_vec();
            store.data_mut().overlay.insert(key, Some(value));
            Ok((Ok(()),))
        },
    )?;
    kv.func_wrap("delete", |mut store: Ctx<'_>, (key,): (WasmList<u8>,)| {
        charge(&mut store, key.len())?;
        if let Err(refused) = store.data_mut().admit_write(key.len(), 0)? {
            return Ok((Err(refused),));
        }
        let key = key.as_le_slice(&store).to_vec();
        store.data_mut().overlay.insert(key, None);
        Ok((Ok(()),))
    })?;
    kv.func_wrap(
        "scan",
        |mut store: Ctx<'_>, (start, end, limit): (WasmList<u8>, Option<WasmList<u8>>, u32)| {
            charge(
                &mut store,
                start.len() + end.as_ref().map_or(0, WasmList::len),
            )?;
            let start = start.as_le_slice(&store).to_vec();
            let end = end.map(|e| e.as_le_slice(&store).to_vec());
            let fuel = allowance(&store)?;
            let state = store.data_mut();
            let limit = (limit as usize).min(state.limits.max_scan_entries);
            let room = state
                .limits
                .max_scan_bytes_per_call
                .saturating_sub(state.scan_bytes);
            // Gather only what the budget and the fuel allow: a scan over huge
            // values stops at the first entry that does not fit.
            let (mut entries, mut bytes, mut cut) = (Vec::new(), 0usize, None);
            merged_range(
                &state.base,
                &state.overlay,
                &start,
                end.as_deref(),
                limit,
                |k, v| {
                    let next = bytes + k.len() + v.len();
                    cut = if next > room {
                        Some(Cut::Budget)
                    } else if !fuel.affords(next) {
                        Some(Cut::Fuel)
                    } else {
                        None
                    };
                    if cut.is_none() {
                        bytes = next;
                        entries.push(Entry {
                            key: k.to_vec(),
                            value: v.to_vec(),
                        });
                    }
                    cut.is_none()
                },
            );
            state.scan_bytes += bytes;
            match cut {
                Some(Cut::Budget) => exceeded(state, Budget::Scan),
                Some(Cut::Fuel) => out_of_fuel(&mut store).map(|()| (Vec::new(),)),
                None => {
                    charge_bytes(&mut store, bytes)?;
                    Ok((entries,))
                }
            }
        },
    )?;
    Ok(())
}

/// Visits entries with `start <= key < end` of `base` as modified by
/// `overlay`, in key order, at most `limit`, until `visit` returns `false`.
/// The overlay wins on equal keys and its deletes hide committed keys. Nothing
/// is collected here, so the caller decides how much it may gather.
pub(crate) fn merged_range(
    base: &Kv,
    overlay: &Overlay,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
    mut visit: impl FnMut(&[u8], &[u8]) -> bool,
) {
    if end.is_some_and(|e| e <= start) {
        return;
    }
    let range = (
        Bound::Included(start),
        end.map_or(Bound::Unbounded, Bound::Excluded),
    );
    let mut base = base.range::<_, [u8]>(range).peekable();
    let mut over = overlay.range::<[u8], _>(range).peekable();
    let mut visited = 0;
    while visited < limit {
        let take_over = match (base.peek(), over.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((bk, _)), Some((ok, _))) => ok.as_slice() <= bk.as_slice(),
        };
        let (k, v) = if take_over {
            let (k, v) = over.next().expect("peeked");
            if base
                .peek()
                .is_some_and(|(bk, _)| bk.as_slice() == k.as_slice())
            {
                base.next();
            }
            match v {
                Some(v) => (k.as_slice(), v.as_slice()),
                None => continue,
            }
        } else {
            let (k, v) = base.next().expect("peeked");
            (k.as_slice(), &**v)
        };
        visited += 1;
        if !visit(k, v) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn collect(
        base: &Kv,
        overlay: &Overlay,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: usize,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        merged_range(base, overlay, &start, end.as_deref(), limit, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        });
        out
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
        let all = collect(&base, &overlay, Vec::new(), None, 100);
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
        assert_eq!(collect(&base, &overlay, Vec::new(), None, 2).len(), 2);
        let mid = collect(&base, &overlay, b("b"), Some(b("g")), 100);
        assert_eq!(
            mid.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            [b("b"), b("c")]
        );
        assert!(collect(&base, &overlay, b("g"), Some(b("a")), 100).is_empty());
    }

    #[test]
    fn scan_visits_nothing_after_the_visitor_stops() {
        let base: Kv = (0..100u8).map(|i| (vec![i], vec![i])).collect();
        let mut seen = Vec::new();
        merged_range(&base, &Overlay::new(), &[], None, 100, |k, _| {
            seen.push(k[0]);
            seen.len() < 3
        });
        assert_eq!(seen, [0, 1, 2]);
    }
}
