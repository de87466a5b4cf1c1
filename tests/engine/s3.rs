//! The S3 server for the object-storage tests: a real S3 HTTP API server process on 127.0.0.1 (moto's,
//! through `tests/s3/serve.py`), started once for the test binary and gone when it exits. Each test
//! gets its own bucket. The binary under test reaches it through the standard `AWS_*` variables; the
//! tests read the bucket with the same `object_store` client, configured explicitly.
//!
//! Without the server (no `python3` with `moto[server]`; `ONEUP_BULK_TEST_PYTHON` names another
//! interpreter), the tests say SKIPPED on the terminal — and in CI (`CI` set) they fail instead.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use oneup_bulk::store::{Location, ObjectDir, ObjectUrl};

/// Obviously fake credentials; moto accepts any.
pub const ACCESS_KEY: &str = "AKIAFAKEFORTESTS0001";
pub const SECRET_KEY: &str = "fake-secret-for-tests-not-real-0123456789";

pub struct S3 {
    pub port: u16,
    _child: Mutex<(Child, ChildStdin)>,
}

static SERVER: OnceLock<Result<S3, String>> = OnceLock::new();
static BUCKETS: AtomicU32 = AtomicU32::new(0);

fn start() -> Result<S3, String> {
    let python = std::env::var("ONEUP_BULK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3/serve.py");
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{python}: {e}"))?;
    let stdin = child.stdin.take().expect("piped stdin");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .map_err(|e| format!("{python} {script}: {e}"))?;
    let port = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok());
    match port {
        Some(port) => Ok(S3 { port, _child: Mutex::new((child, stdin)) }),
        None => {
            let _ = child.kill();
            Err(format!("{python} {script} did not start (is moto[server] installed? pip install \"moto[server]\")"))
        }
    }
}

/// The shared server, or `None` (having said SKIPPED) when it cannot run here.
pub fn server(test: &str) -> Option<&'static S3> {
    match SERVER.get_or_init(start) {
        Ok(s) => Some(s),
        Err(why) if std::env::var_os("CI").is_some() => panic!("CI needs the S3 test server: {why}"),
        Err(why) => {
            crate::harness::skipped(test, &format!("no S3 test server: {why}"));
            None
        }
    }
}

/// A fresh bucket on the server, and the prefix the job writes under.
pub struct Bucket {
    pub name: String,
    pub endpoint: String,
}

impl S3 {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn bucket(&self) -> Bucket {
        self.bucket_at(&self.endpoint()).await
    }

    /// A bucket, reached by the binary through `endpoint` (a proxy in front of the server, say).
    pub async fn bucket_at(&self, endpoint: &str) -> Bucket {
        let name = format!("t{}-{}", std::process::id(), BUCKETS.fetch_add(1, Ordering::Relaxed));
        let r = reqwest::Client::new().put(format!("{}/{name}", self.endpoint())).send().await.unwrap();
        assert!(r.status().is_success(), "creating bucket {name}: {}", r.status());
        Bucket { name, endpoint: endpoint.to_string() }
    }
}

impl Bucket {
    /// `download.dir` for the jobs.
    pub fn url(&self) -> String {
        format!("s3://{}/exports", self.name)
    }

    /// The bucket's prefix `rel` (under `exports/`), read with the real client.
    pub fn dir(&self, rel: &str) -> ObjectDir {
        let Location::Object(u) = Location::parse(&self.url()).unwrap() else { unreachable!() };
        let u: ObjectUrl = u.join(rel);
        let config = [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", ACCESS_KEY),
            ("aws_secret_access_key", SECRET_KEY),
            ("aws_region", "us-east-1"),
        ];
        ObjectDir::open_with(&u, &config).unwrap()
    }

    pub async fn get(&self, rel: &str) -> Option<Vec<u8>> {
        self.dir("").get(rel).await.unwrap().map(|(b, _)| b.to_vec())
    }

    /// Every key under `exports/`, relative to it.
    pub async fn keys(&self) -> Vec<String> {
        self.dir("").list("").await.unwrap().into_iter().map(|(k, _)| k).collect()
    }

    /// Multipart uploads the server still holds for the bucket (S3 ListMultipartUploads).
    pub async fn open_uploads(&self) -> usize {
        let body =
            reqwest::get(format!("{}/{}?uploads", self.endpoint, self.name)).await.unwrap().text().await.unwrap();
        body.matches("<UploadId>").count()
    }

    /// Sets the environment of a `oneup-bulk` command to reach this bucket, and nothing else of AWS.
    pub fn env(&self, c: &mut Command) {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "us-east-1");
    }
}

/// A TCP proxy in front of the server that plays a storage restart: once `cut_after` bytes have gone
/// to the server, every connection is dropped and new ones are refused for `down`, then it forwards
/// again (once). The server behind keeps its state, as a restarted persistent store would.
pub struct Proxy {
    pub port: u16,
    pub cuts: std::sync::Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn listen(port: u16) -> tokio::net::TcpListener {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.set_reuseaddr(true).unwrap();
    s.bind(([127, 0, 0, 1], port).into()).unwrap();
    s.listen(64).unwrap()
}

impl Proxy {
    pub async fn start(target: u16, cut_after: u64, down: std::time::Duration) -> Proxy {
        use std::sync::Arc;
        use std::sync::atomic::AtomicU64;
        let first = listen(0);
        let port = first.local_addr().unwrap().port();
        let cuts = Arc::new(AtomicU32::new(0));
        let cuts2 = cuts.clone();
        let task = tokio::spawn(async move {
            let sent = Arc::new(AtomicU64::new(0));
            let cut = Arc::new(tokio::sync::Notify::new());
            let mut listener = Some(first);
            loop {
                let l = match listener.take() {
                    Some(l) => l,
                    None => listen(port),
                };
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        a = l.accept() => {
                            let Ok((client, _)) = a else { continue };
                            let (sent, cut) = (sent.clone(), cut.clone());
                            let armed = cuts2.load(Ordering::SeqCst) == 0;
                            conns.spawn(forward(client, target, sent, cut, if armed { cut_after } else { u64::MAX }));
                        }
                        _ = cut.notified(), if cuts2.load(Ordering::SeqCst) == 0 => break,
                    }
                }
                cuts2.fetch_add(1, Ordering::SeqCst);
                conns.abort_all();
                drop(l);
                tokio::time::sleep(down).await;
            }
        });
        Proxy { port, cuts, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

async fn forward(
    mut client: tokio::net::TcpStream,
    target: u16,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    cut: std::sync::Arc<tokio::sync::Notify>,
    cut_after: u64,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
            if sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 >= cut_after {
                cut.notify_one();
            }
        }
    };
    let down = tokio::io::copy(&mut sr, &mut cw);
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}
