//! What can go wrong: a refused component, and the kinds of failed call.

use wasmtime::Trap;

use super::ErrorBody;

/// Why a component was refused at deploy time.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The upload exceeds `max_plugin_bytes`.
    #[error("component is {size_bytes} bytes, the limit is {max_bytes} bytes")]
    TooLarge {
        /// Size of the upload.
        size_bytes: usize,
        /// The configured limit.
        max_bytes: usize,
    },
    /// The bytes do not start with the WebAssembly magic number.
    #[error("not a WebAssembly binary (missing the \\0asm header)")]
    NotWasm,
    /// A core module was uploaded; plugins must be components.
    #[error(
        "this is a core WebAssembly module, not a component; build with --target wasm32-wasip2"
    )]
    CoreModule,
    /// The component failed to parse or compile.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The component does not implement the `cairn:plugin/plugin` world.
    #[error("component does not match the cairn:plugin world: {0}")]
    WrongWorld(String),
    /// The node could not build its engine: a fault of this node, not of the component.
    #[error("runtime unavailable: {0}")]
    Host(String),
}

impl ValidateError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ValidateError::TooLarge { .. } => "plugin-too-large",
            ValidateError::NotWasm => "not-wasm",
            ValidateError::CoreModule => "not-a-component",
            ValidateError::Invalid(_) => "invalid-component",
            ValidateError::WrongWorld(_) => "wrong-world",
            ValidateError::Host(_) => "host-error",
        }
    }
}

/// Why a call produced no output. Each kind is distinguishable by its code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin returned `err(plugin-error)` on purpose.
    #[error("{code}: {message}")]
    Plugin {
        /// The plugin's code.
        code: String,
        /// The plugin's message.
        message: String,
    },
    /// The call used up its fuel budget.
    #[error("out of fuel after {fuel} units")]
    OutOfFuel {
        /// The budget.
        fuel: u64,
    },
    /// The instance tried to grow memory beyond its cap.
    #[error("memory limit exceeded: {0}")]
    MemoryLimit(String),
    /// The guest trapped (panic, unreachable, stack overflow, …).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// A `query` tried to write to the KV.
    #[error("query attempted to write to the key-value store")]
    WriteInQuery,
    /// The output exceeded `max_output_bytes`.
    #[error("output of {0} bytes exceeds the limit")]
    OutputTooLarge(usize),
    /// The host could not run the call (e.g. the pool is exhausted).
    #[error("host failure: {0}")]
    Host(String),
}

impl CallError {
    /// The stable error code, also used as the HTTP error code.
    pub fn code(&self) -> String {
        match self {
            CallError::Plugin { code, .. } => code.clone(),
            CallError::OutOfFuel { .. } => "out-of-fuel".into(),
            CallError::MemoryLimit(_) => "memory-limit".into(),
            CallError::Trap(_) => "plugin-trap".into(),
            CallError::WriteInQuery => "write-in-query".into(),
            CallError::OutputTooLarge(_) => "output-too-large".into(),
            CallError::Host(_) => "host-error".into(),
        }
    }

    /// The error as a wire body.
    pub fn to_body(&self) -> ErrorBody {
        match self {
            CallError::Plugin { code, message } => ErrorBody::new(code.clone(), message.clone()),
            other => ErrorBody::new(other.code(), other.to_string()),
        }
    }
}

/// How much guest stderr a trap message carries.
const MAX_TRAP_DETAIL_CHARS: usize = 512;

/// Maps a wasmtime error to its failure kind. The memory flag is checked first
/// because a refused grow surfaces as a plain error, not a `Trap`.
pub(super) fn classify_trap(
    e: wasmtime::Error,
    fuel: u64,
    memory_limit_hit: bool,
    log: &[u8],
) -> CallError {
    if memory_limit_hit {
        return CallError::MemoryLimit(format!("{:#}", e.root_cause()));
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        if *trap == Trap::OutOfFuel {
            return CallError::OutOfFuel { fuel };
        }
        // A Rust panic prints "panicked at file:line:col:" and then its message
        // to stderr before trapping; that is the most useful thing to show.
        let text = String::from_utf8_lossy(log);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("note: run with"))
            .collect();
        let start = lines
            .iter()
            .rposition(|l| l.contains("panicked at"))
            .unwrap_or(0);
        let detail: String = lines[start..]
            .join(" ")
            .chars()
            .take(MAX_TRAP_DETAIL_CHARS)
            .collect();
        let msg = if detail.is_empty() {
            trap.to_string()
        } else {
            format!("{trap}; guest stderr: {detail}")
        };
        return CallError::Trap(msg);
    }
    CallError::Trap(format!("{e:#}"))
}
