//! bincode decoding whose allocations are bounded by the size of the input.
//!
//! bincode 2 reserves a string's announced length before it reads the bytes, and
//! checks that length only against a compile-time limit. Without a limit a few
//! bytes announcing 2^40 make the allocation fail, and a failed allocation aborts
//! the process. A valid encoding claims at most [`CLAIM_PER_BYTE`] bytes of that
//! limit per input byte (bincode claims a value's in-memory size, and a one-byte
//! varint can decode into a 16-byte integer), so decoding under the smallest
//! limit class above that never refuses valid input, and caps what a forged
//! length can reserve at a small multiple of the bytes actually received.

use bincode::error::DecodeError;
use serde::de::DeserializeOwned;

/// Most limit bytes a valid encoding claims per input byte.
const CLAIM_PER_BYTE: usize = 16;
/// Limit headroom for tiny inputs.
const MIN_CLAIM_BYTES: usize = 1024;

/// `bincode::serde::decode_from_slice` with the standard configuration and a limit
/// proportional to `bytes.len()`; returns the value and the bytes it used.
pub(crate) fn decode_from_slice<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(T, usize), DecodeError> {
    let need = bytes
        .len()
        .saturating_mul(CLAIM_PER_BYTE)
        .saturating_add(MIN_CLAIM_BYTES);
    // The limit is a const generic: pick the first class (powers of 16) that fits.
    macro_rules! first_class_above_need {
        ($($limit:expr),*) => {
            $(
                if need <= $limit {
                    let config = bincode::config::standard().with_limit::<{ $limit }>();
                    return bincode::serde::decode_from_slice(bytes, config);
                }
            )*
        };
    }
    first_class_above_need!(
        1 << 16,
        1 << 20,
        1 << 24,
        1 << 28,
        1 << 32,
        1 << 36,
        1 << 40
    );
    // Over 64 GiB of input: it is all in memory already, so its lengths are not
    // worth policing.
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_input_of_every_class_decodes() {
        // Small values claim far more (8 bytes per u64) than they take (1 byte).
        for n in [0usize, 10, 100_000, 3_000_000] {
            let v: Vec<u64> = vec![1; n];
            let bytes = bincode::serde::encode_to_vec(&v, bincode::config::standard()).unwrap();
            let (back, used): (Vec<u64>, usize) = decode_from_slice(&bytes).unwrap();
            assert_eq!((back.len(), used), (n, bytes.len()));
        }
    }

    #[test]
    fn a_length_the_input_cannot_back_is_refused() {
        for len in [1u64 << 20, 4 << 30, 1 << 40, u64::MAX] {
            let mut bytes = vec![253];
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(b"short");
            assert!(matches!(
                decode_from_slice::<String>(&bytes),
                Err(DecodeError::LimitExceeded)
            ));
        }
    }
}
