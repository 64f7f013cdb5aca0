//! Linearizability: a Porcupine-style checker for key-value register histories, its unit tests, and 3-node history checks across a stopped and a paused (SIGSTOP) leader.

pub mod checker;
mod checker_tests;
mod cluster_history;

/// A small deterministic PRNG (splitmix64) so client choices replay from a printed seed
/// without pulling a randomness crate into the workspace.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
