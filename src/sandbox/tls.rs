//! HTTPS for the sandbox: a throwaway certificate authority that issues server certificates on the spot
//! ([`TestCa`]), the settings a sandbox serves HTTPS with ([`SandboxTls`]), and the listener that
//! terminates TLS (rustls with aws-lc-rs) in front of both of the sandbox's listeners.
//!
//! Certificates are made at run time, never committed: a test makes a CA, issues a certificate for
//! `127.0.0.1`/`localhost` (or a wrong name, or an expired one) and hands the CA's PEM to the client.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The HTTP versions the sandbox offers in the TLS handshake (ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Alpn {
    /// `h2` and `http/1.1`: a client that speaks HTTP/2 gets it, as from most servers.
    #[default]
    Both,
    /// `http/1.1` only, like servers and proxies without HTTP/2.
    Http1,
    /// `h2` only: a client that cannot speak HTTP/2 fails the handshake.
    Http2,
}

/// The certificate and protocols a sandbox serves HTTPS with (both listeners use the same).
#[derive(Clone)]
pub struct SandboxTls {
    /// The server certificate first, then any intermediates, PEM.
    pub cert_chain_pem: String,
    /// The certificate's private key, PEM.
    pub key_pem: String,
    pub alpn: Alpn,
}

impl fmt::Debug for SandboxTls {
    // By hand: a private key stays out of logs, even a throwaway one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxTls").field("key_pem", &"<redacted>").field("alpn", &self.alpn).finish_non_exhaustive()
    }
}

/// A certificate authority made for one test run (an ECDSA P-256 key, never written anywhere unless the
/// caller writes [`TestCa::pem`] for a client's `tls.ca_file`).
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A self-signed CA named `name`, valid from yesterday for ten years.
    pub fn new(name: &str) -> io::Result<TestCa> {
        let key = KeyPair::generate().map_err(other)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3_650);
        let pem = params.self_signed(&key).map_err(other)?.pem();
        Ok(TestCa { issuer: Issuer::new(params, key), pem })
    }

    /// The CA certificate, PEM: what a client trusts (`tls.ca_file`).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid from yesterday for 30 days.
    pub fn issue(&self, names: &[&str]) -> io::Result<SandboxTls> {
        let now = OffsetDateTime::now_utc();
        self.issue_valid(names, now - time::Duration::days(1), now + time::Duration::days(30))
    }

    /// A server certificate for `names` valid only between `not_before` and `not_after` (in the past
    /// for an expired one).
    pub fn issue_valid(
        &self,
        names: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> io::Result<SandboxTls> {
        let key = KeyPair::generate().map_err(other)?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).map_err(other)?;
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("sandbox"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &self.issuer).map_err(other)?;
        Ok(SandboxTls { cert_chain_pem: cert.pem(), key_pem: key.serialize_pem(), alpn: Alpn::Both })
    }
}

fn other(e: impl fmt::Display) -> io::Error {
    io::Error::other(format!("test certificate: {e}"))
}

fn invalid(what: &str, e: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("sandbox TLS {what}: {e}"))
}

/// The rustls server side for `tls`, with the crypto provider named (not the process default).
pub(crate) fn acceptor(tls: &SandboxTls) -> io::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_slice_iter(tls.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| invalid("key", e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("protocols", e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid("certificate", e))?;
    cfg.alpn_protocols = match tls.alpn {
        Alpn::Both => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Alpn::Http1 => vec![b"http/1.1".to_vec()],
        Alpn::Http2 => vec![b"h2".to_vec()],
    };
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// A client that connects and says nothing must not hold a handshake task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP listener whose connections come out TLS-terminated. Handshakes run in their own tasks, so a
/// slow or failing one (a client refusing the certificate, which is what TLS tests provoke) never
/// holds up the next connection; only finished handshakes reach the HTTP server.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(_) => {
                        // Out of descriptors or an aborted connection: wait a moment, like axum does.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener { ready, local, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // The server stopped accepting: stop the TCP accept loop too, so the port is released.
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // Only after the accept loop ended, which happens only when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
