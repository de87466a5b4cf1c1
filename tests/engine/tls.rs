//! HTTPS end to end (issue 16): the sandbox serves TLS with certificates made at test time. A run
//! trusts `tls.ca_file`, over HTTP/2 and HTTP/1.1; without the CA, with a certificate for another name,
//! or with an expired one it stops at once with exit 1 and a message naming the host and the reason;
//! a plain-http status or token URL handed back by an https server is refused for a remote host.

use oneup_bulk::sandbox::{Alpn, RetryAfterStyle, SandboxConfig, SandboxTls, TestCa};
use time::{Duration, OffsetDateTime};

use crate::harness::*;

const EXPORT: &str = "  level: system\n  types: [Patient, Coverage]\n";
const CA_FILE: &str = "tls:\n  ca_file: ca.pem\n";

/// A sandbox serving `tls`, with the CA's PEM written beside the job files as `ca.pem`.
async fn https_env(ca: &TestCa, tls: SandboxTls) -> Env {
    let env =
        Env::new(SandboxConfig { tls: Some(tls), retry_after: RetryAfterStyle::Seconds(0), ..Default::default() })
            .await;
    std::fs::write(env.dir.path().join("ca.pem"), ca.pem()).unwrap();
    env
}

fn trusting(ca: &TestCa) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    reqwest::Client::builder().add_root_certificate(cert).build().unwrap()
}

/// The host:port the client talks to, as the error messages name it.
fn authority(env: &Env) -> String {
    let u = env.sandbox.fhir_base();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap())
}

/// Runs the job in-process and returns the error's exit code and text (the run must fail).
async fn run_err(env: &Env, yaml: &str) -> (u8, String) {
    let e = env.run(&env.job_from(yaml)).await.expect_err("the run fails");
    (e.exit_code(), e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_trusts_the_ca_file_over_http2_and_http1() {
    let ca = TestCa::new("oneup-bulk test CA").unwrap();
    for (alpn, want) in [(Alpn::Both, reqwest::Version::HTTP_2), (Alpn::Http1, reqwest::Version::HTTP_11)] {
        let tls = SandboxTls { alpn, ..ca.issue(&["127.0.0.1", "localhost"]).unwrap() };
        let env = https_env(&ca, tls).await;
        assert_eq!(env.sandbox.fhir_base().scheme(), "https");
        let out =
            env.run(&env.job_from(&env.yaml("t", EXPORT, CA_FILE))).await.unwrap_or_else(|e| panic!("{alpn:?}: {e}"));
        assert!(out.record.totals.resources > 0);
        let reqs = env.sandbox.requests();
        assert!(reqs.iter().any(|r| r.path == "/auth/token") && reqs.iter().any(|r| r.path.starts_with("/files/")));
        for r in &reqs {
            assert_eq!(r.version, want, "{alpn:?}: {} {}", r.method, r.path);
        }
        // Every file as the server serves it, fetched over the same TLS.
        let c = trusting(&ca);
        let tok = token_with(&c, &env).await;
        for f in &out.record.files {
            let remote = c.get(&f.url).bearer_auth(&tok).send().await.unwrap();
            let remote = remote.bytes().await.unwrap();
            assert!(std::fs::read(out.run_dir.join(&f.path)).unwrap() == remote, "{}", f.path);
            assert_eq!(f.sha256, sha256_hex(&remote));
        }
        assert_eq!(out.record.files.len(), 3, "Patient, Coverage and the error file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_file_the_issuer_is_unknown_and_the_run_stops_with_exit_1() {
    let ca = TestCa::new("oneup-bulk test CA").unwrap();
    let env = https_env(&ca, ca.issue(&["127.0.0.1", "localhost"]).unwrap()).await;
    // The binary's "system" roots: one unrelated CA, so the test does not depend on this machine's.
    let system = TestCa::new("some public CA").unwrap();
    let roots = env.dir.path().join("system-roots.pem");
    std::fs::write(&roots, system.pem()).unwrap();
    let job = env.write_job("t.yaml", &env.yaml("t", EXPORT, ""));
    let o = tokio::task::spawn_blocking(move || {
        bin().env("SSL_CERT_FILE", &roots).env_remove("SSL_CERT_DIR").args(["run", "--no-progress"]).arg(&job).output()
    })
    .await
    .unwrap()
    .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let want =
        format!("error: job t: TLS handshake with {} failed: invalid peer certificate: UnknownIssuer", authority(&env));
    assert_eq!(t.lines().last(), Some(want.as_str()), "{t}");
    // Refused at once, not retried. (The only other line is the platform verifier's own log of the same
    // failure, at its ERROR level.)
    assert!(!t.contains("retrying"), "{t}");
    assert!(env.sandbox.requests().is_empty(), "no request got through");
    assert!(!env.inflight().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused_with_exit_1() {
    let ca = TestCa::new("oneup-bulk test CA").unwrap();
    let env = https_env(&ca, ca.issue(&["localhost"]).unwrap()).await;
    let (code, msg) = run_err(&env, &env.yaml("t", EXPORT, CA_FILE)).await;
    assert_eq!(code, 1);
    assert_eq!(
        msg,
        format!(
            "TLS handshake with {} failed: invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"localhost\")",
            authority(&env)
        )
    );
    assert!(env.sandbox.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_with_exit_1() {
    let ca = TestCa::new("oneup-bulk test CA").unwrap();
    let now = OffsetDateTime::now_utc();
    let expired = ca.issue_valid(&["127.0.0.1"], now - Duration::days(30), now - Duration::days(2)).unwrap();
    let env = https_env(&ca, expired).await;
    let (code, msg) = run_err(&env, &env.yaml("t", EXPORT, CA_FILE)).await;
    assert_eq!(code, 1);
    // rustls names the times; they change from run to run, the rest does not.
    let prefix =
        format!("TLS handshake with {} failed: invalid peer certificate: certificate expired: ", authority(&env));
    let rest = msg.strip_prefix(&prefix).unwrap_or_else(|| panic!("{msg}"));
    let shape: String = rest.chars().filter(|c| !c.is_ascii_digit()).collect();
    assert_eq!(shape, "verification time  (UNIX), but certificate is not valid after  ( seconds ago)", "{msg}");
    assert!(env.sandbox.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_status_url_from_an_https_server_is_refused() {
    let ca = TestCa::new("oneup-bulk test CA").unwrap();
    let env = https_env(&ca, ca.issue(&["127.0.0.1"]).unwrap()).await;
    let plain = "http://example.invalid/fhir/$export-status/1";
    env.sandbox.faults().update(|f| f.content_location = Some(plain.into()));
    let (code, msg) = run_err(&env, &env.yaml("t", EXPORT, CA_FILE)).await;
    assert_eq!(code, 4);
    assert_eq!(
        msg,
        format!(
            "the server rejected the export: {plain} uses plain http to a remote host; use https (http is only allowed to 127.0.0.1/localhost)"
        )
    );
    // Refused on sight: nothing after the kick-off (the URL's host would not resolve anyway).
    let last = env.sandbox.requests().pop().unwrap();
    assert!(last.path.starts_with("/fhir/$export?"), "{}", last.path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_token_url_from_https_discovery_is_refused() {
    let ca = TestCa::new("oneup-bulk test CA").unwrap();
    let env = https_env(&ca, ca.issue(&["127.0.0.1"]).unwrap()).await;
    let plain = "http://example.invalid/auth/token";
    env.sandbox.faults().update(|f| f.discovery_token_endpoint = Some(plain.into()));
    let yaml = env.yaml("t", EXPORT, CA_FILE).replace(&format!("  token_url: {}\n", env.sandbox.token_url()), "");
    let (code, msg) = run_err(&env, &yaml).await;
    assert_eq!(code, 2);
    assert_eq!(
        msg,
        format!(
            "no auth.token_url in the job, and discovery found none ({plain} uses plain http to a remote host; use https (http is only allowed to 127.0.0.1/localhost)); add `token_url:` under `auth:`"
        )
    );
    let paths: Vec<String> = env.sandbox.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/fhir/.well-known/smart-configuration"], "no token request anywhere");
}
