//! Typed errors for every stage, and the one place that maps them to exit codes (DESIGN §5). An error
//! says what happened; what to type next (resume, restart, cancel, with the job's path) is added at the
//! command layer, in one place (`commands::hint`), from the error and the state it left.

use std::path::PathBuf;

use crate::holder::LockHolder;
use crate::job::JobError;

/// Exit codes, documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const AUTH: u8 = 3;
    pub const SERVER_REJECTED: u8 = 4;
    pub const SERVER_ERRORS: u8 = 5;
    pub const TEMPFAIL: u8 = 75;
    pub const SIGINT: u8 = 130;
    pub const SIGTERM: u8 = 143;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more problems in a job file, rendered like a compiler's.
    #[error("{0}")]
    Job(#[from] JobError),

    #[error("{0}")]
    Usage(String),

    /// The token endpoint refused the credentials (or the server answered 401/403 after a fresh token).
    #[error("authorization refused by {url}: {detail}")]
    AuthRefused { url: String, detail: String },

    /// The server rejected the kick-off or failed the export (an OperationOutcome, a 4xx, a status error).
    #[error("the server rejected the export: {0}")]
    ServerRejected(String),

    /// Retries used up on a transient fault, or a timeout: state is kept and a rerun resumes.
    #[error("{0}")]
    Transient(String),

    /// The server no longer has the export (its status URL, a manifest page or a file answered 404/410,
    /// or no fresh file links came when the old ones expired: restarted, expired, deleted). The state is
    /// cleared, and a new export replaces it (in the same run, once; else the next run). `reason` says
    /// why; `next` what happens now.
    #[error("the server no longer has this export ({reason}); {next}")]
    ExportGone { reason: String, next: String },

    /// Another process holds the job's lock.
    #[error("another oneup-bulk process holds this job ({0}); nothing was done")]
    Locked(LockHolder),

    /// A state file (`inflight.json`, `checkpoint.json`) that cannot be read: corrupt, cut short, or
    /// written by another version.
    #[error("{}: the job's state cannot be read ({detail})", path.display())]
    BadState { path: PathBuf, detail: String },

    #[error("interrupted ({}); the state is kept", match .0 { Signal::Interrupt => "Ctrl-C", Signal::Terminate => "SIGTERM" })]
    Interrupted(Signal),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Anything else that ends a run: a protocol violation, a malformed manifest.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The export is gone (see [`Error::ExportGone`]); the state is cleared by the caller.
    pub fn gone(reason: impl Into<String>) -> Self {
        Error::ExportGone {
            reason: reason.into(),
            next: "its state is cleared and the next run starts a new one".into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// The process exit code for this error (DESIGN §5).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Job(_) | Error::Usage(_) => exit::USAGE,
            Error::AuthRefused { .. } => exit::AUTH,
            Error::ServerRejected(_) => exit::SERVER_REJECTED,
            Error::Transient(_) | Error::Locked(_) | Error::ExportGone { .. } => exit::TEMPFAIL,
            Error::Interrupted(Signal::Interrupt) => exit::SIGINT,
            Error::Interrupted(Signal::Terminate) => exit::SIGTERM,
            Error::Io { .. } | Error::BadState { .. } | Error::Failed(_) => exit::FAILED,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
