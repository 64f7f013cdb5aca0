//! Tests of the typed storage helpers `Item` and `Map` against `MockHost`: layout, isolation, ordering, paging and errors.

use cairn_sdk::{Item, Map, MockHost, PluginError};
const COUNT: Item<u64> = Item::new("count");
const NAMES: Map<&str, String> = Map::new("names");
const BY_ID: Map<u64, u32> = Map::new("ids");
const SIGNED: Map<i64, ()> = Map::new("signed");
const OTHER: Map<&str, String> = Map::new("namesX");

#[test]
fn item_roundtrip_update_remove() {
    let mock = MockHost::new();
    let mut ctx = mock.ctx();
    assert_eq!(COUNT.load(&ctx).unwrap(), None);
    assert_eq!(COUNT.load_or_default(&ctx).unwrap(), 0);
    assert!(!COUNT.exists(&ctx));
    COUNT.save(&mut ctx, &3).unwrap();
    assert_eq!(mock.get(b"count").as_deref(), Some(&b"3"[..]));
    let v = COUNT.update(&mut ctx, |v| Ok(v.unwrap_or(0) + 2)).unwrap();
    assert_eq!(v, 5);
    let err = COUNT
        .update(&mut ctx, |_| Err(PluginError::new("x", "y")))
        .unwrap_err();
    assert_eq!(err.code, "x");
    assert_eq!(COUNT.load(&ctx).unwrap(), Some(5));
    COUNT.remove(&mut ctx).unwrap();
    assert!(!COUNT.exists(&ctx));
}

#[test]
fn corrupt_values_are_reported() {
    let mock = MockHost::new();
    mock.insert(b"count", b"not json");
    let err = COUNT.load(&mock.ctx()).unwrap_err();
    assert_eq!(err.code, PluginError::CORRUPT_STATE);
    assert!(err.message.contains("\"count\""), "{}", err.message);
}

#[test]
fn map_layout_and_isolation() {
    let mock = MockHost::new();
    let mut ctx = mock.ctx();
    NAMES.save(&mut ctx, "a", &"1".into()).unwrap();
    OTHER.save(&mut ctx, "a", &"2".into()).unwrap();
    assert_eq!(mock.get(b"names\0a").as_deref(), Some(&b"\"1\""[..]));
    assert_eq!(NAMES.range(&ctx, None, None, 100).unwrap().len(), 1);
    assert_eq!(OTHER.range(&ctx, None, None, 100).unwrap().len(), 1);
    assert!(NAMES.has(&ctx, "a"));
    NAMES.remove(&mut ctx, "a").unwrap();
    assert!(!NAMES.has(&ctx, "a"));
    assert_eq!(OTHER.load(&ctx, "a").unwrap().as_deref(), Some("2"));
}

#[test]
fn string_range_prefix_and_limits_page_through_a_capped_host() {
    let mock = MockHost::new().with_scan_cap(3);
    let mut ctx = mock.ctx();
    for k in ["user/3", "user/1", "user/2", "admin", "userz", "user/10"] {
        NAMES.save(&mut ctx, k, &k.to_uppercase()).unwrap();
    }
    let keys = |v: Vec<(String, String)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(NAMES.prefix(&ctx, "user/", 100).unwrap()),
        ["user/1", "user/10", "user/2", "user/3"]
    );
    assert_eq!(
        keys(NAMES.prefix(&ctx, "user/", 2).unwrap()),
        ["user/1", "user/10"]
    );
    assert_eq!(
        keys(NAMES.range(&ctx, Some("b"), Some("user/2"), 100).unwrap()),
        ["user/1", "user/10"]
    );
    assert_eq!(
        keys(NAMES.range(&ctx, Some("user/3"), None, 100).unwrap()).len(),
        2
    );
    assert_eq!(NAMES.iter(&ctx, None, None).count(), 6);
    let first = NAMES.iter(&ctx, None, None).next().unwrap().unwrap();
    assert_eq!(first, ("admin".to_string(), "ADMIN".to_string()));
}

#[test]
fn integer_keys_iterate_numerically() {
    let mock = MockHost::new();
    let mut ctx = mock.ctx();
    for id in [300u64, 2, 1 << 40, 10] {
        BY_ID.save(&mut ctx, id, &(id as u32)).unwrap();
    }
    let ids: Vec<u64> = BY_ID
        .range(&ctx, None, None, 10)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(ids, [2, 10, 300, 1 << 40]);
    assert_eq!(BY_ID.range(&ctx, Some(10), Some(301), 10).unwrap().len(), 2);
    for n in [5i64, -1, i64::MIN, 0, i64::MAX] {
        SIGNED.save(&mut ctx, n, &()).unwrap();
    }
    let ns: Vec<i64> = SIGNED
        .iter(&ctx, None, None)
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(ns, [i64::MIN, -1, 0, 5, i64::MAX]);
}

#[test]
fn writes_through_helpers_fail_in_query() {
    let mock = MockHost::new();
    let mut q = mock.query_ctx().unguarded();
    let err = COUNT.save(&mut q, &1).unwrap_err();
    assert_eq!(err.code, PluginError::READ_ONLY);
}
