//! What can go wrong: a refused component, the kinds of failed call, and
//! faults of the host itself.
//!
//! Anything that can end up in replicated state (a deploy's or a call's
//! recorded failure) carries a stable code and text we wrote ourselves, never
//! an engine's error text: that changes between wasmtime versions, and a node
//! running another version would record — and hash — something else
//! (DESIGN.md rule 8). Engine detail only goes to logs and to the client that
//! asked, before anything is proposed.

use wasmtime::{PoolConcurrencyLimitError, Trap};

use super::ErrorBody;

/// Why a component was refused at deploy time.
#[derive(Clone, Debug, thiserror::Error)]
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
    /// The component failed to parse or compile. Carries the engine's detail
    /// (for the uploader and the log; a record gets [`ValidateError::to_record`]).
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The component does not implement the `cairn:plugin/plugin` world.
    /// Carries the linker's detail, like `Invalid`.
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

    /// The failure as it may be stored in replicated state: the code and a
    /// message of our own. `Display` (with the engine's detail) is for the
    /// uploader, who gets it before the deploy is proposed.
    pub fn to_record(&self) -> ErrorBody {
        let message = match self {
            ValidateError::Invalid(_) => "the component failed to parse or compile".to_string(),
            ValidateError::WrongWorld(_) => {
                "the component does not implement the cairn:plugin world".to_string()
            }
            // Our own text, built from replicated limits only.
            other => other.to_string(),
        };
        ErrorBody::new(self.code(), message)
    }
}

/// A fault of this node, not of the plugin: the instance pool is exhausted,
/// the engine cannot be built, code that is in the state does not compile, a
/// thread cannot be started. Never recorded as a command's outcome (only the
/// node that hit it would record it, and the nodes would diverge — DESIGN.md
/// rule 9): an apply retries and then stops the node, a query answers `503`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("host fault: {0}")]
pub struct HostFault(pub String);

/// Why a call produced no output. Each kind is distinguishable by its code;
/// every message is our own text (plus, for a trap, the guest's own panic
/// message), so it is the same on every node and every wasmtime version.
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
    /// The call used up its fuel budget (in guest code or paying for host calls).
    #[error("out of fuel after {fuel} units")]
    OutOfFuel {
        /// The budget.
        fuel: u64,
    },
    /// The instance tried to grow memory beyond its cap.
    #[error("memory limit of {limit_bytes} bytes exceeded")]
    MemoryLimit {
        /// The cap the call ran under.
        limit_bytes: usize,
    },
    /// The guest trapped (panic, unreachable, stack overflow, …); the text is
    /// one of ours per trap kind, plus the guest's panic message if it printed one.
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// A `query` tried to write to the KV.
    #[error("query attempted to write to the key-value store")]
    WriteInQuery,
    /// The call handed more key + value bytes to `set`/`delete` than
    /// `max_write_bytes_per_call`.
    #[error("the call wrote more than {budget_bytes} bytes (max_write_bytes_per_call)")]
    WriteBudgetExceeded {
        /// The budget.
        budget_bytes: usize,
    },
    /// The call's scans returned more key + value bytes than
    /// `max_scan_bytes_per_call`.
    #[error("the call scanned more than {budget_bytes} bytes (max_scan_bytes_per_call)")]
    ScanBudgetExceeded {
        /// The budget.
        budget_bytes: usize,
    },
    /// The output exceeded `max_output_bytes`.
    #[error("output of {0} bytes exceeds the limit")]
    OutputTooLarge(usize),
    /// The host could not run the call (a [`HostFault`]); never a plugin outcome.
    #[error("host failure: {0}")]
    Host(String),
}

impl CallError {
    /// The stable error code, also used as the HTTP error code.
    pub fn code(&self) -> String {
        match self {
            CallError::Plugin { code, .. } => code.clone(),
            CallError::OutOfFuel { .. } => "out-of-fuel".into(),
            CallError::MemoryLimit { .. } => "memory-limit".into(),
            CallError::Trap(_) => "plugin-trap".into(),
            CallError::WriteInQuery => "write-in-query".into(),
            CallError::WriteBudgetExceeded { .. } => "write-budget-exceeded".into(),
            CallError::ScanBudgetExceeded { .. } => "scan-budget-exceeded".into(),
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

    /// The host fault behind this error, if it is one.
    pub fn host_fault(&self) -> Option<HostFault> {
        match self {
            CallError::Host(m) => Some(HostFault(m.clone())),
            _ => None,
        }
    }
}

/// How much guest stderr a trap message carries.
const MAX_TRAP_DETAIL_CHARS: usize = 512;

/// Whether `e` is the host's own failure to provide resources (a busy pool,
/// allocation failure, an OS error while setting up memory) rather than
/// anything the guest did. Only consulted for instantiation, before guest
/// code has run; a guest must never be able to provoke it deterministically,
/// or every node would stop at the same entry.
pub(super) fn is_resource_fault(e: &wasmtime::Error) -> bool {
    e.is::<PoolConcurrencyLimitError>()
        || e.is::<wasmtime::OutOfMemory>()
        || e.is::<std::io::Error>()
}

/// Our text for a trap kind; wasmtime's own wording is not ours to store.
fn trap_text(trap: Trap) -> &'static str {
    match trap {
        Trap::StackOverflow => "stack overflow",
        Trap::MemoryOutOfBounds => "out-of-bounds memory access",
        Trap::HeapMisaligned => "misaligned memory access",
        Trap::TableOutOfBounds => "out-of-bounds table access",
        Trap::IndirectCallToNull => "indirect call to a null table entry",
        Trap::BadSignature => "indirect call signature mismatch",
        Trap::IntegerOverflow => "integer overflow",
        Trap::IntegerDivisionByZero => "integer divide by zero",
        Trap::BadConversionToInteger => "invalid conversion to integer",
        Trap::UnreachableCodeReached => "unreachable executed",
        Trap::OutOfFuel => "out of fuel",
        Trap::NullReference => "null reference",
        Trap::ArrayOutOfBounds => "out-of-bounds array access",
        Trap::AllocationTooLarge => "allocation too large",
        Trap::CastFailure => "cast failure",
        Trap::CannotEnterComponent => "cannot re-enter the component",
        Trap::InvalidChar
        | Trap::StringOutOfBounds
        | Trap::ListOutOfBounds
        | Trap::InvalidDiscriminant
        | Trap::UnalignedPointer => "invalid value passed to the host",
        _ => "wasm trap",
    }
}

/// What the guest printed to stderr before it trapped: a Rust panic prints
/// "panicked at file:line:col:" and its message to stderr. Plugin-supplied,
/// deterministic, and the most useful thing to show.
fn guest_detail(log: &[u8]) -> String {
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("note: run with"))
        .collect();
    let start = lines
        .iter()
        .rposition(|l| l.contains("panicked at"))
        .unwrap_or(0);
    lines[start..]
        .join(" ")
        .chars()
        .take(MAX_TRAP_DETAIL_CHARS)
        .collect()
}

/// What the call ran under, for turning an engine error into an outcome.
pub(super) struct Failure<'a> {
    /// The call's fuel budget.
    pub fuel: u64,
    /// The call's memory cap.
    pub memory_limit_bytes: usize,
    /// The memory limiter refused a grow.
    pub memory_limit_hit: bool,
    /// The last bytes of guest stderr (a fixed amount, whatever the log cap).
    pub stderr_tail: &'a [u8],
}

/// Maps a wasmtime error from running guest code to its failure kind. The
/// memory flag is checked first because a refused grow surfaces as a plain
/// error, not a `Trap`. Budget overruns are decided by the caller (from the
/// flag the import set) before this.
pub(super) fn classify_trap(e: &wasmtime::Error, f: &Failure<'_>) -> CallError {
    if f.memory_limit_hit {
        return CallError::MemoryLimit {
            limit_bytes: f.memory_limit_bytes,
        };
    }
    let what = if let Some(trap) = e.downcast_ref::<Trap>() {
        if *trap == Trap::OutOfFuel {
            return CallError::OutOfFuel { fuel: f.fuel };
        }
        trap_text(*trap).to_string()
    } else if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        format!("the plugin exited with status {}", exit.0)
    } else {
        // A host import refused the guest's arguments (bad UTF-8, a list
        // outside memory, an oversized WASI request, …).
        "the plugin made an invalid host call".to_string()
    };
    let detail = guest_detail(f.stderr_tail);
    CallError::Trap(if detail.is_empty() {
        what
    } else {
        format!("{what}; guest stderr: {detail}")
    })
}
