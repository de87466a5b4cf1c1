//! The lock that keeps two runs of one job apart: an OS file lock on `.state/lock`, released by the
//! kernel however its holder dies (so a crash never blocks the next run), and in the file the holder's
//! pid, host and start time, so whoever is refused can be told exactly what to stop, and where. For a
//! job in a bucket, a lease object instead ([`crate::store::lease`]), with the same holder.
//!
//! `cancel --force` may break a lock held from another host ([`JobState::lock_forced`]): on a shared
//! filesystem (NFS, a volume several pods mount) a machine that died can leave its lock held until the
//! file server gives up on it. A lock held on this host is never broken: the kernel releases the lock
//! of a dead process, so its holder is alive and must be stopped first.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};

use super::JobState;
use crate::error::{Error, Result};
pub use crate::holder::{LockHolder, hostname};
use crate::progress::{Event, Reporter};

const LOCK: &str = "lock";

/// Held for the duration of a run: an OS file lock (released by the OS however the process dies), or
/// a lease in the bucket (renewed in the background; lost → the run stops with exit 75).
pub enum Lock {
    Local(File),
    Lease(crate::store::lease::Lease),
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lock::Local(_) => "Lock::Local",
            Lock::Lease(_) => "Lock::Lease",
        })
    }
}

impl Lock {
    /// Resolves when the lock is lost, with why (never, on disk).
    pub async fn lost(&self) -> String {
        match self {
            Lock::Local(_) => std::future::pending().await,
            Lock::Lease(l) => l.lost().await,
        }
    }

    /// The holder this run displaced by taking over its stale lease, if any.
    pub fn took_over(&self) -> Option<&LockHolder> {
        match self {
            Lock::Local(_) => None,
            Lock::Lease(l) => l.took_over.as_ref(),
        }
    }

    /// Lets go: the file lock closed, or the lease marked free.
    pub async fn release(self) {
        if let Lock::Lease(l) = self {
            l.release().await;
        }
    }
}

impl JobState {
    /// Takes the job's lock, or says who holds it ([`Error::Locked`]).
    pub fn lock(&self) -> Result<Lock> {
        if let crate::store::Dir::Object(state) = &self.store {
            return self.lease(state);
        }
        match self.try_lock()? {
            Ok(lock) => Ok(lock),
            Err(holder) => Err(Error::Locked(holder)),
        }
    }

    /// `cancel --force`: like [`JobState::lock`], but a lock held from another host is broken (the lock
    /// file is replaced; a holder that is in fact alive keeps running unaware, which is why this is
    /// only for hosts that are gone). A holder on this host is refused as always.
    pub fn lock_forced(&self, reporter: &dyn Reporter) -> Result<Lock> {
        if self.store.is_object() {
            return self.lock(); // a lease not renewed is taken over anyway; a renewed one has a live holder
        }
        match self.try_lock()? {
            Ok(lock) => Ok(lock),
            Err(holder) if holder.elsewhere() => {
                let message = format!("--force: breaking the lock held by {holder}");
                reporter.event(&Event::Note { message: &message });
                let path = self.dir.join(LOCK);
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                self.lock()
            }
            Err(holder) => Err(Error::Locked(holder)),
        }
    }

    /// The bucket's lease; then the uploads a crashed run left open are aborted, and the event log of
    /// an export in flight is fetched to continue.
    fn lease(&self, state: &crate::store::ObjectDir) -> Result<Lock> {
        let ttl = crate::store::lease::ttl();
        let lease = crate::store::block(crate::store::lease::acquire(state, ttl))?;
        if let crate::store::Dir::Object(job) = &self.job {
            crate::store::block(crate::store::upload::abort_stale(job))?;
        }
        self.prepare_log()?;
        Ok(Lock::Lease(lease))
    }

    fn try_lock(&self) -> Result<std::result::Result<Lock, LockHolder>> {
        self.create()?;
        let path = self.dir.join(LOCK);
        let mut f = crate::private_fs::open_private(&path, fs::OpenOptions::new().read(true).write(true).create(true))
            .map_err(|e| Error::io(&path, e))?;
        match f.try_lock() {
            Ok(()) => {
                let holder = format!("{}\n", LockHolder::me());
                let _ = f.set_len(0);
                let _ = f.rewind();
                let _ = f.write_all(holder.as_bytes());
                let _ = f.sync_data();
                Ok(Ok(Lock::Local(f)))
            }
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = f.read_to_string(&mut holder);
                Ok(Err(LockHolder::parse(&holder)))
            }
            Err(fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// Who holds the lock, if anyone (for `status`).
    pub fn lock_holder(&self) -> Option<LockHolder> {
        if let crate::store::Dir::Object(state) = &self.store {
            return crate::store::block(crate::store::lease::holder(state)).ok().flatten();
        }
        let mut f = File::open(self.dir.join(LOCK)).ok()?;
        match f.try_lock_shared() {
            Ok(()) => None,
            Err(_) => {
                let mut s = String::new();
                f.read_to_string(&mut s).ok()?;
                Some(LockHolder::parse(&s))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    #[test]
    fn second_lock_is_refused_naming_the_holder_and_released_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let s = JobState::new(&d.path().join("job"));
        let l = s.lock().unwrap();
        let e = s.lock().unwrap_err();
        assert_eq!(e.exit_code(), 75);
        let Error::Locked(holder) = &e else { panic!("{e:?}") };
        assert_eq!((holder.pid, holder.host.clone()), (Some(std::process::id()), Some(hostname())));
        assert_eq!(s.lock_holder().as_ref(), Some(holder));
        // This host's holder is alive: --force does not break its lock.
        assert!(matches!(s.lock_forced(&Silent), Err(Error::Locked(_))));
        drop(l);
        assert!(s.lock_holder().is_none());
        s.lock().unwrap();
    }

    #[test]
    fn force_breaks_a_lock_held_from_another_host() {
        let d = tempfile::tempdir().unwrap();
        let s = JobState::new(&d.path().join("job"));
        let held = s.lock().unwrap();
        // As if written by a machine that shares the folder.
        std::fs::write(s.dir.join(LOCK), "pid 4242 on other-host.example since 2026-01-01T00:00:00Z\n").unwrap();
        let Err(Error::Locked(h)) = s.lock() else { panic!("still locked") };
        assert!(h.elsewhere());
        let mine = s.lock_forced(&Silent).unwrap();
        assert_eq!(s.lock_holder().and_then(|h| h.pid), Some(std::process::id()));
        drop((held, mine));
    }

    #[test]
    fn holder_lines_old_and_new() {
        let h = LockHolder::parse("pid 1234 on host-a since 2026-11-28T17:06:49Z\n");
        assert_eq!(h.to_string(), "pid 1234 on host-a since 2026-11-28T17:06:49Z");
        let old = LockHolder::parse("pid 77 since 2025-01-01T00:00:00Z");
        assert_eq!((old.pid, old.host.as_deref(), old.elsewhere()), (Some(77), None, false));
        assert_eq!(LockHolder::parse("").to_string(), "holder unknown");
        assert!(!hostname().is_empty());
    }
}
