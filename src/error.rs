//! Typed errors for every stage, and the one place that maps them to exit codes (DESIGN §5).

use std::path::PathBuf;

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

    /// Another process holds the job's lock.
    #[error("{0}")]
    Locked(String),

    /// `run` names the jobs cut short and the commands that resume or cancel them.
    #[error("interrupted ({}); the state is kept: the same command resumes, `oneup-bulk cancel JOB.yaml` forgets the export", match .0 { Signal::Interrupt => "Ctrl-C", Signal::Terminate => "SIGTERM" })]
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
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// The process exit code for this error (DESIGN §5).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Job(_) | Error::Usage(_) => exit::USAGE,
            Error::AuthRefused { .. } => exit::AUTH,
            Error::ServerRejected(_) => exit::SERVER_REJECTED,
            Error::Transient(_) | Error::Locked(_) => exit::TEMPFAIL,
            Error::Interrupted(Signal::Interrupt) => exit::SIGINT,
            Error::Interrupted(Signal::Terminate) => exit::SIGTERM,
            Error::Io { .. } | Error::Failed(_) => exit::FAILED,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
