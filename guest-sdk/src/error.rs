//! Errors a plugin reports to its caller (`PluginError`) and errors the host KV store reports to the plugin (`KvError`).

use std::fmt;

/// A failure a plugin reports on purpose.
///
/// The host records it (the same on every node), discards every KV write of the
/// call and returns it to the client. `code` is stable and machine-readable
/// (kebab-case by convention, e.g. `insufficient-funds`); `message` is for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// Stable, machine-readable code, e.g. `insufficient-funds`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl PluginError {
    /// Code for input that is not valid JSON for the plugin's command or query type.
    pub const BAD_INPUT: &'static str = "bad-input";
    /// Code for an output the SDK could not encode as JSON.
    pub const BAD_OUTPUT: &'static str = "bad-output";
    /// Code for a stored value that no longer decodes as the expected type.
    pub const CORRUPT_STATE: &'static str = "corrupt-state";
    /// Code for a write attempted during `query`.
    pub const READ_ONLY: &'static str = "read-only";
    /// Code for a key longer than the host allows.
    pub const KEY_TOO_LARGE: &'static str = "key-too-large";
    /// Code for a value larger than the host allows.
    pub const VALUE_TOO_LARGE: &'static str = "value-too-large";

    /// An error with any `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// A [`PluginError::BAD_INPUT`] error: the caller sent something the plugin cannot use.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(Self::BAD_INPUT, message)
    }

    /// A [`PluginError::CORRUPT_STATE`] error: stored bytes do not decode.
    pub fn corrupt_state(message: impl Into<String>) -> Self {
        Self::new(Self::CORRUPT_STATE, message)
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<KvError> for PluginError {
    /// A refused KV write becomes a plugin error with the same kebab-case code,
    /// so `?` on a write does the right thing in `apply`.
    fn from(e: KvError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// Why the host refused a KV write (mirrors `kv-error` in the WIT contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvError {
    /// A write was attempted during `query`, which must not mutate state.
    ReadOnly,
    /// The key is longer than the host's limit.
    KeyTooLarge,
    /// The value is larger than the host's limit.
    ValueTooLarge,
}

impl KvError {
    /// The stable kebab-case code, as used in [`PluginError::code`].
    pub fn code(self) -> &'static str {
        match self {
            KvError::ReadOnly => PluginError::READ_ONLY,
            KvError::KeyTooLarge => PluginError::KEY_TOO_LARGE,
            KvError::ValueTooLarge => PluginError::VALUE_TOO_LARGE,
        }
    }
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KvError::ReadOnly => "write refused: the store is read-only during query",
            KvError::KeyTooLarge => "write refused: key exceeds the host's size limit",
            KvError::ValueTooLarge => "write refused: value exceeds the host's size limit",
        })
    }
}

impl std::error::Error for KvError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_codes() {
        let e = PluginError::bad_input("nope");
        assert_eq!(e.to_string(), "bad-input: nope");
        assert_eq!(e.code(), "bad-input");
        assert_eq!(e.message(), "nope");
        let k: PluginError = KvError::ReadOnly.into();
        assert_eq!(k.code, "read-only");
        assert_eq!(KvError::KeyTooLarge.code(), "key-too-large");
        assert_eq!(KvError::ValueTooLarge.code(), "value-too-large");
    }
}
