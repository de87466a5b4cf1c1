//! Receiving the plan's redirect: a one-shot listener on the job's loopback `redirect_uri`
//! (`http://127.0.0.1:PORT/path`, RFC 8252 §7.3) that answers the browser and hands back the query of
//! the first request to that path, with a bounded wait; or the redirected address pasted on stdin, for
//! production plans whose redirect goes to the app's registered HTTPS URL.
//!
//! The listener speaks just enough HTTP/1.1 for one browser request: the request head is bounded
//! (8 KiB), other paths (`/favicon.ico`) get a 404, and it stops after the first answer.

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use crate::error::{Error, Result};
use crate::job::is_loopback;

const MAX_HEAD: usize = 8 * 1024;
const PAGE: &str = "<!doctype html><meta charset=utf-8><title>oneup-bulk</title>\
<p>oneup-bulk has the health plan's answer. You can close this tab and go back to the terminal.</p>";

/// Bound before the authorize URL is printed, so the redirect cannot arrive before anyone listens.
pub struct Loopback {
    listener: TcpListener,
    path: String,
}

/// Where a redirect URI can be listened on: plain http to a loopback address, with its port.
pub fn listen_addr(redirect_uri: &Url) -> std::result::Result<SocketAddr, String> {
    if redirect_uri.scheme() != "http" || !is_loopback(redirect_uri) {
        return Err(format!(
            "auth.redirect_uri {redirect_uri} is not a loopback http address this command can listen on; use `--paste` (log in, then paste the address the browser ends on)"
        ));
    }
    let ip = match redirect_uri.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    Ok(SocketAddr::new(ip, redirect_uri.port_or_known_default().unwrap_or(80)))
}

impl Loopback {
    pub async fn bind(redirect_uri: &Url) -> Result<Self> {
        let addr = listen_addr(redirect_uri).map_err(Error::Usage)?;
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::Usage(format!("cannot listen on {addr} for the redirect: {e} (is another authorize running?)"))
        })?;
        Ok(Loopback { listener, path: redirect_uri.path().to_string() })
    }

    /// The query of the first request to the redirect path, or exit 75 after `timeout`.
    pub async fn wait(self, timeout: Duration) -> Result<String> {
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let (stream, _) =
                    self.listener.accept().await.map_err(|e| Error::Failed(format!("accepting the redirect: {e}")))?;
                if let Some(q) = self.answer(stream).await {
                    return Ok(q);
                }
            }
        });
        match waited.await {
            Ok(r) => r,
            Err(_) => Err(Error::Transient(format!(
                "no redirect from the plan within {}: run `authorize` again (and log in within the wait, or give --timeout)",
                humantime::format_duration(timeout)
            ))),
        }
    }

    /// Reads one request; `Some(query)` when it is the redirect, after answering the browser.
    async fn answer(&self, mut s: TcpStream) -> Option<String> {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
        });
        let _ = read.await;
        let target = request_target(&head);
        let query = target.as_deref().and_then(|t| {
            let (path, query) = t.split_once('?').unwrap_or((t, ""));
            (path == self.path && (query.contains("code=") || query.contains("error="))).then(|| query.to_string())
        });
        let (status, body) = if query.is_some() { ("200 OK", PAGE) } else { ("404 Not Found", "not found") };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(resp.as_bytes()).await;
        let _ = s.shutdown().await;
        query
    }
}

/// `GET /callback?code=… HTTP/1.1` → `/callback?code=…`.
fn request_target(head: &[u8]) -> Option<String> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(t)) => Some(t.to_string()),
        _ => None,
    }
}

/// One line from stdin (at most 16 KiB): the address the browser was redirected to.
pub fn read_pasted(input: impl BufRead) -> Result<String> {
    let mut line = String::new();
    let n = input.take(16 * 1024).read_line(&mut line).map_err(|e| Error::Failed(format!("reading stdin: {e}")))?;
    if n == 0 || line.trim().is_empty() {
        return Err(Error::Usage(
            "nothing was pasted: paste the address the browser was sent to after logging in".into(),
        ));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_is_listened_on() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(listen_addr(&u("http://127.0.0.1:8765/callback")).unwrap(), "127.0.0.1:8765".parse().unwrap());
        assert_eq!(listen_addr(&u("http://localhost:9000/cb")).unwrap(), "127.0.0.1:9000".parse().unwrap());
        assert_eq!(listen_addr(&u("http://[::1]:9000/cb")).unwrap(), "[::1]:9000".parse().unwrap());
        assert!(listen_addr(&u("https://app.example/cb")).unwrap_err().contains("--paste"));
    }

    #[test]
    fn request_lines() {
        assert_eq!(
            request_target(b"GET /cb?code=1&state=2 HTTP/1.1\r\nHost: x\r\n\r\n").as_deref(),
            Some("/cb?code=1&state=2")
        );
        assert_eq!(request_target(b"POST /cb HTTP/1.1\r\n\r\n"), None);
    }

    #[test]
    fn a_pasted_line() {
        assert_eq!(read_pasted(&b"https://app.example/cb?code=1\n"[..]).unwrap(), "https://app.example/cb?code=1\n");
        assert_eq!(read_pasted(&b""[..]).unwrap_err().exit_code(), 2);
    }

    #[tokio::test]
    async fn the_listener_answers_one_redirect_and_ignores_other_paths() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let l = Loopback::bind(&Url::parse(&format!("http://127.0.0.1:{port}/callback")).unwrap()).await.unwrap();
        let wait = tokio::spawn(l.wait(Duration::from_secs(10)));
        let c = reqwest::Client::new();
        let r = c.get(format!("http://127.0.0.1:{port}/favicon.ico")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404);
        let r = c.get(format!("http://127.0.0.1:{port}/callback?code=abc&state=s")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.text().await.unwrap(), PAGE);
        assert_eq!(wait.await.unwrap().unwrap(), "code=abc&state=s");
    }
}
