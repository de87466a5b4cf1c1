//! `cargo run --release --bin bench_store -- [--scale N] [--rounds R] [--validate strict|off]`
//!
//! The same export written to local disk and to a local S3 server, in alternation, in one run: median
//! wall time, CPU time (user + sys) and peak RSS of `oneup-bulk run` (from `/usr/bin/time`), MB/s, and
//! the S3/disk ratio. The S3 server is moto's (`tests/s3/serve.py`, `pip install "moto[server]"`;
//! `ONEUP_BULK_TEST_PYTHON` names the interpreter), on 127.0.0.1; its own CPU time is reported too,
//! since it shares the machine's cores. Not part of `cargo test`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use oneup_bulk::sandbox::{RetryAfterStyle, Sandbox, SandboxConfig};
use oneup_bulk::store::{Location, ObjectDir};

const KEY: &str = "AKIAFAKEFORBENCH0001";
const SECRET: &str = "fake-secret-for-the-benchmark-not-real";

struct Sample {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
}

/// Runs `cmd` under `/usr/bin/time` and reads wall, user+sys and max RSS.
fn measure(cmd: Command) -> Sample {
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new("/usr/bin/time");
    timed.arg("-o").arg(report.path()).arg("-f").arg("%e %U %S %M").arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let out = timed.output().expect("/usr/bin/time runs (apt-get install time)");
    let ok = out.status.success() || out.status.code() == Some(5);
    assert!(ok, "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(report.path()).unwrap();
    let f: Vec<f64> = text.lines().last().unwrap().split_whitespace().map(|x| x.parse().unwrap()).collect();
    Sample { wall: f[0], cpu: f[1] + f[2], rss_mib: f[3] / 1024.0 }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// user + sys seconds a process has used so far (Linux `/proc/<pid>/stat`, 100 ticks a second).
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, r)| r.split(' ').collect()).unwrap_or_default();
    let tick = |i: usize| fields.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn job_yaml(sb: &Sandbox, dir: &str, validate: &str) -> String {
    format!(
        "name: bench\naccess: bulk-data\nfhir_base: {}\nauth:\n  client_id: demo-client\n  client_secret: demo-secret-not-real\n  token_url: {}\nexport:\n  level: system\npoll:\n  min_interval: 10ms\n  max_interval: 100ms\ndownload:\n  dir: {dir}\n  validate: {validate}\n",
        sb.fhir_base(),
        sb.token_url(),
    )
}

#[tokio::main]
async fn main() {
    let (mut scale, mut rounds, mut validate) = (9000u32, 3usize, "strict".to_string());
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--scale" => scale = v.parse().expect("--scale N"),
            "--rounds" => rounds = v.parse().expect("--rounds R"),
            "--validate" => validate = v,
            other => panic!("unknown argument {other}; see the doc comment of src/bin/bench_store.rs"),
        }
    }
    let bin: PathBuf = std::env::current_exe().unwrap().with_file_name("oneup-bulk");
    let sb = Sandbox::start(SandboxConfig {
        data_scale: scale,
        files_per_type: 4,
        polls_before_ready: 0,
        retry_after: RetryAfterStyle::None,
        ..Default::default()
    })
    .await
    .expect("sandbox");
    let python = std::env::var("ONEUP_BULK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3/serve.py");
    let mut moto = Command::new(&python).arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(moto.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let endpoint = format!("http://127.0.0.1:{}", line.trim().strip_prefix("PORT ").expect("moto started"));
    reqwest::Client::new().put(format!("{endpoint}/bench")).send().await.unwrap().error_for_status().unwrap();
    let Location::Object(url) = Location::parse("s3://bench").unwrap() else { unreachable!() };
    let cfg = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", KEY),
        ("aws_secret_access_key", SECRET),
        ("aws_region", "us-east-1"),
    ];
    let bucket = ObjectDir::open_with(&url, &cfg).unwrap();
    let work = tempfile::tempdir().unwrap();
    let run = |dir: String, tag: &str| {
        let job = work.path().join(format!("{tag}.yaml"));
        std::fs::write(&job, job_yaml(&sb, &dir, &validate)).unwrap();
        let mut c = Command::new(&bin);
        c.arg("run").arg("-q").arg(job).current_dir(work.path());
        c.env("AWS_ENDPOINT_URL", &endpoint).env("AWS_ALLOW_HTTP", "true").env("AWS_REGION", "us-east-1");
        c.env("AWS_ACCESS_KEY_ID", KEY).env("AWS_SECRET_ACCESS_KEY", SECRET);
        c
    };
    // Warm-up (the sandbox generates the export once and caches it), to disk.
    let warm = work.path().join("warm");
    measure(run(warm.display().to_string(), "warm"));
    let rec: oneup_bulk::record::RunRecord =
        serde_json::from_slice(&std::fs::read(warm.join("bench/latest/run.json")).unwrap()).unwrap();
    let bytes: u64 = rec.files.iter().map(|f| f.bytes).sum();
    println!("export: {} files, {:.1} MB; validate: {validate}; {rounds} rounds", rec.files.len(), bytes as f64 / 1e6);
    let _ = std::fs::remove_dir_all(&warm);
    let (mut disk, mut s3, mut moto_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let out = work.path().join(format!("disk{r}"));
        let c = run(out.display().to_string(), "disk");
        disk.push(tokio::task::spawn_blocking(move || measure(c)).await.unwrap());
        let _ = std::fs::remove_dir_all(&out);
        let before = cpu_of(moto.id());
        let c = run(format!("s3://bench/r{r}"), "s3");
        s3.push(tokio::task::spawn_blocking(move || measure(c)).await.unwrap());
        moto_cpu.push(cpu_of(moto.id()) - before);
        for (k, _) in bucket.list(&format!("r{r}")).await.unwrap() {
            bucket.delete(&k).await.unwrap();
        }
    }
    let disk_wall = median(disk.iter().map(|s| s.wall).collect());
    println!("\n| target | median wall s | × disk | median CPU s | peak RSS MiB | MB/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, samples) in [("local disk", &disk), ("S3 (moto on 127.0.0.1)", &s3)] {
        let wall = median(samples.iter().map(|s| s.wall).collect());
        let cpu = median(samples.iter().map(|s| s.cpu).collect());
        let rss = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
        let mbs = bytes as f64 / 1e6 / wall;
        println!("| {name} | {wall:.2} | {:.2} | {cpu:.2} | {rss:.1} | {mbs:.0} |", wall / disk_wall);
    }
    println!("\nthe S3 server's own CPU per run (median): {:.2} s", median(moto_cpu));
    let _ = moto.kill();
    let _ = moto.wait();
    sb.shutdown().await;
}
