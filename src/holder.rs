//! Who holds a job: the line a run writes into its lock (`pid 1234 on host-a since 2026-…Z`), read back
//! for messages (`status`, a refused second run, `cancel`). Plain data at the bottom of the crate, so the
//! error type can carry it.

use std::fmt;

/// Who holds a job's lock, as its holder wrote it: `pid 1234 on host-a since 2026-11-28T17:06:49Z`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: Option<u32>,
    pub host: Option<String>,
    pub since: Option<String>,
}

impl LockHolder {
    /// This process, now.
    pub fn me() -> Self {
        LockHolder { pid: Some(std::process::id()), host: Some(hostname()), since: Some(crate::instant::now()) }
    }

    /// Reads a holder line; older lock files say `pid 1234 since …` (no host).
    pub fn parse(text: &str) -> Self {
        let mut h = LockHolder::default();
        let words: Vec<&str> = text.split_whitespace().collect();
        for pair in words.windows(2) {
            match pair[0] {
                "pid" => h.pid = pair[1].parse().ok(),
                "on" => h.host = Some(pair[1].to_string()),
                "since" => h.since = Some(pair[1].to_string()),
                _ => {}
            }
        }
        h
    }

    /// True when the holder recorded a host other than this one.
    pub fn elsewhere(&self) -> bool {
        self.host.as_deref().is_some_and(|h| h != hostname())
    }
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = self.pid {
            parts.push(format!("pid {p}"));
        }
        if let Some(h) = &self.host {
            parts.push(format!("on {h}"));
        }
        if let Some(s) = &self.since {
            parts.push(format!("since {s}"));
        }
        if parts.is_empty() { f.write_str("holder unknown") } else { f.write_str(&parts.join(" ")) }
    }
}

/// This machine's name (gethostname), as the lock file records it.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if rc == 0 && !h.is_empty() && !h.contains(char::is_whitespace) => h.to_string(),
        _ => "unknown-host".to_string(),
    }
}
