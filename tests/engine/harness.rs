//! Shared setup: a sandbox with chosen switches, a job file pointing at it with fast poll intervals, and
//! helpers to run the library or the real binary against it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use oneup_bulk::app::{RunOptions, RunOutcome, run_job};
use oneup_bulk::job::{self, Job};
use oneup_bulk::progress::Silent;
use oneup_bulk::record::RunRecord;
use oneup_bulk::sandbox::{RetryAfterStyle, Sandbox, SandboxConfig};

pub use crate::support::{sha256_hex, stderr, stdout};

pub const CLIENT_ID: &str = "demo-client";
pub const SECRET: &str = "demo-secret-not-real";

pub struct Env {
    pub sandbox: Sandbox,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub async fn new(cfg: SandboxConfig) -> Env {
        let sandbox = Sandbox::start(cfg).await.expect("sandbox starts");
        Env { sandbox, dir: tempfile::tempdir().expect("tempdir") }
    }

    pub async fn default() -> Env {
        Env::new(SandboxConfig::default()).await
    }

    /// A sandbox whose exports stay in progress for `polls` status checks, each answered at once.
    pub async fn long_export(polls: u32) -> Env {
        Env::new(SandboxConfig {
            polls_before_ready: polls,
            retry_after: RetryAfterStyle::Seconds(0),
            ..Default::default()
        })
        .await
    }

    /// The state file of job `t` that says an export is in flight.
    pub fn inflight(&self) -> PathBuf {
        self.out().join("t/.state/inflight.json")
    }

    /// Waits (bounded) until job `t` has an export in flight.
    pub async fn wait_in_flight(&self) {
        let p = self.inflight();
        wait_until("the export to be in flight", || p.exists()).await;
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("exports")
    }

    /// A job file for this sandbox; `export` and `extra` are YAML blocks spliced in.
    pub fn yaml(&self, name: &str, export: &str, extra: &str) -> String {
        format!(
            "name: {name}\naccess: bulk-data\nfhir_base: {base}\nauth:\n  client_id: {CLIENT_ID}\n  client_secret: ${{TEST_SECRET}}\n  token_url: {token}\nexport:\n{export}\npoll:\n  min_interval: 10ms\n  max_interval: 50ms\n  timeout: 30s\ndownload:\n  dir: {out}\n  retries: 3\n{extra}",
            base = self.sandbox.fhir_base(),
            token = self.sandbox.token_url(),
            out = self.out().display(),
        )
    }

    pub fn job_from(&self, yaml: &str) -> Job {
        job::parse(yaml, "test.yaml", self.dir.path(), &|v| (v == "TEST_SECRET").then(|| SECRET.to_string()))
            .unwrap_or_else(|e| panic!("job parses:\n{e}\n---\n{yaml}"))
    }

    pub fn job(&self, export: &str) -> Job {
        self.job_from(&self.yaml("t", export, ""))
    }

    pub async fn run(&self, job: &Job) -> oneup_bulk::Result<RunOutcome> {
        run_job(job, &RunOptions::default(), Arc::new(Silent)).await
    }

    /// Writes a job file into the temp dir (for the real binary to run).
    pub fn write_job(&self, file: &str, yaml: &str) -> PathBuf {
        crate::support::write_file(self.dir.path(), file, yaml)
    }

    /// The last complete run of job `t`, read back from disk (as `exit_code` 0: the code is not kept).
    pub fn latest_run(&self) -> RunOutcome {
        let run_dir = self.out().join("t/latest");
        RunOutcome { record: read_record(&run_dir), run_dir, exit_code: 0 }
    }

    /// How many times the status URL was polled (GET; a DELETE is not a poll).
    pub fn status_gets(&self) -> usize {
        self.sandbox.requests().iter().filter(|r| r.method == "GET" && r.path.contains("$export-status")).count()
    }
}

/// The binary, as an installed one is run: its folder first on `PATH` and no `CARGO`, so the commands
/// its hints print start with `oneup-bulk` (what the library says when used in-process).
pub fn bin() -> std::process::Command {
    let exe = Path::new(env!("CARGO_BIN_EXE_oneup-bulk"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path =
        std::env::join_paths(exe.parent().into_iter().map(Path::to_path_buf).chain(std::env::split_paths(&path)))
            .expect("PATH");
    let mut c = std::process::Command::new(exe);
    c.env("TEST_SECRET", SECRET).env_remove("RUST_LOG").env_remove("CARGO").env("PATH", path);
    c
}

/// Runs the binary off the async runtime (the sandbox lives on it) and returns its output.
pub async fn run_bin(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || bin().args(args).output().expect("binary runs")).await.unwrap()
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file and folder under `root`, for permission and content sweeps.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p.clone());
            }
            if !ft.is_symlink() {
                out.push(p);
            }
        }
    }
    out
}

/// `run.json` of the run folder `run_dir`, read back from disk.
pub fn read_record(run_dir: &Path) -> RunRecord {
    let p = run_dir.join("run.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A token straight from the sandbox, to fetch files as the server sent them.
pub async fn token(env: &Env) -> String {
    token_with(&reqwest::Client::new(), env).await
}

/// [`token`] through `client` (one that trusts the sandbox's test CA, say).
pub async fn token_with(client: &reqwest::Client, env: &Env) -> String {
    let resp = client
        .post(env.sandbox.token_url())
        .form(&[("grant_type", "client_credentials"), ("client_id", CLIENT_ID), ("client_secret", SECRET)])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "token: {}", resp.status());
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// The bytes the server serves at `url` (following its redirects, with a token when it wants one).
pub async fn server_bytes(env: &Env, url: &str) -> Vec<u8> {
    let t = token(env).await;
    let c = reqwest::Client::new();
    let r = c.get(url).bearer_auth(&t).send().await.unwrap();
    let r = if r.status().as_u16() == 400 { c.get(url).send().await.unwrap() } else { r };
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.bytes().await.unwrap().to_vec()
}

/// Checks every output file of a run against the server: same bytes, the recorded sha256 and count,
/// owner-only permissions. Returns the number of files checked.
pub async fn assert_run_matches_server(env: &Env, out: &RunOutcome) -> usize {
    // Every manifest page (manifest.json, manifest.002.json, …) counts.
    let mut listed = 0;
    for page in 1.. {
        let name = if page == 1 { "manifest.json".to_string() } else { format!("manifest.{page:03}.json") };
        let Ok(bytes) = std::fs::read(out.run_dir.join(name)) else { break };
        let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        listed += ["output", "error", "deleted"].iter().map(|k| m[*k].as_array().map_or(0, |a| a.len())).sum::<usize>();
    }
    let mut n = 0;
    for f in &out.record.files {
        let local = std::fs::read(out.run_dir.join(&f.path)).unwrap();
        let remote = server_bytes(env, &f.url).await;
        assert_eq!(local.len(), remote.len(), "{}", f.path);
        assert!(local == remote, "{} differs from what the server sent", f.path);
        assert_eq!(f.sha256, sha256_hex(&local), "{}", f.path);
        let lines = local.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64;
        assert_eq!(f.lines, lines, "{}", f.path);
        if let Some(c) = f.expected_count {
            assert_eq!(c, lines);
        }
        assert_eq!(mode(&out.run_dir.join(&f.path)), 0o600, "{}", f.path);
        n += 1;
    }
    assert_eq!(n, listed);
    assert_eq!(mode(&out.run_dir), 0o700);
    for p in walk(&out.run_dir) {
        let m = mode(&p);
        assert!(m == 0o600 || m == 0o700, "{} has mode {m:o}", p.display());
    }
    n
}

/// Waits (bounded: 10 s) until `cond` holds.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Says on the terminal that `test` did not run, and why (a test that cannot run here must not pass
/// silently). Straight to stderr: the test harness captures `eprintln!` of passing tests.
pub fn skipped(test: &str, why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}
