//! Waiting and timeouts (issue 18): a server that accepts and never answers costs `timeouts.request`
//! per try at the token, kick-off and status stages, `timeouts.read_idle` for a download that stops
//! mid-body, `timeouts.connect` for a handshake that never completes, and every such error names the
//! stage, the host and the limit. Bounded: every limit here is a few hundred milliseconds.

use std::time::Duration;

use oneup_bulk::job::TimeoutSettings;
use oneup_bulk::sandbox::{Faults, FileCut, SandboxConfig};

use crate::harness::*;

const EXPORT: &str = "  level: system\n  types: [Patient, Coverage, ExplanationOfBenefit]\n";
const SHORT: &str = "timeouts:\n  connect: 2s\n  request: 200ms\n  read_idle: 300ms\n";

fn port(env: &Env) -> u16 {
    env.sandbox.fhir_base().port().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_costs_the_request_timeout_per_try() {
    for (pattern, stage) in
        [("/auth/token", "token request"), ("/fhir/$export?", "kick-off"), ("$export-status", "status")]
    {
        let env = Env::default().await;
        env.sandbox.faults().update(|f| f.hang_on = Some(pattern.into()));
        let job = env.job_from(&env.yaml("t", EXPORT, SHORT));
        let err = env.run(&job).await.unwrap_err();
        assert_eq!(err.exit_code(), 75, "{stage}: {err}");
        assert_eq!(
            err.to_string(),
            format!(
                "{stage}: gave up after 4 attempts: timed out after 200ms waiting for 127.0.0.1:{} to answer (timeouts.request)",
                port(&env)
            )
        );
        let tries = env.sandbox.requests().iter().filter(|r| r.path.replace("%24", "$").contains(pattern)).count();
        assert_eq!(tries, 4, "{stage}: one try and download.retries (3) more");
        // The server recovers: a status hang kept the export in flight, and the rerun resumes it.
        env.sandbox.faults().clear();
        let out = env.run(&job).await.expect("the rerun completes");
        assert_run_matches_server(&env, &out).await;
        assert_eq!(env.sandbox.kickoff_count(), 1, "{stage}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_stalls_mid_body_resumes_after_read_idle() {
    let stall = FileCut { pattern: "Patient".into(), bytes: 1000, times: 1 };
    let env = Env::new(SandboxConfig {
        faults: Faults { file_stall_after: Some(stall), ..Default::default() },
        ..Default::default()
    })
    .await;
    let out = env.run(&env.job_from(&env.yaml("t", EXPORT, SHORT))).await.expect("the stalled file is resumed");
    assert_run_matches_server(&env, &out).await;
    let ranged: Vec<_> = env.sandbox.requests().into_iter().filter(|r| r.header("range").is_some()).collect();
    assert_eq!(ranged.len(), 1, "one resume");
    assert_eq!(ranged[0].header("range"), Some("bytes=1000-"));
    assert!(ranged[0].path.contains("Patient"), "{}", ranged[0].path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_server_that_never_answers_names_the_file_host_and_read_idle() {
    let env = Env::default().await;
    env.sandbox.faults().update(|f| f.hang_on = Some("/files/".into()));
    let yaml = env.yaml("t", EXPORT, SHORT).replace("  retries: 3\n", "  retries: 1\n  concurrency: 1\n");
    let err = env.run(&env.job_from(&yaml)).await.unwrap_err();
    assert_eq!(err.exit_code(), 75, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "Patient.ndjson: gave up after 2 attempts: timed out after 300ms without data from 127.0.0.1:{} (timeouts.read_idle)",
            port(&env)
        )
    );
    assert!(env.inflight().exists(), "the state is kept for a resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_completes_costs_the_connect_timeout() {
    // Accepts TCP connections and says nothing: the TLS handshake waits for a ServerHello forever.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: t\naccess: bulk-data\nfhir_base: https://127.0.0.1:{port}/fhir/\nauth:\n  client_id: c\n  client_secret: ${{S}}\n  token_url: https://127.0.0.1:{port}/token\nexport:\n  level: system\npoll:\n  min_interval: 10ms\n  max_interval: 50ms\ndownload:\n  dir: {}\n  retries: 1\ntimeouts:\n  connect: 200ms\n  request: 30s\n",
        dir.path().display()
    );
    let job = oneup_bulk::job::parse(&yaml, "t.yaml", dir.path(), &|_| Some("not-a-secret".into())).unwrap();
    let err = oneup_bulk::app::run_job(&job, &Default::default(), std::sync::Arc::new(oneup_bulk::progress::Silent))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 75, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "token request: gave up after 2 attempts: timed out after 200ms connecting to 127.0.0.1:{port} (timeouts.connect)"
        )
    );
    accepted.abort();
}

#[test]
fn timeouts_are_job_keys_with_defaults() {
    let base = "name: t\naccess: bulk-data\nfhir_base: https://fhir.example/\nauth:\n  method: none\n";
    let parse = |extra: &str| {
        oneup_bulk::job::parse(&format!("{base}{extra}"), "jobs/t.yaml", std::path::Path::new("."), &|_| None)
    };
    assert_eq!(
        parse("").unwrap().timeouts,
        TimeoutSettings {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
            read_idle: Duration::from_secs(60)
        }
    );
    let t = parse("timeouts:\n  connect: 3s\n  request: 2m\n  read_idle: 10m\n").unwrap().timeouts;
    assert_eq!(
        (t.connect, t.request, t.read_idle),
        (Duration::from_secs(3), Duration::from_secs(120), Duration::from_secs(600))
    );
    let e = parse("timeouts:\n  request: 0s\n  idle: 5s\n").unwrap_err().to_string();
    assert_eq!(
        e,
        "error: unknown key `idle` in `timeouts`
 --> jobs/t.yaml:8:3
  |
8 |   idle: 5s
  |   ^
  = help: allowed here: connect, request, read_idle

error: timeouts.request must be more than 0
 --> jobs/t.yaml:7:12
  |
7 |   request: 0s
  |            ^
  = help: write e.g. 10s, 1m"
    );
}
