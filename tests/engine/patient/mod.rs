//! Patient Access (issue 14) through the binary, against the sandbox playing the health plan:
//! `authorize` (loopback redirect and `--paste`), `run` with the saved refresh token, resume, faults.
//! The tests play the member's browser: they read the authorize address from `authorize`'s stdout,
//! open it at the plan (choosing the member with the sandbox's one-click `member=` link) and hand the
//! redirect back.

mod faults;
mod flow;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use base64::Engine as _;
use oneup_bulk::sandbox::{PlanConfig, SandboxConfig};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::harness::*;

pub const MEMBER: &str = "pt-3";

/// A sandbox for Patient Access tests: the plan's members, `page_size` resources per page.
pub async fn plan_env(page_size: usize, cfg: SandboxConfig) -> Env {
    Env::new(SandboxConfig { plan: PlanConfig { page_size, ..cfg.plan.clone() }, ..cfg }).await
}

/// A free loopback port for a redirect URI.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A patient-access job file for the sandbox's plan; `export` is spliced under `export:`.
pub fn job_yaml(env: &Env, name: &str, port: u16, export: &str) -> String {
    format!(
        "name: {name}\naccess: patient-access\nfhir_base: {base}\nauth:\n  client_id: {CLIENT_ID}\n  client_secret: ${{TEST_SECRET}}\n  authorize_url: {authorize}\n  token_url: {token}\n  redirect_uri: http://127.0.0.1:{port}/callback\nexport:\n  since: auto\n{export}poll:\n  min_interval: 10ms\n  max_interval: 50ms\ndownload:\n  dir: {out}\n  retries: 2\n",
        base = env.sandbox.fhir_base(),
        authorize = env.sandbox.plan_authorize_url(),
        token = env.sandbox.plan_token_url(),
        out = env.out().display(),
    )
}

/// How the test hands the plan's redirect back to `authorize`.
pub enum Back {
    /// The browser follows the redirect to the job's loopback redirect URI.
    Loopback,
    /// The redirected address is pasted on stdin (`--paste`), after `edit`.
    Paste(fn(String) -> String),
}

/// What an `authorize` run printed, and the redirect the browser saw (it carries the code).
pub struct Authorized {
    pub out: Output,
    pub redirect: String,
}

/// Runs `oneup-bulk authorize [extra] JOB` as `member` logs in.
pub async fn authorize(job: &Path, member: &str, back: Back, extra: &[&str]) -> Authorized {
    let mut cmd = bin();
    cmd.arg("authorize").args(extra).arg(job);
    if matches!(back, Back::Paste(_)) {
        cmd.arg("--paste");
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        stderr.read_to_end(&mut s).unwrap();
        s
    });
    let stdout = child.stdout.take().unwrap();
    // The address is the first stdout line; the rest is read once the command ends.
    let (first, mut rest) = tokio::task::spawn_blocking(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        (line, r)
    })
    .await
    .unwrap();
    let url = first.trim().to_string();
    let redirect = if url.starts_with("http") {
        let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = browser.get(format!("{url}&member={member}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 302, "the plan approves at once");
        let to = r.headers()["location"].to_str().unwrap().to_string();
        match back {
            Back::Loopback => {
                let page = browser.get(&to).send().await.unwrap();
                assert_eq!(page.status().as_u16(), 200);
                assert!(page.text().await.unwrap().contains("You can close this tab"));
            }
            Back::Paste(edit) => {
                let mut stdin = child.stdin.take().unwrap();
                writeln!(stdin, "{}", edit(to.clone())).unwrap();
            }
        }
        to
    } else {
        String::new()
    };
    let out = tokio::task::spawn_blocking(move || {
        let mut stdout = first.into_bytes();
        rest.read_to_end(&mut stdout).unwrap();
        let status = child.wait().unwrap();
        Output { status, stdout, stderr: err.join().unwrap() }
    })
    .await
    .unwrap();
    Authorized { out, redirect }
}

/// `authorize --paste` as `member`; panics unless it succeeds.
pub async fn connect(job: &Path, member: &str) -> Authorized {
    let a = authorize(job, member, Back::Paste(|s| s), &[]).await;
    assert_eq!(a.out.status.code(), Some(0), "{}", text(&a.out));
    a
}

pub async fn run(job: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run".to_string(), job.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    run_bin(args).await
}

#[derive(Deserialize)]
struct Bundle {
    #[serde(default)]
    link: Vec<serde_json::Value>,
    #[serde(default)]
    entry: Vec<EntryRaw>,
}

#[derive(Deserialize)]
struct EntryRaw {
    resource: Box<RawValue>,
}

/// The plan's own answer, read by the test with its own member token: every resource of `first`
/// and its next pages, by type, as the server wrote them.
pub async fn server_resources(env: &Env, member: &str, first: &str) -> BTreeMap<String, Vec<String>> {
    let token = member_token(env, member).await;
    let c = reqwest::Client::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut next = Some(env.sandbox.fhir_base().join(first).unwrap().to_string());
    while let Some(u) = next.take() {
        let body = c.get(&u).bearer_auth(&token).send().await.unwrap().bytes().await.unwrap();
        let b: Bundle = serde_json::from_slice(&body).unwrap();
        for e in b.entry {
            let t: serde_json::Value = serde_json::from_str(e.resource.get()).unwrap();
            out.entry(t["resourceType"].as_str().unwrap().to_string()).or_default().push(e.resource.get().to_string());
        }
        next = b.link.iter().find(|l| l["relation"] == "next").and_then(|l| l["url"].as_str()).map(str::to_string);
    }
    out
}

/// A member access token, by the authorization-code flow with PKCE, done by hand.
pub async fn member_token(env: &Env, member: &str) -> String {
    let verifier = "test-verifier-0123456789-0123456789-0123456789";
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    let mut u = env.sandbox.plan_authorize_url();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", "http://127.0.0.1:1/cb")
        .append_pair("state", "s")
        .append_pair("aud", env.sandbox.fhir_base().as_str())
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("member", member);
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = c.get(u).send().await.unwrap();
    let to = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = to.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", "http://127.0.0.1:1/cb"),
        ("code_verifier", verifier),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
    ];
    let body = c.post(env.sandbox.plan_token_url()).form(&form).send().await.unwrap().bytes().await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// A run folder's output files, by type: each line as on disk.
pub fn run_resources(run_dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(run_dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(t) = name.strip_suffix(".ndjson") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            out.insert(t.to_string(), text.lines().map(str::to_string).collect());
        }
    }
    out
}

/// The run folder `latest` points at, and its run.json.
pub fn latest(env: &Env, job: &str) -> (PathBuf, serde_json::Value) {
    let dir = env.out().join(job).join("latest");
    let dir = env.out().join(job).join(std::fs::read_link(&dir).unwrap());
    let rec = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    (dir, rec)
}

/// The saved connection's fields.
pub fn connection(env: &Env, job: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(env.out().join(job).join(".state/connection.json")).unwrap()).unwrap()
}

/// Requests to the plan's FHIR reads (paths), in order.
pub fn reads(env: &Env) -> Vec<String> {
    env.sandbox
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/fhir/") && r.header("authorization").is_some())
        .map(|r| r.path)
        .collect()
}

/// Bodies of the refresh-token grants the plan received.
pub fn refresh_grants(env: &Env) -> usize {
    env.sandbox
        .requests()
        .iter()
        .filter(|r| r.path == "/oauth2/token" && String::from_utf8_lossy(&r.body).contains("grant_type=refresh_token"))
        .count()
}
