//! `az://` against a real Azure Blob Storage emulator: Azurite's blob service (`azurite-blob`, from npm)
//! on 127.0.0.1, one per test, on a free port with a temporary `--location`, killed on drop. The binary
//! under test reaches it through the standard `AZURE_*` variables (the emulator switch, or an endpoint
//! with plain http allowed); the tests read the container with the same `object_store` client.
//!
//! Finding Azurite: `ONEUP_BULK_TEST_AZURITE` names the `azurite-blob` binary, else the cache `.ci/run`
//! installs it in (`${XDG_CACHE_HOME:-~/.cache}/oneup-bulk/azurite`), else `PATH`. Without it the tests
//! say SKIPPED on the terminal — and in CI (`CI` set) they fail instead.
//!
//! Azurite has no anonymous container creation, so the few calls object_store does not make (create a
//! container, list blobs that have only uncommitted blocks) are signed here with the emulator's
//! well-known Shared Key.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oneup_bulk::sandbox::{BadLine, Faults, SandboxConfig};
use oneup_bulk::store::{Expect, Location, ObjectDir};

use crate::harness::*;
use crate::store::whole_export_lands;
use crate::store::{EXPORT, Remote, assert_bucket_matches_server, cmd, done_or_5, job_file, run, tmp};
use crate::store::{
    lease_doc, only_verified_files_have_final_names, rerun_takes_over_with_one_kick_off, wait_lease_free,
};
use crate::store::{one_of_two_runs_refused, strict_failure_publishes_nothing, two_state_writers_cannot_both_win};

/// The emulator's well-known account and key (public, in Microsoft's documentation; not a secret, but
/// handled as one: it must not appear in any output).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const API_VERSION: &str = "2021-08-06";

/// One Azurite blob service, killed (and its folder removed) on drop.
pub struct Azurite {
    pub port: u16,
    child: Child,
    _location: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ONEUP_BULK_TEST_AZURITE") {
        return p.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
    let cached = cache.map(|c| c.join("oneup-bulk/azurite/node_modules/.bin/azurite-blob"));
    cached.filter(|p| p.exists()).unwrap_or_else(|| "azurite-blob".into())
}

fn start() -> Result<Azurite, String> {
    let bin = binary();
    let location = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut c = Command::new(&bin);
    c.args(["--blobHost", "127.0.0.1", "--blobPort", "0", "--disableTelemetry", "--silent", "--location"])
        .arg(location.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Gone with this test's thread however the test process ends (a killed `cargo test` included).
    // SAFETY: prctl is async-signal-safe and touches only the child's own settings.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = c.spawn().map_err(|e| format!("{}: {e} (npm install azurite@3.37.0)", bin.display()))?;
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    // Reads the address it listens on, then keeps draining its output so it never blocks on a pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(port) = line.rsplit_once("listens on http://127.0.0.1:").and_then(|(_, p)| p.parse().ok()) {
                let _ = tx.send(port);
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(port) => Ok(Azurite { port, child, _location: location }),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("{} did not start listening within 60 s", bin.display()))
        }
    }
}

/// A fresh Azurite for `test`, or `None` (having said SKIPPED) when it cannot run here.
pub fn azurite(test: &str) -> Option<Azurite> {
    match start() {
        Ok(a) => Some(a),
        Err(why) if std::env::var_os("CI").is_some() => panic!("CI needs the Azure emulator: {why}"),
        Err(why) => {
            skipped(test, &format!("no Azure emulator: {why}"));
            None
        }
    }
}

/// How the binary is pointed at the emulator.
#[derive(Clone, Copy)]
pub enum Reach {
    /// `AZURE_STORAGE_USE_EMULATOR=true` and `AZURITE_BLOB_STORAGE_URL`.
    Emulator,
    /// `AZURE_STORAGE_ENDPOINT` (the account's URL) and `AZURE_ALLOW_HTTP=true`, as for any account.
    Endpoint,
}

/// A container on the emulator.
pub struct Container {
    pub name: String,
    pub endpoint: String,
    pub reach: Reach,
}

impl Azurite {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new container, created with a signed Create Container request. Its name is unique in the test
    /// process although each test has its own emulator: a bucket job's local scratch folder is named
    /// after its URL, which does not say which emulator it is on.
    pub async fn container(&self, reach: Reach) -> Container {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let c = Container { name, endpoint: self.endpoint(), reach };
        let r = c.signed(reqwest::Method::PUT, &[("restype", "container")]).await;
        assert_eq!(r.status(), 201, "creating the container: {}", r.text().await.unwrap());
        c
    }
}

impl Container {
    /// A Shared Key signed request to the container (no body, no conditional headers).
    async fn signed(&self, method: reqwest::Method, query: &[(&str, &str)]) -> reqwest::Response {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let path = format!("/{ACCOUNT}/{}", self.name);
        let mut sorted = query.to_vec();
        sorted.sort();
        let canonical_query: String = sorted.iter().map(|(k, v)| format!("\n{k}:{v}")).collect();
        let to_sign = format!(
            "{method}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n/{ACCOUNT}{path}{canonical_query}"
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &STANDARD.decode(KEY).unwrap());
        let signature = STANDARD.encode(aws_lc_rs::hmac::sign(&key, to_sign.as_bytes()));
        let query_string: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        reqwest::Client::new()
            .request(method, format!("{}{path}?{}", self.endpoint, query_string.join("&")))
            .header("x-ms-date", date)
            .header("x-ms-version", API_VERSION)
            .header("authorization", format!("SharedKey {ACCOUNT}:{signature}"))
            .header("content-length", "0")
            .send()
            .await
            .unwrap()
    }

    async fn blob_names(&self, include_uncommitted: bool) -> Vec<String> {
        let mut q = vec![("restype", "container"), ("comp", "list")];
        if include_uncommitted {
            q.push(("include", "uncommittedblobs"));
        }
        let r = self.signed(reqwest::Method::GET, &q).await;
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        body.split("<Name>").skip(1).filter_map(|s| s.split_once("</Name>")).map(|(n, _)| n.to_string()).collect()
    }

    /// Blobs that have uncommitted blocks and no committed content: Azure's open "multipart uploads".
    /// (Azure cannot abort them; a later block list for the same blob drops them, else they expire.)
    pub async fn uncommitted(&self) -> Vec<String> {
        let committed = self.blob_names(false).await;
        let mut open = self.blob_names(true).await;
        open.retain(|n| !committed.contains(n));
        open
    }
}

impl Remote for Container {
    fn url(&self) -> String {
        format!("az://{}/exports", self.name)
    }

    fn dir(&self, rel: &str) -> ObjectDir {
        let Location::Object(u) = Location::parse(&self.url()).unwrap() else { unreachable!() };
        let account_url = format!("{}/{ACCOUNT}", self.endpoint);
        let config = [
            ("azure_storage_endpoint", account_url.as_str()),
            ("azure_allow_http", "true"),
            ("azure_storage_account_name", ACCOUNT),
            ("azure_storage_account_key", KEY),
        ];
        ObjectDir::open_with(&u.join(rel), &config).unwrap()
    }

    fn env(&self, c: &mut Command) {
        for (k, _) in std::env::vars_os() {
            let k2 = k.to_string_lossy();
            if k2.starts_with("AZURE_") || k2.starts_with("AZURITE_") || k2.starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.env("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT).env("AZURE_STORAGE_ACCOUNT_KEY", KEY);
        match self.reach {
            Reach::Emulator => {
                c.env("AZURE_STORAGE_USE_EMULATOR", "true").env("AZURITE_BLOB_STORAGE_URL", &self.endpoint)
            }
            Reach::Endpoint => {
                c.env("AZURE_STORAGE_ENDPOINT", format!("{}/{ACCOUNT}", self.endpoint)).env("AZURE_ALLOW_HTTP", "true")
            }
        };
    }
}

/// Every key in the container, and every object's bytes, without the emulator's key; the run's and
/// inspect's output too.
async fn assert_no_key_anywhere(c: &Container, outputs: &str) {
    let mut everything = outputs.to_string();
    for k in c.keys().await {
        everything.push_str(&String::from_utf8_lossy(&c.get(&k).await.unwrap()));
    }
    for secret in [KEY, SECRET] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_a_whole_export_lands_in_the_container_with_its_record_and_latest() {
    let Some(az) = azurite("azure_a_whole_export_lands_in_the_container") else { return };
    let c = az.container(Reach::Emulator).await;
    let outputs = whole_export_lands(&c).await;
    assert_eq!(c.uncommitted().await, Vec::<String>::new(), "no blob left with only uncommitted blocks");
    assert_no_key_anywhere(&c, &outputs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_strict_failure_leaves_no_blob_under_a_final_name() {
    let Some(az) = azurite("azure_strict_failure_leaves_no_blob_under_a_final_name") else { return };
    let faults = Faults { bad_line: Some(BadLine::NotJson), ..Default::default() };
    let env = Env::new(SandboxConfig { faults, ..Default::default() }).await;
    strict_failure_publishes_nothing(&env, &az.container(Reach::Endpoint).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_conditional_puts_are_honoured() {
    let Some(az) = azurite("azure_conditional_puts_are_honoured") else { return };
    let c = az.container(Reach::Endpoint).await;
    // Azurite answers If-None-Match: * on an existing blob, and a stale If-Match, with 409/412.
    let d = c.dir("probe");
    let conflict = format!(
        "{}/probe/x was changed by another run of this job; this run stops without writing more state",
        c.url()
    );
    let v1 = d.put_if("x", "one".into(), &Expect::Absent).await.unwrap();
    let again = d.put_if("x", "two".into(), &Expect::Absent).await.unwrap_err();
    assert_eq!((again.exit_code(), again.to_string()), (75, conflict.clone()));
    let v2 = d.put_if("x", "three".into(), &Expect::Version(v1.clone())).await.unwrap();
    assert_ne!(v1.e_tag, v2.e_tag);
    let stale = d.put_if("x", "four".into(), &Expect::Version(v1)).await.unwrap_err();
    assert_eq!((stale.exit_code(), stale.to_string()), (75, conflict));
    assert_eq!(d.get("x").await.unwrap().map(|(b, v)| (b, v.e_tag)), Some(("three".into(), v2.e_tag)));
    // And through the state's own calls.
    two_state_writers_cannot_both_win(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_two_runs_at_once_one_refused_by_the_lease() {
    let Some(az) = azurite("azure_two_runs_at_once_one_refused_by_the_lease") else { return };
    let env = Env::long_export(100).await;
    one_of_two_runs_refused(&env, &az.container(Reach::Emulator).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_a_stale_lease_is_taken_over() {
    let Some(az) = azurite("azure_a_stale_lease_is_taken_over") else { return };
    let env = Env::default().await;
    let c = az.container(Reach::Emulator).await;
    let job = job_file(&env, &c, EXPORT, "");
    c.dir("t/.state").put("lease", lease_doc("2026-01-01T00:00:00Z", "node-gone").into()).await.unwrap();
    let o = run(&c, tmp().path(), &["run", job.to_str().unwrap()]).await;
    done_or_5(&o);
    let took = "took over the job's lease from a run that stopped renewing it (pid 4242 on node-gone since ";
    assert!(text(&o).contains(took), "{}", text(&o));
    assert_bucket_matches_server(&env, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_killed_mid_upload_then_rerun_completes_with_one_kick_off() {
    let Some(az) = azurite("azure_killed_mid_upload_then_rerun") else { return };
    // EOB over one block (8 MiB), slowly: the kill lands with a block of it staged.
    let env = Env::new(SandboxConfig {
        data_scale: 300,
        faults: Faults { file_bytes_per_sec: Some(4_000_000), ..Default::default() },
        ..Default::default()
    })
    .await;
    let c = az.container(Reach::Emulator).await;
    let job = job_file(&env, &c, EXPORT, "  concurrency: 1\n");
    let first_cwd = tmp();
    let mut first = cmd(&c, first_cwd.path(), &["run", "-q", job.to_str().unwrap()]);
    let mut child = first.env("ONEUP_BULK_LEASE_TTL", "3s").spawn().unwrap();
    let state = c.dir("t/.state");
    // Killed once the EOB file (the last; the others are verified by then) has a block staged but not
    // committed.
    let mut staged = Vec::new();
    for _ in 0..1200 {
        staged = c.uncommitted().await;
        if staged.iter().any(|n| n.ends_with("/ExplanationOfBenefit.ndjson")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(staged.len(), 1, "the killed run left one blob of uncommitted blocks");
    assert_eq!(state.list("uploads").await.unwrap().len(), 1, "and its upload marker");
    let before = only_verified_files_have_final_names(&c).await;
    env.sandbox.faults().clear();
    wait_lease_free(&c).await;
    let o = rerun_takes_over_with_one_kick_off(&env, &c, &job, &before).await;
    // Azure cannot abort staged blocks; committing the rerun's block list for that blob dropped them.
    assert_eq!(c.uncommitted().await, Vec::<String>::new());
    assert!(state.list("uploads").await.unwrap().is_empty());
    assert_no_key_anywhere(&c, &text(&o)).await;
}
