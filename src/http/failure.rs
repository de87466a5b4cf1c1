//! Request failures in words: which host, which stage of the connection, and for a timeout which
//! limit ran out and its job key (`timeouts.connect`, `timeouts.request`, `timeouts.read_idle`), so a
//! person can tell a dead host from a slow one and knows what to change. Never the URL's query (signed
//! URLs carry credentials in it).

use std::time::Duration;

use super::{Limits, Wait};

/// The rustls error inside a request error, if TLS is what failed.
pub(super) fn tls_error(e: &reqwest::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        // An io::Error's source() skips the error it wraps, and the connector nests io::Errors, so
        // unwrap them by hand to reach the one rustls made.
        let mut node: &(dyn std::error::Error + 'static) = s;
        while let Some(inner) = node.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            node = inner;
        }
        if let Some(t) = node.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        source = s.source();
    }
    None
}

/// A reqwest error without the URL's query (signed URLs carry credentials in it), naming the host and
/// port, and for a timeout the limit that ran out and its job key (`limits` says which apply):
/// `timed out after 1m waiting for fhir.example.org:443 to answer (timeouts.request)`. A TLS failure
/// gives the reason: `TLS handshake with HOST:PORT failed: invalid peer certificate: …`.
pub fn describe(e: &reqwest::Error, limits: Limits) -> String {
    let peer = e.url().and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)));
    let peer = peer.unwrap_or_else(|| "the server".into());
    if let Some(t) = tls_error(e) {
        return if e.is_connect() {
            format!("TLS handshake with {peer} failed: {t}")
        } else {
            format!("TLS error from {peer}: {t}")
        };
    }
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    failure_text(&peer, Failure::of(e), limits, &detail)
}

/// What kind of failure a request error is; [`describe`] puts it in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    ConnectTimeout,
    Timeout,
    Connect,
    Body,
    Other,
}

impl Failure {
    fn of(e: &reqwest::Error) -> Self {
        match (e.is_connect(), e.is_timeout()) {
            (true, true) => Failure::ConnectTimeout,
            (false, true) => Failure::Timeout,
            (true, false) => Failure::Connect,
            _ if e.is_body() || e.is_decode() => Failure::Body,
            _ => Failure::Other,
        }
    }
}

/// The words for a failure at `peer` (pure, so every text is tested).
pub fn failure_text(peer: &str, f: Failure, limits: Limits, detail: &str) -> String {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let with = |s: String| if detail.is_empty() { s } else { format!("{s}: {detail}") };
    match (f, limits.wait) {
        (Failure::ConnectTimeout, _) => {
            format!("timed out after {} connecting to {peer} (timeouts.connect)", d(limits.connect))
        }
        (Failure::Timeout, Wait::Answer(w)) => {
            format!("timed out after {} waiting for {peer} to answer (timeouts.request)", d(w))
        }
        (Failure::Timeout, Wait::Data(w)) => {
            format!("timed out after {} without data from {peer} (timeouts.read_idle)", d(w))
        }
        (Failure::Connect, _) => with(format!("could not connect to {peer}")),
        (Failure::Body, _) => with(format!("connection to {peer} cut while reading the body")),
        (Failure::Other, _) => with(format!("request to {peer} failed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::TimeoutSettings;

    #[test]
    fn failure_texts_name_the_host_and_the_limit() {
        let t = TimeoutSettings {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
            read_idle: Duration::from_millis(1500),
        };
        let (api, files) = (Limits::api(&t), Limits::files(&t));
        let peer = "fhir.example.org:443";
        assert_eq!(
            failure_text(peer, Failure::ConnectTimeout, files, "operation timed out"),
            "timed out after 10s connecting to fhir.example.org:443 (timeouts.connect)"
        );
        assert_eq!(
            failure_text(peer, Failure::Timeout, api, "operation timed out"),
            "timed out after 1m waiting for fhir.example.org:443 to answer (timeouts.request)"
        );
        assert_eq!(
            failure_text(peer, Failure::Timeout, files, ""),
            "timed out after 1s 500ms without data from fhir.example.org:443 (timeouts.read_idle)"
        );
        assert_eq!(
            failure_text(peer, Failure::Connect, api, "Connection refused (os error 111)"),
            "could not connect to fhir.example.org:443: Connection refused (os error 111)"
        );
        assert_eq!(
            failure_text(peer, Failure::Body, files, "connection reset"),
            "connection to fhir.example.org:443 cut while reading the body: connection reset"
        );
        assert_eq!(failure_text(peer, Failure::Other, api, ""), "request to fhir.example.org:443 failed");
    }
}
