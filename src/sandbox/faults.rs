//! Fault injection: the switches a test flips to make the sandbox misbehave like real servers do.
//!
//! [`Faults`] is plain data (it is also part of [`super::SandboxConfig`]); [`FaultHandle`] is the live,
//! shared copy the server consults on every request, so a test can change switches while an export runs.
//! Counters count down: `kickoff_429: 2` answers 429 twice, then accepts.
//!
//! To add a switch: a field here with a doc comment saying what the server does while it is on (off
//! is `Default`), then one check where the server answers: `shared.faults.get().switch` for a switch
//! that stays on, `shared.faults.take(|f| &mut f.counter)` for a countdown, or a `take_*` method
//! below for one that fires once. Nothing else needs to change.

use std::sync::{Arc, Mutex, MutexGuard};

/// Every fault is off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Answer the kick-off with 429 + `Retry-After` this many times before accepting it.
    pub kickoff_429: u32,
    /// Answer the kick-off with this status and an OperationOutcome carrying the text as diagnostics
    /// (stays on until cleared).
    pub kickoff_error: Option<(u16, String)>,
    /// Answer status polls with 503 + `Retry-After` this many times.
    pub status_503: u32,
    /// Answer status polls with 500 + an OperationOutcome whose issue code is `transient`, this many times.
    pub status_transient_oo: u32,
    /// Answer status polls with 429 + `Retry-After` this many times.
    pub status_429: u32,
    /// Status URLs answer 404 (as if the job expired) while on.
    pub status_404: bool,
    /// Forget every issued token once: the next FHIR request after setting this gets a 401.
    pub expire_tokens_now: bool,
    /// Answer the token endpoint with a body of about this many bytes (while on).
    pub token_body_bytes: Option<usize>,
    /// Answer the token endpoint with 500 this many times.
    pub token_500: u32,
    /// Send full headers for a matching file, then cut the connection mid-body.
    pub file_cut_after: Option<FileCut>,
    /// Declare a `Content-Length` larger than the body actually sent, this many times (then the body ends).
    pub file_short_body: u32,
    /// Answer file downloads with 403 this many times, as an expired signed URL does.
    pub file_403: u32,
    /// Answer file downloads with 500 this many times.
    pub file_500: u32,
    /// The manifest `count` of the first output file is one more than its real line count (while on).
    pub count_mismatch: bool,
    /// Exports kicked off while this is set get a corrupt line in their first output file.
    pub bad_line: Option<BadLine>,
    /// The file server answers 400 to any request carrying `Authorization` (signed-URL storage does).
    /// `None` means: on exactly when the manifest says `requiresAccessToken: false`.
    pub files_reject_authorization: Option<bool>,
    /// Manifest file URLs answer 307 to a second listener (another origin), like redirects to storage.
    pub redirect_files_to_other_origin: bool,
    /// The first request whose path contains this text and carries a token gets a 401, and that token
    /// is revoked: an access token expiring at exactly that stage (kick-off, status, file). Fires once.
    pub reject_token_on: Option<String>,
    /// Answer the finished status with this text instead of the real manifest (hostile or broken servers).
    pub manifest_override: Option<String>,
    /// Serve file bodies at about this many bytes per second (so a test can stop a client mid-download).
    pub file_bytes_per_sec: Option<u64>,
    /// Answer accepted kick-offs (and `$bulk-member-match`) with this `Content-Location` instead of the
    /// real status URL: a server handing back a wrong or plain-http URL (while on).
    pub content_location: Option<String>,
    /// Advertise this `token_endpoint` in `.well-known/smart-configuration` instead of the real one
    /// (while on).
    pub discovery_token_endpoint: Option<String>,
    /// Requests whose path contains this text are read and never answered: the connection stays open
    /// and silent, like a server that hangs (while on).
    pub hang_on: Option<String>,
    /// Send headers and the first `bytes` of a matching file, then nothing more, the connection left
    /// open: a body that stalls mid-way.
    pub file_stall_after: Option<FileCut>,
    /// The first request whose path contains this text finds every export forgotten, as after a server
    /// restart or an expiry: its status URL and files answer 404 from then on. Fires once.
    pub lose_exports_on: Option<String>,
    /// The token endpoint grants this `scope`, whatever was asked for (while on).
    pub granted_scope: Option<String>,
    /// The manifest leaves out the files of this resource type, as a server does for a type it has
    /// nothing of, or silently does not serve (while on).
    pub omit_output_type: Option<String>,

    // Server behaviours met in the field (issue 18).
    /// The manifest's `error[]` entry says this `count` whatever the file holds, as the SMART reference
    /// server does (it copies the failed output's count: 639 for a file of one OperationOutcome).
    pub error_count: Option<u64>,
    /// The manifest lists one more file of the first output type with this `count`, and serves it
    /// empty, every time (the reference server's second Encounter file, `count: 15`).
    pub phantom_file: Option<u64>,
    /// Serve the first output file without its last line this many times (a file still being written).
    pub file_drop_last_line: u32,
    /// Answer file downloads with 410 Gone this many times (a link past its expiry).
    pub file_410: u32,
    /// Sign file links: every manifest served carries new `?sig=N` links (N counts the manifests
    /// served), as storage that signs per request does; the file server ignores the query.
    pub signed_file_urls: bool,
    /// Once an export's manifest has been served, its status URL answers 410 (the server dropped it).
    pub forget_after_manifest: bool,
    /// Answer status polls with this status and an OperationOutcome whose issue code is `exception`
    /// carrying the text (the export failed on the server; stays on until cleared).
    pub status_error: Option<(u16, String)>,
    /// Answer status polls with a 500 and an HTML body (no OperationOutcome) this many times.
    pub status_500_no_outcome: u32,
    /// Answer the kick-off with 200 and the completion manifest at once (a synchronous export).
    pub sync_kickoff: bool,
    /// Write the manifest the STU4 way: `outcome` instead of `error`, `manifestType`, `outputFormat`,
    /// `extension` arrays, `fileSize` and `countSeverity`.
    pub manifest_stu4: bool,
    /// Write `transactionTime` with this UTC offset in minutes (`0` gives `+00:00`) instead of `Z`.
    pub transaction_time_offset: Option<i32>,
    /// Patient Access: the plan refuses every refresh token (`invalid_grant`), as when a member revokes
    /// the app (while on).
    pub refuse_refresh: bool,
    /// Patient Access: cut the connection halfway through the body of page N (1-based) of any
    /// `$everything` or search, `times` times.
    pub page_cut: Option<PageCut>,
    /// Patient Access: the next this-many page links (`_offset`) answer 410, as an expired paging
    /// cursor does.
    pub page_links_gone: u32,
}

/// Cut page `page` (1-based) of a member read, `times` times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCut {
    pub page: u32,
    pub times: u32,
}

/// Cut (or stall) the body of a file whose name contains `pattern` after `bytes` bytes, `times` times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCut {
    pub pattern: String,
    pub bytes: u64,
    pub times: u32,
}

/// How the corrupt line of [`Faults::bad_line`] is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadLine {
    /// The second line is not JSON at all.
    NotJson,
    /// The second line is valid JSON whose `resourceType` differs from the file's type.
    WrongResourceType,
}

/// The live fault switches, shared by the server and the test that owns the [`super::Sandbox`].
#[derive(Debug, Clone, Default)]
pub struct FaultHandle {
    inner: Arc<Mutex<Faults>>,
}

impl FaultHandle {
    pub fn new(faults: Faults) -> Self {
        Self { inner: Arc::new(Mutex::new(faults)) }
    }

    /// A copy of the current switches.
    pub fn get(&self) -> Faults {
        self.lock().clone()
    }

    /// Replace every switch at once.
    pub fn set(&self, faults: Faults) {
        *self.lock() = faults;
    }

    /// Change some switches: `sb.faults().update(|f| f.status_503 = 2)`.
    pub fn update(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.lock());
    }

    /// Turn every fault off.
    pub fn clear(&self) {
        self.set(Faults::default());
    }

    /// Consume one unit of a counter; true when the fault fires for this request.
    pub(crate) fn take(&self, counter: impl FnOnce(&mut Faults) -> &mut u32) -> bool {
        let mut f = self.lock();
        let c = counter(&mut f);
        if *c > 0 {
            *c -= 1;
            true
        } else {
            false
        }
    }

    /// True (once) when `path` matches `reject_token_on`.
    pub(crate) fn take_reject_token(&self, path: &str) -> bool {
        self.take_match(path, |f| &mut f.reject_token_on)
    }

    /// True (once) when `path` matches `lose_exports_on`.
    pub(crate) fn take_lose_exports(&self, path: &str) -> bool {
        self.take_match(path, |f| &mut f.lose_exports_on)
    }

    /// True, and the switch turned off, when `path` contains the switch's text.
    fn take_match(&self, path: &str, slot: impl FnOnce(&mut Faults) -> &mut Option<String>) -> bool {
        let mut f = self.lock();
        let s = slot(&mut f);
        if s.as_deref().is_some_and(|p| path.contains(p)) {
            *s = None;
            true
        } else {
            false
        }
    }

    /// Read and reset `expire_tokens_now` in one step, so it fires exactly once.
    pub(crate) fn take_expire_tokens(&self) -> bool {
        std::mem::take(&mut self.lock().expire_tokens_now)
    }

    /// If a cut applies to `file`, consume one and return after how many bytes to cut.
    pub(crate) fn take_cut(&self, file: &str) -> Option<u64> {
        self.take_file(file, |f| &mut f.file_cut_after)
    }

    /// If a stall applies to `file`, consume one and return after how many bytes to stall.
    pub(crate) fn take_stall(&self, file: &str) -> Option<u64> {
        self.take_file(file, |f| &mut f.file_stall_after)
    }

    fn take_file(&self, file: &str, slot: impl FnOnce(&mut Faults) -> &mut Option<FileCut>) -> Option<u64> {
        let mut f = self.lock();
        let slot = slot(&mut f);
        let cut = slot.as_mut()?;
        if !file.contains(&cut.pattern) || cut.times == 0 {
            return None;
        }
        cut.times -= 1;
        let bytes = cut.bytes;
        if cut.times == 0 {
            *slot = None;
        }
        Some(bytes)
    }

    /// True (and one use consumed) when page `page` of a member read is to be cut.
    pub(crate) fn take_page_cut(&self, page: u32) -> bool {
        let mut f = self.lock();
        match &mut f.page_cut {
            Some(c) if c.page == page && c.times > 0 => {
                c.times -= 1;
                if c.times == 0 {
                    f.page_cut = None;
                }
                true
            }
            _ => false,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Faults> {
        // A panicking test thread must not wedge the server: the data is plain switches, still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_count_down_and_cuts_expire() {
        let h = FaultHandle::new(Faults {
            kickoff_429: 1,
            file_cut_after: Some(FileCut { pattern: "Patient".into(), bytes: 10, times: 1 }),
            ..Faults::default()
        });
        assert!(h.take(|f| &mut f.kickoff_429));
        assert!(!h.take(|f| &mut f.kickoff_429));
        assert_eq!(h.take_cut("Coverage.ndjson"), None);
        assert_eq!(h.take_cut("Patient.ndjson"), Some(10));
        assert_eq!(h.take_cut("Patient.ndjson"), None);
        h.update(|f| f.expire_tokens_now = true);
        assert!(h.take_expire_tokens());
        assert!(!h.take_expire_tokens());
        h.update(|f| {
            f.lose_exports_on = Some("/files/".into());
            f.file_stall_after = Some(FileCut { pattern: "Coverage".into(), bytes: 5, times: 2 });
        });
        assert!(!h.take_lose_exports("/fhir/$export-status/1"));
        assert!(h.take_lose_exports("/files/1/Patient.ndjson"));
        assert!(!h.take_lose_exports("/files/1/Patient.ndjson"), "fires once");
        assert_eq!(h.take_stall("Coverage.ndjson"), Some(5));
        assert_eq!(h.take_cut("Coverage.ndjson"), None, "a stall is not a cut");
        assert_eq!(h.take_stall("Coverage.ndjson"), Some(5));
        assert_eq!(h.take_stall("Coverage.ndjson"), None);
    }
}
