//! Running one command under `/usr/bin/time` (wall, user + sys CPU, peak RSS), medians, and the
//! commands themselves: `oneup-bulk run`, `curl --parallel`, `smart-fetch bulk`, `oneup-bulk inspect`.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub wall: f64,
    pub cpu: f64,
    pub rss_mib: f64,
}

/// Runs `cmd` under `/usr/bin/time`; `Err` with its stderr's tail when it fails (exit 5, "finished
/// with problems the server reported", counts as success: the sandbox always reports one error).
pub fn measure(cmd: &Command) -> Result<Sample, String> {
    measure_ok(cmd, &[0, 5])
}

/// [`measure`], with the exit codes that count as success.
pub fn measure_ok(cmd: &Command, ok: &[i32]) -> Result<Sample, String> {
    let report = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let mut timed = Command::new("/usr/bin/time");
    timed.arg("-o").arg(report.path()).arg("-f").arg("%e %U %S %M").arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let out = timed.output().map_err(|e| format!("/usr/bin/time: {e} (apt-get install time)"))?;
    if !out.status.code().is_some_and(|c| ok.contains(&c)) {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        return Err(format!(
            "{} exited {:?}: {}",
            cmd.get_program().to_string_lossy(),
            out.status.code(),
            tail.join(" / ")
        ));
    }
    let text = std::fs::read_to_string(report.path()).map_err(|e| e.to_string())?;
    // The last line: anything before it is the command's own complaint.
    let f: Vec<f64> = text.lines().last().unwrap_or("").split_whitespace().filter_map(|x| x.parse().ok()).collect();
    match f[..] {
        [wall, user, sys, rss_kib] => Ok(Sample { wall, cpu: user + sys, rss_mib: rss_kib / 1024.0 }),
        _ => Err(format!("unexpected /usr/bin/time output {text:?}")),
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// Medians of wall and CPU, the highest peak RSS.
pub fn summary(samples: &[Sample]) -> Sample {
    Sample {
        wall: median(samples.iter().map(|s| s.wall).collect()),
        cpu: median(samples.iter().map(|s| s.cpu).collect()),
        rss_mib: samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max),
    }
}

pub fn on_path(program: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {program}")).output().is_ok_and(|o| o.status.success())
}

/// The job file of one `oneup-bulk run`.
pub fn job_yaml(
    fhir_base: &str,
    token_url: &str,
    dir: &Path,
    validate: &str,
    concurrency: usize,
    types: &[&str],
) -> String {
    let types = if types.is_empty() { String::new() } else { format!("  types: [{}]\n", types.join(", ")) };
    format!(
        "name: bench\naccess: bulk-data\nfhir_base: {fhir_base}\nauth:\n  client_id: demo-client\n  client_secret: demo-secret-not-real\n  token_url: {token_url}\nexport:\n  level: system\n{types}poll:\n  min_interval: 10ms\n  max_interval: 100ms\ndownload:\n  dir: {}\n  concurrency: {concurrency}\n  validate: {validate}\n",
        dir.display()
    )
}

pub fn oneup_run(bin: &Path, job: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("run").arg("-q").arg(job);
    c
}

/// `curl --parallel` writing each URL to its own file in `out`.
pub fn curl(urls: &[String], token: &str, concurrency: usize, out: &Path) -> Command {
    let mut c = Command::new("curl");
    c.args(["--silent", "--fail", "--parallel", "--parallel-max", &concurrency.to_string()]);
    c.args(["-H", &format!("Authorization: Bearer {token}")]);
    for (n, u) in urls.iter().enumerate() {
        c.arg("-o").arg(out.join(format!("{n}.ndjson"))).arg(u);
    }
    c
}

/// `smart-fetch bulk` with a bearer-token file; it kicks off its own export of `types`.
pub fn smart_fetch(fhir_base: &str, token_file: &Path, types: &[&str], out: &Path) -> Command {
    let mut c = Command::new("smart-fetch");
    c.arg("bulk").args(["--fhir-url", fhir_base.trim_end_matches('/')]).arg("--bearer-token").arg(token_file);
    c.args(["--type", &types.join(","), "--no-default-filters", "--no-compression"]).arg(out);
    c
}

pub fn inspect(bin: &Path, threads: usize, refs: bool, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("inspect").args(["--threads", &threads.to_string()]);
    if refs {
        c.arg("--check-references");
    }
    c.arg("--json").arg(dir);
    c
}

/// A copy of a run folder's NDJSON as hard links, without `run.json` (so `inspect` reads it as a
/// plain folder: no SHA-256 to compare).
pub fn plain_folder(run_dir: &Path, to: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(run_dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "ndjson") && !p.ends_with("log.ndjson") {
            std::fs::hard_link(&p, to.join(p.file_name().expect("a file name")))?;
        }
    }
    Ok(to.to_path_buf())
}
