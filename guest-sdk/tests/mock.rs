//! Tests of `MockHost`: it must mirror the real host (read-only queries, transactional applies, ordered and capped scans, deterministic context, limits).

use cairn_sdk::{Entry, KvError, MockHost, PluginError};
#[test]
fn query_ctx_is_read_only() {
    let mock = MockHost::new();
    mock.insert(b"a", b"1");
    let mut q = mock.query_ctx();
    assert_eq!(q.set(b"a", b"2"), Err(KvError::ReadOnly));
    assert_eq!(q.delete(b"a"), Err(KvError::ReadOnly));
    q.emit("t", b"x");
    assert_eq!(q.get(b"a").as_deref(), Some(&b"1"[..]));
    assert!(mock.events().is_empty());
    // `unguarded` does not bypass the host's check.
    assert_eq!(q.unguarded().set(b"a", b"3"), Err(KvError::ReadOnly));
}

#[test]
fn transaction_rolls_back_on_err_and_panic() {
    let mock = MockHost::new();
    mock.insert(b"keep", b"old");
    let r: Result<(), _> = mock.transaction(|ctx| {
        ctx.set(b"keep", b"new")?;
        ctx.set(b"fresh", b"x")?;
        ctx.delete(b"keep")?;
        ctx.emit("e", b"");
        Err(PluginError::new("nope", "rolled back"))
    });
    assert_eq!(r.unwrap_err().code, "nope");
    assert_eq!(mock.get(b"keep").as_deref(), Some(&b"old"[..]));
    assert_eq!(mock.get(b"fresh"), None);
    assert!(mock.events().is_empty());
    assert_eq!(mock.index(), 1);

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = mock.transaction(|ctx| -> Result<(), PluginError> {
            ctx.set(b"keep", b"boom")?;
            panic!("plugin panicked");
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(mock.get(b"keep").as_deref(), Some(&b"old"[..]));

    mock.transaction(|ctx| {
        ctx.set(b"keep", b"committed")?;
        ctx.emit("e", b"p");
        Ok(())
    })
    .unwrap();
    assert_eq!(mock.get(b"keep").as_deref(), Some(&b"committed"[..]));
    let events = mock.take_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].index, 3);
    assert!(mock.events().is_empty());
}

#[test]
fn scan_is_ordered_bounded_and_capped() {
    let mock = MockHost::new().with_scan_cap(2);
    for k in ["b", "a", "d", "c"] {
        mock.insert(k.as_bytes(), b"v");
    }
    let ctx = mock.ctx();
    let keys = |v: Vec<Entry>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(ctx.scan(b"a", None, 10)),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
    assert_eq!(keys(ctx.scan(b"b", Some(b"c"), 10)), vec![b"b".to_vec()]);
    assert!(ctx.scan(b"c", Some(b"a"), 10).is_empty());
    // `entries` pages through the cap.
    let all: Vec<_> = ctx.entries(b"", None, usize::MAX).map(|(k, _)| k).collect();
    assert_eq!(
        all,
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
    );
    let some: Vec<_> = ctx.entries(b"b", None, 3).map(|(k, _)| k).collect();
    assert_eq!(some, vec![b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]);
    assert_eq!(ctx.entries(b"", Some(b"c"), 1).count(), 1);
}

#[test]
fn context_is_deterministic_and_configurable() {
    let a = MockHost::new().with_seed(7).with_timestamp_ms(1_000);
    let b = MockHost::new().with_seed(7).with_timestamp_ms(1_000);
    let ra = a.transaction(|c| {
        Ok((
            c.index(),
            c.timestamp_ms(),
            c.random_bytes(13),
            c.random_u64(),
        ))
    });
    let rb = b.transaction(|c| {
        Ok((
            c.index(),
            c.timestamp_ms(),
            c.random_bytes(13),
            c.random_u64(),
        ))
    });
    assert_eq!(ra, rb);
    let (index, ts, bytes, _) = ra.unwrap();
    assert_eq!((index, ts, bytes.len()), (1, 1_000, 13));
    // A different index gives a different stream.
    let next = a.transaction(|c| Ok(c.random_bytes(13))).unwrap();
    assert_ne!(next, bytes);
}

#[test]
fn limits_are_enforced() {
    let mock = MockHost::new().with_limits(4, 2);
    let mut ctx = mock.ctx();
    assert_eq!(ctx.set(b"12345", b""), Err(KvError::KeyTooLarge));
    assert_eq!(ctx.set(b"k", b"123"), Err(KvError::ValueTooLarge));
    assert_eq!(ctx.set(b"k", b"12"), Ok(()));
}

#[test]
fn queries_see_the_clock_never_below_the_last_applied_stamp() {
    let mock = MockHost::new().with_timestamp_ms(1_000);
    let stamp = mock.transaction(|ctx| Ok(ctx.timestamp_ms())).unwrap();
    assert_eq!(stamp, 1_000);
    // The clock moves on: a query sees the later time without any write.
    mock.set_timestamp_ms(5_000);
    assert_eq!(mock.query_ctx().timestamp_ms(), 5_000);
    // A clock behind the last applied stamp: queries and applies see the stamp.
    mock.set_timestamp_ms(10);
    assert_eq!(mock.query_ctx().timestamp_ms(), 1_000);
    let stamp = mock.transaction(|ctx| Ok(ctx.timestamp_ms())).unwrap();
    assert_eq!(stamp, 1_000);
}
