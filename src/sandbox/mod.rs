//! A local FHIR Bulk Data server with synthetic data: `oneup-bulk sandbox`, `oneup-bulk demo`, the
//! integration tests (in-process on port 0) and the benchmarks all talk to it.
//!
//! It speaks OAuth client credentials (client secret post/basic, and SMART Backend Services JWT
//! assertions, which it verifies itself against registered JWKS), Bulk Data kick-off / status / manifest
//! / files (Range, gzip), Da Vinci PDex `$davinci-data-export` and `$bulk-member-match`, plain http or
//! HTTPS (HTTP/1.1 and HTTP/2), and it can misbehave on request through [`Faults`]. HRex
//! `Patient/$member-match`, 1up's URL shapes and 1up's documented behaviours: see [`OneUpMode`]. Every request is
//! recorded so tests can assert what a client sent. URL layout (`PORT` = [`Sandbox::fhir_base`]'s port):
//!
//! ```text
//! POST   /auth/token                                 client_credentials
//! GET    /fhir/.well-known/smart-configuration       GET /fhir/metadata
//! GET|POST /fhir/$export   /fhir/Patient/$export   /fhir/Group/{id}/$export
//! POST   /fhir/Group/{id}/$davinci-data-export       POST /fhir/Group/$bulk-member-match
//! POST   /fhir/Patient/$member-match
//! (and /v1/{tenant}/bulk-export/bulk-data/r4/… for /fhir/…, /auth/realms/{realm}/protocol/openid-connect/token)
//! GET    /fhir/Group/{id}
//! GET|DELETE /fhir/$export-status/{job}
//! GET    /files/{job}/{file}.ndjson                  (and on the storage listener, after a 307)
//! GET    /oauth2/authorize/{system}   POST /oauth2/token      Patient Access: the plan (plan.rs)
//! GET    /fhir/Patient/{id}/$everything   /fhir/{Type}?patient=   /fhir/Patient/{id}   (member_data.rs)
//! ```

mod assertion;
mod auth;
pub mod chaos;
mod config;
mod data;
mod export;
mod faults;
mod fhir;
mod files;
mod hrex;
mod jobs;
mod manifest;
mod member_data;
mod member_match;
mod oneup;
mod organized;
mod params;
mod plan;
mod resources;
mod routes;
mod status;
mod tables;
#[cfg(test)]
mod tests;
mod tls;

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

pub use assertion::{CheckedAssertion, JwtClient};
pub use config::{RetryAfterStyle, SandboxConfig};
pub use data::{DataSpec, Demographics, ResourceType, Selection, TypeData};
pub use export::KickoffRecord;
pub use faults::{BadLine, FaultHandle, Faults, FileCut, PageCut};
pub use oneup::OneUpMode;
pub use params::{ExportLevel, ExportParams};
pub use plan::PlanConfig;
pub use tls::{Alpn, SandboxTls, TestCa};

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
    /// `HTTP/1.1`, or `HTTP/2.0` when the client and the TLS handshake chose HTTP/2.
    pub version: axum::http::Version,
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
    verifier: assertion::Verifier,
    /// Every `client_assertion` received, with the verdict.
    assertions: Mutex<Vec<CheckedAssertion>>,
    jobs: Mutex<HashMap<String, jobs::Job>>,
    /// Birth date → patient indices, built on the first `$bulk-member-match`.
    members_by_birth_date: std::sync::OnceLock<HashMap<String, Vec<u32>>>,
    /// Groups made by `$bulk-member-match`: id → patient indices.
    groups: Mutex<HashMap<String, Vec<u32>>>,
    /// Patients `$member-match` has matched (1up mode scopes population exports to them).
    matched: Mutex<std::collections::BTreeSet<u32>>,
    requests: Mutex<Vec<RecordedRequest>>,
    kickoffs: Mutex<Vec<KickoffRecord>>,
    /// Patient Access: codes and tokens the plan issued.
    plan: plan::PlanState,
    cache: jobs::Cache,
    seq: AtomicU64,
    /// Chaos mode's live state, when on.
    chaos: Option<chaos::Chaos>,
}

impl Shared {
    fn token_url(&self) -> Url {
        self.main_base.join("auth/token").expect("static path")
    }
}

/// Serve `app` on `listener` (plain TCP or TLS) until `stopped` turns true.
fn serve<L>(listener: L, app: axum::Router, mut stopped: watch::Receiver<bool>) -> JoinHandle<()>
where
    L: axum::serve::Listener,
    L::Addr: fmt::Debug,
{
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        // Errors here are accept errors on a loopback socket; nothing useful to do with them.
        let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    })
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
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let base = |l: &TcpListener| -> std::io::Result<Url> {
            let a = l.local_addr()?;
            let host = if a.ip().is_unspecified() { "127.0.0.1".to_string() } else { a.ip().to_string() };
            let host = if a.is_ipv6() && host != "127.0.0.1" { format!("[{host}]") } else { host };
            Url::parse(&format!("{scheme}://{host}:{}/", a.port())).map_err(|e| std::io::Error::other(e.to_string()))
        };
        let verifier = assertion::Verifier::new(&cfg.jwt_clients)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("sandbox jwt_clients: {e}")))?;
        let acceptor = cfg.tls.as_ref().map(tls::acceptor).transpose()?;
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
            tokens: Mutex::default(),
            verifier,
            assertions: Mutex::default(),
            jobs: Mutex::default(),
            groups: Mutex::default(),
            matched: Mutex::default(),
            members_by_birth_date: std::sync::OnceLock::new(),
            requests: Mutex::default(),
            kickoffs: Mutex::default(),
            plan: plan::PlanState::default(),
            cache: jobs::Cache::default(),
            seq: AtomicU64::new(1),
            chaos: cfg.chaos.clone().map(chaos::Chaos::new),
            cfg,
        });
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for (l, which) in [(main, Listener::Main), (storage, Listener::Storage)] {
            let app = routes::router(shared.clone(), which);
            tasks.push(match &acceptor {
                Some(a) => serve(tls::TlsListener::new(l, a.clone())?, app, stopped.clone()),
                None => serve(l, app, stopped.clone()),
            });
        }
        Ok(Sandbox { shared, stop, tasks })
    }

    /// `http://127.0.0.1:PORT/fhir/` (`https://` when serving TLS; with the trailing slash, so relative
    /// joins work).
    pub fn fhir_base(&self) -> Url {
        self.shared.main_base.join("fhir/").expect("static path")
    }

    pub fn token_url(&self) -> Url {
        self.shared.token_url()
    }

    /// Patient Access: the plan's authorize endpoint, `…/oauth2/authorize/<system-id>` (1up's shape).
    pub fn plan_authorize_url(&self) -> Url {
        let path = format!("oauth2/authorize/{}", self.shared.cfg.plan.system_id);
        self.shared.main_base.join(&path).expect("static path")
    }

    /// Patient Access: the plan's token endpoint, `…/oauth2/token`.
    pub fn plan_token_url(&self) -> Url {
        self.shared.main_base.join("oauth2/token").expect("static path")
    }

    /// The storage listener's origin (`http://127.0.0.1:PORT2/`, or `https://`).
    pub fn storage_base(&self) -> Url {
        self.shared.storage_base.clone()
    }

    /// Every request seen so far, in arrival order, on both listeners.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Every `client_assertion` the token endpoint received, in order, with its verdict.
    pub fn client_assertions(&self) -> Vec<CheckedAssertion> {
        lock(&self.shared.assertions).clone()
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

    /// Chaos mode: how many answers each fault kind has changed so far (empty when chaos is off).
    pub fn chaos_fired(&self) -> std::collections::BTreeMap<chaos::FaultKind, u64> {
        self.shared.chaos.as_ref().map(chaos::Chaos::fired).unwrap_or_default()
    }

    /// The files of export `job` as this sandbox serves them (name and bytes, the error file last), once
    /// they are generated; `None` for an unknown or unfinished export.
    pub fn export_files(&self, job: &str) -> Option<Vec<(String, bytes::Bytes)>> {
        let files = jobs::files_of(&self.shared, job)?;
        Some(files.outputs.iter().chain([&files.error]).map(|f| (f.name.clone(), f.bytes.clone())).collect())
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
