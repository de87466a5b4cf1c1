//! A local FHIR Bulk Data server with synthetic data: `oneup-bulk sandbox`, `oneup-bulk demo`, the
//! integration tests (in-process on port 0) and the benchmarks all talk to it.
//!
//! It speaks SMART Backend Services token issue (client secret post/basic, a hook for JWT assertions),
//! Bulk Data kick-off / status / manifest / files (Range, gzip), Da Vinci PDex `$davinci-data-export` and
//! `$bulk-member-match`, and it can misbehave on request through [`Faults`]. Every request is recorded so
//! tests can assert what a client sent. URL layout (`PORT` = [`Sandbox::fhir_base`]'s port):
//!
//! ```text
//! POST   /auth/token                                 client_credentials
//! GET    /fhir/.well-known/smart-configuration       GET /fhir/metadata
//! GET|POST /fhir/$export   /fhir/Patient/$export   /fhir/Group/{id}/$export
//! POST   /fhir/Group/{id}/$davinci-data-export       POST /fhir/Group/$bulk-member-match
//! GET    /fhir/Group/{id}
//! GET|DELETE /fhir/$export-status/{job}
//! GET    /files/{job}/{file}.ndjson                  (and on the storage listener, after a 307)
//! ```

mod auth;
mod data;
mod export;
mod faults;
mod fhir;
mod files;
mod jobs;
mod member_match;
#[cfg(test)]
mod perf;
mod resources;
mod routes;
mod tables;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_http;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

pub use auth::ClientAssertion;
pub use data::{DataSpec, Demographics, ResourceType, Selection, TypeData};
pub use export::{ExportLevel, ExportParams, KickoffRecord};
pub use faults::{BadLine, FaultHandle, Faults, FileCut};

/// Decides whether a `client_assertion` (private_key_jwt) is accepted. Signatures are not verified yet.
pub type AssertionHook = Arc<dyn Fn(&ClientAssertion) -> bool + Send + Sync>;

/// How status polls (and 429/503 answers) say when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfterStyle {
    /// `Retry-After: N`
    Seconds(u64),
    /// `Retry-After: <HTTP-date N seconds from now>`
    HttpDate(u64),
    /// No `Retry-After` header.
    None,
}

#[derive(Clone)]
pub struct SandboxConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Lifetime of issued tokens; tests use 1–2 s to force renewal.
    pub token_ttl: Duration,
    /// `scope` granted when the token request names none.
    pub default_scope: String,
    /// About `10 * data_scale` patients, ~9 KB of NDJSON each.
    pub data_scale: u32,
    /// More than 1 splits each type into that many files (`Patient.1.ndjson`, …).
    pub files_per_type: u32,
    /// How many 202s the status endpoint answers before the manifest.
    pub polls_before_ready: u32,
    pub retry_after: RetryAfterStyle,
    /// Initial fault switches; change them while running through [`Sandbox::faults`].
    pub faults: Faults,
    /// The manifest's `requiresAccessToken`, and whether file downloads need a bearer token.
    pub requires_access_token: bool,
    /// Serve files gzip-encoded when the client's `Accept-Encoding` allows it.
    pub gzip: bool,
    /// Honour `Range: bytes=…` with 206 and advertise `Accept-Ranges: bytes`.
    pub accept_ranges: bool,
    /// The synthetic data's `meta.lastUpdated` falls in the year before this instant (unix seconds).
    /// `None`: midnight UTC today, so the data look recent and stay the same all day.
    pub data_anchor: Option<i64>,
    /// Accepts or refuses `client_assertion` token requests; `None` refuses them all.
    pub client_assertion_hook: Option<AssertionHook>,
    /// An open server: FHIR requests and files need no token (for `auth.method: none`).
    pub open: bool,
    /// Split the manifest into pages of this many output files, linked with `link` next.
    pub manifest_page_size: Option<usize>,
    /// List an `error[]` file (OperationOutcomes for resources that could not be exported), as real
    /// servers often do. On by default.
    pub error_file: bool,
    /// Serve `/.well-known/smart-configuration` (off: discovery must fall back to the
    /// CapabilityStatement's `oauth-uris` extension, like older servers).
    pub smart_configuration: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            client_id: "demo-client".into(),
            client_secret: "demo-secret-not-real".into(),
            token_ttl: Duration::from_secs(3_600),
            default_scope: "system/*.read".into(),
            data_scale: 1,
            files_per_type: 1,
            polls_before_ready: 2,
            retry_after: RetryAfterStyle::Seconds(1),
            faults: Faults::default(),
            requires_access_token: true,
            gzip: false,
            accept_ranges: true,
            data_anchor: None,
            client_assertion_hook: None,
            open: false,
            manifest_page_size: None,
            error_file: true,
            smart_configuration: true,
        }
    }
}

impl fmt::Debug for SandboxConfig {
    // By hand: the secret stays out of logs and the hook has no Debug.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("token_ttl", &self.token_ttl)
            .field("data_scale", &self.data_scale)
            .field("files_per_type", &self.files_per_type)
            .field("polls_before_ready", &self.polls_before_ready)
            .field("retry_after", &self.retry_after)
            .field("faults", &self.faults)
            .field("requires_access_token", &self.requires_access_token)
            .field("gzip", &self.gzip)
            .field("accept_ranges", &self.accept_ranges)
            .field("data_anchor", &self.data_anchor)
            .field("open", &self.open)
            .field("client_assertion_hook", &self.client_assertion_hook.is_some())
            .finish()
    }
}

/// Which of the two listeners saw a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The FHIR server's origin: auth, FHIR API, files.
    Main,
    /// Another origin that stands in for signed-URL object storage.
    Storage,
}

/// One request as the sandbox saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub listener: Listener,
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Header names in lower case, values lossily decoded.
    pub headers: Vec<(String, String)>,
    /// The first 64 KiB of the body.
    pub body: bytes::Bytes,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }
}

/// State shared by both listeners' handlers.
pub(crate) struct Shared {
    cfg: SandboxConfig,
    faults: FaultHandle,
    spec: DataSpec,
    main_base: Url,
    storage_base: Url,
    tokens: Mutex<HashMap<String, Instant>>,
    jobs: Mutex<HashMap<String, jobs::Job>>,
    /// Birth date → patient indices, built on the first `$bulk-member-match`.
    members_by_birth_date: std::sync::OnceLock<HashMap<String, Vec<u32>>>,
    /// Groups made by `$bulk-member-match`: id → patient indices.
    groups: Mutex<HashMap<String, Vec<u32>>>,
    requests: Mutex<Vec<RecordedRequest>>,
    kickoffs: Mutex<Vec<KickoffRecord>>,
    cache: jobs::Cache,
    seq: AtomicU64,
}

/// Lock a mutex even if a panicking thread poisoned it: the sandbox must keep answering.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running sandbox. Dropping it leaves the server running until the runtime ends; call
/// [`Sandbox::shutdown`] to stop it.
pub struct Sandbox {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sandbox {
    /// Serve on `127.0.0.1:0` (a free port), plus a storage listener on another free port.
    pub async fn start(cfg: SandboxConfig) -> std::io::Result<Sandbox> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).await
    }

    /// Serve on `addr`; the storage listener takes a free port on the same address.
    pub async fn start_on(addr: SocketAddr, cfg: SandboxConfig) -> std::io::Result<Sandbox> {
        let main = TcpListener::bind(addr).await?;
        let storage = TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?;
        let base = |l: &TcpListener| -> std::io::Result<Url> {
            let a = l.local_addr()?;
            let host = if a.ip().is_unspecified() { "127.0.0.1".to_string() } else { a.ip().to_string() };
            let host = if a.is_ipv6() && host != "127.0.0.1" { format!("[{host}]") } else { host };
            Url::parse(&format!("http://{host}:{}/", a.port())).map_err(|e| std::io::Error::other(e.to_string()))
        };
        let faults = cfg.faults.clone();
        let anchor = cfg.data_anchor.unwrap_or_else(|| {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            now - now.rem_euclid(86_400)
        });
        let shared = Arc::new(Shared {
            spec: DataSpec { scale: cfg.data_scale.max(1), anchor },
            faults: FaultHandle::new(faults),
            main_base: base(&main)?,
            storage_base: base(&storage)?,
            cfg,
            tokens: Mutex::default(),
            jobs: Mutex::default(),
            groups: Mutex::default(),
            members_by_birth_date: std::sync::OnceLock::new(),
            requests: Mutex::default(),
            kickoffs: Mutex::default(),
            cache: jobs::Cache::default(),
            seq: AtomicU64::new(1),
        });
        let (stop, stopped) = watch::channel(false);
        let tasks = [(main, Listener::Main), (storage, Listener::Storage)]
            .into_iter()
            .map(|(l, which)| {
                let app = routes::router(shared.clone(), which);
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let shutdown = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    // Errors here are accept errors on a loopback socket; nothing useful to do with them.
                    let _ = axum::serve(l, app).with_graceful_shutdown(shutdown).await;
                })
            })
            .collect();
        Ok(Sandbox { shared, stop, tasks })
    }

    /// `http://127.0.0.1:PORT/fhir/` (with the trailing slash, so relative joins work).
    pub fn fhir_base(&self) -> Url {
        self.shared.main_base.join("fhir/").expect("static path")
    }

    pub fn token_url(&self) -> Url {
        self.shared.main_base.join("auth/token").expect("static path")
    }

    /// The storage listener's origin (`http://127.0.0.1:PORT2/`).
    pub fn storage_base(&self) -> Url {
        self.shared.storage_base.clone()
    }

    /// Every request seen so far, in arrival order, on both listeners.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Kick-offs the sandbox accepted (answered 202), in order, with their parsed parameters.
    pub fn kickoffs(&self) -> Vec<KickoffRecord> {
        lock(&self.shared.kickoffs).clone()
    }

    /// How many kick-offs were accepted; refused ones (429, faults, bad requests) do not count.
    pub fn kickoff_count(&self) -> usize {
        lock(&self.shared.kickoffs).len()
    }

    /// The live fault switches.
    pub fn faults(&self) -> &FaultHandle {
        &self.shared.faults
    }

    /// The synthetic population this sandbox serves (to compute expected counts in tests).
    pub fn data(&self) -> DataSpec {
        self.shared.spec
    }

    /// Stop both listeners. In-flight responses get a second to finish, then are dropped.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for mut t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(1), &mut t).await.is_err() {
                t.abort();
            }
        }
    }
}

/// Serve until `shutdown` completes. `on_ready` runs once both listeners are bound (the CLI prints the
/// URLs there); the sandbox itself prints nothing.
pub async fn serve_until(
    addr: SocketAddr,
    cfg: SandboxConfig,
    on_ready: impl FnOnce(&Sandbox),
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let sandbox = Sandbox::start_on(addr, cfg).await?;
    on_ready(&sandbox);
    shutdown.await;
    sandbox.shutdown().await;
    Ok(())
}

/// Serve until the process ends (the caller handles signals by dropping this future or exiting).
pub async fn serve_forever(
    addr: SocketAddr,
    cfg: SandboxConfig,
    on_ready: impl FnOnce(&Sandbox),
) -> std::io::Result<()> {
    serve_until(addr, cfg, on_ready, std::future::pending()).await
}
