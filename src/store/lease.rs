//! The job's lock in object storage: a lease object (`<job>/.state/lease`) naming its holder (host,
//! pid, start), created with a create-if-absent put and renewed by a background task with puts
//! conditional on the version it last wrote. A second run anywhere finds a fresh lease and exits 75
//! naming the holder; a lease its holder has not renewed within its own `ttl` is taken over, again
//! conditionally, so of two runs racing for a stale lease one wins. A holder whose renewal fails (taken
//! over, or the store unreachable for longer than the `ttl`) is told through [`Lease::lost`], and the
//! run stops with exit 75 before it writes more state; every state write is conditional as well, so
//! a holder that has not noticed yet cannot overwrite its successor's state.
//!
//! Staleness is judged by the `renewed` time the holder wrote, against this machine's clock: the
//! clocks of machines that share a bucket are assumed to agree to well within the `ttl` (NTP does).

use std::time::Duration;

use bytes::Bytes;
use object_store::UpdateVersion;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::object::{Expect, ObjectDir};
use crate::error::{Error, Result};
use crate::instant;
use crate::state::LockHolder;

pub const LEASE: &str = "lease";
/// How long a lease lasts without renewal, unless `ONEUP_BULK_LEASE_TTL` says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
pub const TTL_VAR: &str = "ONEUP_BULK_LEASE_TTL";

/// The lease object's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseDoc {
    pub host: String,
    pub pid: u32,
    /// When the holder's run started (RFC 3339).
    pub started: String,
    /// When the holder last renewed (RFC 3339).
    pub renewed: String,
    pub ttl_secs: u64,
    /// Set when the holder let go at the end of its run.
    #[serde(default)]
    pub released: bool,
}

impl LeaseDoc {
    fn mine(ttl: Duration) -> LeaseDoc {
        let now = instant::now();
        LeaseDoc {
            host: crate::state::hostname(),
            pid: std::process::id(),
            started: now.clone(),
            renewed: now,
            ttl_secs: ttl.as_secs().max(1),
            released: false,
        }
    }

    /// The holder, as the job's lock names one.
    pub fn holder(&self) -> LockHolder {
        LockHolder { pid: Some(self.pid), host: Some(self.host.clone()), since: Some(self.started.clone()) }
    }

    /// Whether a run may take this lease over at `now`.
    pub fn is_free(&self, now: OffsetDateTime) -> bool {
        self.released
            || instant::parse(&self.renewed)
                .is_none_or(|t| now - t > time::Duration::seconds(self.ttl_secs.min(i64::MAX as u64) as i64))
    }

    fn bytes(&self) -> Bytes {
        let mut b = serde_json::to_vec_pretty(self).expect("a lease serialises");
        b.push(b'\n');
        b.into()
    }
}

/// A held lease. Drop stops the renewals; [`Lease::release`] also marks the lease free.
pub struct Lease {
    dir: ObjectDir,
    lost: watch::Receiver<Option<String>>,
    task: tokio::task::JoinHandle<()>,
    state: std::sync::Arc<tokio::sync::Mutex<(LeaseDoc, UpdateVersion)>>,
    /// The holder this run displaced, if it took over a stale lease.
    pub took_over: Option<LockHolder>,
}

/// The lease duration in force (`ONEUP_BULK_LEASE_TTL`, a humantime duration, else [`DEFAULT_TTL`]).
pub fn ttl() -> Duration {
    std::env::var(TTL_VAR).ok().and_then(|v| humantime::parse_duration(&v).ok()).unwrap_or(DEFAULT_TTL)
}

/// Who holds the lease in `state_dir`, if anyone (for `status`).
pub async fn holder(state_dir: &ObjectDir) -> Result<Option<LockHolder>> {
    Ok(read(state_dir).await?.filter(|(d, _)| !d.is_free(OffsetDateTime::now_utc())).map(|(d, _)| d.holder()))
}

async fn read(dir: &ObjectDir) -> Result<Option<(LeaseDoc, UpdateVersion)>> {
    match dir.get(LEASE).await? {
        None => Ok(None),
        Some((b, v)) => Ok(Some((serde_json::from_slice(&b).map_err(|e| unreadable(dir, e))?, v))),
    }
}

fn unreadable(dir: &ObjectDir, e: serde_json::Error) -> Error {
    Error::Failed(format!("{}: not a lease ({e}); remove it if no run of this job is alive", dir.url.join(LEASE)))
}

/// Takes the lease in `dir` (the job's `.state/`), or says who holds it (exit 75).
pub async fn acquire(dir: &ObjectDir, ttl: Duration) -> Result<Lease> {
    let mine = LeaseDoc::mine(ttl);
    let (version, took_over) = match dir.try_put_if(LEASE, mine.bytes(), &Expect::Absent).await? {
        Some(v) => (v, None),
        None => {
            let Some((theirs, v)) = read(dir).await? else {
                return Err(Error::Transient(format!("{}: the lease changed hands; run again", dir.url.join(LEASE))));
            };
            if !theirs.is_free(OffsetDateTime::now_utc()) {
                return Err(Error::Locked(theirs.holder()));
            }
            match dir.try_put_if(LEASE, mine.bytes(), &Expect::Version(v)).await? {
                Some(v) => (v, (!theirs.released).then(|| theirs.holder())),
                // Another run took the stale lease first.
                None => return Err(Error::Locked(read(dir).await?.map(|(d, _)| d.holder()).unwrap_or_default())),
            }
        }
    };
    let (tx, lost) = watch::channel(None);
    let state = std::sync::Arc::new(tokio::sync::Mutex::new((mine, version)));
    let task = tokio::spawn(renew(dir.clone(), state.clone(), ttl, tx));
    Ok(Lease { dir: dir.clone(), lost, task, state, took_over })
}

/// Renews every third of the `ttl`; gives up (and says why on `tx`) when the lease was taken, or when
/// no renewal has succeeded for a whole `ttl`.
async fn renew(
    dir: ObjectDir,
    state: std::sync::Arc<tokio::sync::Mutex<(LeaseDoc, UpdateVersion)>>,
    ttl: Duration,
    tx: watch::Sender<Option<String>>,
) {
    let every = ttl / 3;
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let mut s = state.lock().await;
        s.0.renewed = instant::now();
        let attempt = tokio::time::timeout(every.max(Duration::from_millis(100)), async {
            dir.try_put_if(LEASE, s.0.bytes(), &Expect::Version(s.1.clone())).await
        });
        match attempt.await {
            Ok(Ok(Some(v))) => {
                s.1 = v;
                last_ok = tokio::time::Instant::now();
            }
            Ok(Ok(None)) => {
                let now = read(&dir).await.ok().flatten();
                // A renewal that timed out here but landed there: the lease is still ours.
                if let Some((d, v)) = &now
                    && (d.host.as_str(), d.pid, d.started.as_str())
                        == (s.0.host.as_str(), s.0.pid, s.0.started.as_str())
                    && !d.released
                {
                    s.1 = v.clone();
                    continue;
                }
                let who = now.map(|(d, _)| format!(" by {}", d.holder())).unwrap_or_default();
                let _ = tx.send(Some(format!("the job's lease at {} was taken over{who}", dir.url.join(LEASE))));
                return;
            }
            Ok(Err(_)) | Err(_) if last_ok.elapsed() >= ttl => {
                let _ = tx.send(Some(format!(
                    "the job's lease at {} could not be renewed for {}",
                    dir.url.join(LEASE),
                    humantime::format_duration(ttl)
                )));
                return;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "lease renewal failed; trying again"),
            Err(_) => tracing::debug!("lease renewal timed out; trying again"),
        }
    }
}

impl Lease {
    /// Resolves when the lease is lost, with why; never while it is held.
    pub async fn lost(&self) -> String {
        let mut rx = self.lost.clone();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                // The renewal task ended without a word: treat as held (it only ends by sending).
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops renewing and marks the lease free, if it is still ours.
    pub async fn release(self) {
        self.task.abort();
        let mut s = self.state.lock().await;
        s.0.released = true;
        s.0.renewed = instant::now();
        let _ = self.dir.try_put_if(LEASE, s.0.bytes(), &Expect::Version(s.1.clone())).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(renewed: &str, ttl_secs: u64, released: bool) -> LeaseDoc {
        LeaseDoc {
            host: "node-1".into(),
            pid: 7,
            started: "2026-01-01T00:00:00Z".into(),
            renewed: renewed.into(),
            ttl_secs,
            released,
        }
    }

    #[test]
    fn a_lease_is_free_when_released_or_not_renewed_within_its_ttl() {
        let now = instant::parse("2026-01-01T00:10:00Z").unwrap();
        assert!(!doc("2026-01-01T00:09:30Z", 60, false).is_free(now));
        assert!(doc("2026-01-01T00:08:59Z", 60, false).is_free(now));
        assert!(doc("2026-01-01T00:09:59Z", 60, true).is_free(now));
        assert!(doc("not a time", 60, false).is_free(now));
    }

    #[test]
    fn the_holder_is_named_as_the_lock_names_it() {
        assert_eq!(doc("x", 1, false).holder().to_string(), "pid 7 on node-1 since 2026-01-01T00:00:00Z");
    }
}
