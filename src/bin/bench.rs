//! `cargo run --release --bin bench -- [--scale N] [--files-per-type K] [--rounds R] [--concurrency C]`
//!
//! Download speed and cost of `oneup-bulk run` next to `curl --parallel` fetching the same files from the
//! same in-process sandbox, in alternation, in one run: median wall time, CPU time, peak RSS, and the
//! ratios. Needs `curl` and `/usr/bin/time` (Debian packages `curl` and `time`). Not part of `cargo test`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oneup_bulk::sandbox::{RetryAfterStyle, Sandbox, SandboxConfig};

struct Args {
    scale: u32,
    files_per_type: u32,
    rounds: usize,
    concurrency: usize,
    bin: PathBuf,
}

fn args() -> Args {
    let mut a = Args { scale: 900, files_per_type: 4, rounds: 3, concurrency: 4, bin: default_bin() };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--scale" => a.scale = v().parse().expect("--scale N"),
            "--files-per-type" => a.files_per_type = v().parse().expect("--files-per-type K"),
            "--rounds" => a.rounds = v().parse().expect("--rounds R"),
            "--concurrency" => a.concurrency = v().parse().expect("--concurrency C"),
            "--bin" => a.bin = PathBuf::from(v()),
            other => panic!("unknown argument {other}; see the doc comment of src/bin/bench.rs"),
        }
    }
    a
}

/// The `oneup-bulk` binary next to this one (same profile).
fn default_bin() -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    me.with_file_name("oneup-bulk")
}

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
}

/// Runs a command under `/usr/bin/time` and reads wall, user+sys and max RSS.
fn measure(cmd: &mut Command) -> Sample {
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
    assert!(
        out.status.success() || out.status.code() == Some(5),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(report.path()).unwrap();
    let f: Vec<f64> = text
        .split_whitespace()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|x| x.parse().unwrap())
        .collect();
    Sample { wall: f[0], cpu: f[1] + f[2], rss_mib: f[3] / 1024.0 }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn job_yaml(sb: &Sandbox, dir: &Path, validate: &str, concurrency: usize) -> String {
    format!(
        "name: bench\naccess: bulk-data\nfhir_base: {}\nauth:\n  client_id: demo-client\n  client_secret: demo-secret-not-real\n  token_url: {}\nexport:\n  level: system\npoll:\n  min_interval: 10ms\n  max_interval: 100ms\ndownload:\n  dir: {}\n  concurrency: {concurrency}\n  validate: {validate}\n",
        sb.fhir_base(),
        sb.token_url(),
        dir.display()
    )
}

#[tokio::main]
async fn main() {
    let a = args();
    let sb = Sandbox::start(SandboxConfig {
        data_scale: a.scale,
        files_per_type: a.files_per_type,
        polls_before_ready: 0,
        retry_after: RetryAfterStyle::None,
        ..Default::default()
    })
    .await
    .expect("sandbox");
    let work = tempfile::tempdir().unwrap();
    // Warm-up: generates the export once (the sandbox caches identical exports) and gives the URLs.
    let warm = work.path().join("warm.yaml");
    std::fs::write(&warm, job_yaml(&sb, &work.path().join("warm"), "off", a.concurrency)).unwrap();
    let bin = a.bin.clone();
    let st = tokio::task::spawn_blocking(move || Command::new(&bin).arg("run").arg("-q").arg(&warm).status().unwrap())
        .await
        .unwrap();
    assert!(st.success() || st.code() == Some(5), "warm-up run failed");
    let run_json = std::fs::read_to_string(work.path().join("warm/bench/latest/run.json")).unwrap();
    let record: oneup_bulk::record::RunRecord = serde_json::from_str(&run_json).unwrap();
    let urls: Vec<String> = record.files.iter().map(|f| f.url.clone()).collect();
    let total_bytes: u64 = record.files.iter().map(|f| f.bytes).sum();
    let token = {
        let r = reqwest::Client::new()
            .post(sb.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "demo-client"),
                ("client_secret", "demo-secret-not-real"),
            ])
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        v["access_token"].as_str().unwrap().to_string()
    };
    println!(
        "export: {} files, {:.1} MB, {} resources; concurrency {}; {} rounds",
        urls.len(),
        total_bytes as f64 / 1e6,
        record.totals.resources,
        a.concurrency,
        a.rounds
    );

    let mut results: Vec<(&str, Vec<Sample>)> =
        vec![("oneup-bulk (strict)", vec![]), ("oneup-bulk (validate off)", vec![]), ("curl --parallel", vec![])];
    for round in 0..a.rounds {
        for (i, (_, samples)) in results.iter_mut().enumerate() {
            let out = work.path().join(format!("r{round}-{i}"));
            std::fs::create_dir_all(&out).unwrap();
            let mut cmd = if i < 2 {
                let job = work.path().join(format!("job-{round}-{i}.yaml"));
                std::fs::write(&job, job_yaml(&sb, &out, if i == 0 { "strict" } else { "off" }, a.concurrency))
                    .unwrap();
                let mut c = Command::new(&a.bin);
                c.arg("run").arg("-q").arg(job);
                c
            } else {
                let mut c = Command::new("curl");
                c.args(["--silent", "--fail", "--parallel", "--parallel-max", &a.concurrency.to_string()]);
                c.args(["-H", &format!("Authorization: Bearer {token}")]);
                for (n, u) in urls.iter().enumerate() {
                    c.arg("-o").arg(out.join(format!("{n}.ndjson"))).arg(u);
                }
                c
            };
            let s = tokio::task::spawn_blocking(move || measure(&mut cmd)).await.unwrap();
            samples.push(s);
            let _ = std::fs::remove_dir_all(&out);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let curl_wall = median(results[2].1.iter().map(|s| s.wall).collect());
    println!("\n| command | median wall s | × curl | median CPU s | peak RSS MiB | MB/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, samples) in &results {
        let wall = median(samples.iter().map(|s| s.wall).collect());
        let cpu = median(samples.iter().map(|s| s.cpu).collect());
        let rss = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
        println!(
            "| {name} | {wall:.2} | {:.2} | {cpu:.2} | {rss:.1} | {:.0} |",
            wall / curl_wall,
            total_bytes as f64 / 1e6 / wall
        );
    }
    sb.shutdown().await;
}
