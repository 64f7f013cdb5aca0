//! `Key`: how `Map` keys are encoded so that bytewise order is the natural order (strings lexicographic, integers numeric).

/// A type usable as a [`Map`](crate::Map) key. Its encoding must sort (bytewise) in the
/// order the keys should iterate in.
pub trait Key {
    /// What iteration yields for this key (owned, e.g. `String` for `&str`).
    type Output;

    /// Appends the encoded key to `out`.
    fn encode_key(&self, out: &mut Vec<u8>);

    /// Decodes a key written by [`Key::encode_key`]; `None` if malformed.
    fn decode_key(bytes: &[u8]) -> Option<Self::Output>;
}

impl Key for &str {
    type Output = String;
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode_key(bytes: &[u8]) -> Option<String> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl Key for String {
    type Output = String;
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.as_str().encode_key(out);
    }
    fn decode_key(bytes: &[u8]) -> Option<String> {
        <&str>::decode_key(bytes)
    }
}

impl Key for &[u8] {
    type Output = Vec<u8>;
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode_key(bytes: &[u8]) -> Option<Vec<u8>> {
        Some(bytes.to_vec())
    }
}

impl Key for Vec<u8> {
    type Output = Vec<u8>;
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode_key(bytes: &[u8]) -> Option<Vec<u8>> {
        Some(bytes.to_vec())
    }
}

/// Unsigned integers encode big-endian, so byte order is numeric order.
macro_rules! unsigned_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            type Output = $t;
            fn encode_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode_key(bytes: &[u8]) -> Option<$t> {
                Some(<$t>::from_be_bytes(bytes.try_into().ok()?))
            }
        }
    )*};
}
unsigned_key!(u8, u16, u32, u64, u128);

/// Signed integers flip the sign bit before encoding big-endian, so negative
/// numbers sort before positive ones.
macro_rules! signed_key {
    ($($t:ty => $u:ty),*) => {$(
        impl Key for $t {
            type Output = $t;
            fn encode_key(&self, out: &mut Vec<u8>) {
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
            fn decode_key(bytes: &[u8]) -> Option<$t> {
                let flipped = <$u>::from_be_bytes(bytes.try_into().ok()?);
                Some((flipped ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}
signed_key!(i32 => u32, i64 => u64);
