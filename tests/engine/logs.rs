//! What a command leaves on stderr and stdout, through the binary: JSON log lines (success, failure,
//! fatal errors), Ctrl-C between two jobs, the demo's last screen, `-v`, a job named twice, and
//! `status` without a job.

use std::path::{Path, PathBuf};

use oneup_bulk::app::RunOutcome;
use oneup_bulk::commands::summary;
use oneup_bulk::progress::units;
use oneup_bulk::sandbox::SandboxConfig;
use serde_json::Value;

use crate::harness::*;

const SMALL: &str = "  level: system\n  types: [Patient, Coverage]\n";

/// Every stderr line of `o`, parsed; panics on one that is not a JSON object.
fn json_lines(o: &std::process::Output) -> Vec<Value> {
    let stderr = String::from_utf8(o.stderr.clone()).unwrap();
    assert!(!stderr.is_empty());
    stderr
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v.is_object() && v["level"].is_string() && v["timestamp"].is_string(), "{l}");
            assert!(v.get("target").is_none(), "no target without -v: {l}");
            v
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_job_on_every_line_and_end_with_its_outcome() {
    let env = Env::default().await;
    let path = env.write_job("t.yaml", &env.yaml("t", SMALL, ""));
    let args =
        |p: &Path| vec!["run".into(), "--log-format=json".into(), "--summary=json".into(), p.display().to_string()];
    let o = run_bin(args(&path)).await;
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let lines = json_lines(&o);
    for l in &lines {
        assert_eq!(l["job"], "t", "every line is about job t: {l}");
    }
    let last = lines.last().unwrap();
    let run_dir = PathBuf::from(last["run_dir"].as_str().unwrap());
    let r = read_record(&run_dir);
    let t = summary::tally(&r);
    assert_eq!(last["message"], "job finished");
    assert_eq!(last["level"], "INFO");
    assert_eq!(last["exit_code"], 5);
    assert_eq!((last["files"].as_u64(), last["resources"].as_u64()), (Some(t.data.files), Some(t.data.lines)));
    assert_eq!((last["bytes"].as_u64(), last["error_files"].as_u64()), (Some(t.data.bytes), Some(1)));
    assert_eq!(run_dir.parent().unwrap(), env.out().join("t"));
    // The summary: one JSON document on stdout, the same counts.
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["exit_code"], 5);
    let job = &doc["jobs"][0];
    assert_eq!(
        job["data"],
        serde_json::json!({"files": t.data.files, "resources": t.data.lines, "bytes": t.data.bytes})
    );
    assert_eq!(job["errors"]["files"], 1);
    assert_eq!(job["run_totals"], serde_json::to_value(&r.totals).unwrap());
    assert_eq!(job["run_dir"], last["run_dir"]);

    // A wrong secret: exit 3, still one JSON object per line, the last one the job's end.
    let wrong = env.write_job("w.yaml", &env.yaml("w", SMALL, "").replace("${TEST_SECRET}", "not-the-secret"));
    let o = run_bin(args(&wrong)).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let lines = json_lines(&o);
    let last = lines.last().unwrap();
    assert_eq!(
        (&last["job"], &last["level"], &last["message"]),
        (&"w".into(), &"ERROR".into(), &"job finished".into())
    );
    assert_eq!(last["exit_code"], 3);
    assert!(last["error"].as_str().unwrap().starts_with("authorization refused by "), "{last}");
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((&doc["jobs"][0]["outcome"], &doc["exit_code"]), (&"failed".into(), &3.into()));

    // Fatal errors before any job: a bad job file, and a command line that does not parse.
    let bad = env.write_job("bad.yaml", "name: x\nacess: bulk-data\n");
    for args in [
        vec!["run".to_string(), "--log-format".into(), "json".into(), bad.display().to_string()],
        vec!["run".to_string(), "--log-format".into(), "json".into(), "--nope".into()],
    ] {
        let o = run_bin(args).await;
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let lines = json_lines(&o);
        assert_eq!((lines.len(), &lines[0]["level"], &lines[0]["exit_code"]), (1, &"ERROR".into(), &2.into()));
    }
}

/// The binary's path as it prints it when run from a folder it is not under, off `PATH`.
fn me() -> String {
    std::fs::canonicalize(env!("CARGO_BIN_EXE_oneup-bulk")).unwrap().display().to_string()
}

fn bin_in(dir: &Path) -> std::process::Command {
    let mut c = bin();
    c.current_dir(dir).env_remove("CARGO").env("PATH", "/usr/bin:/bin");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_the_second_job_keeps_the_first_jobs_summary_and_names_the_second() {
    let env_a = Env::default().await;
    let env_b = Env::long_export(100_000).await;
    let a = env_a.write_job("a.yaml", &env_a.yaml("a", SMALL, ""));
    let b = env_b.write_job("b.yaml", &env_b.yaml("b", SMALL, ""));
    let child = bin_in(env_a.dir.path())
        .args(["run", "-q"])
        .arg(&a)
        .arg(&b)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b_inflight = env_b.out().join("b/.state/inflight.json");
    wait_until("job b's export to be in flight", || b_inflight.exists()).await;
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    // stdout: a's summary, then the table naming b as interrupted.
    let a_dir = std::fs::canonicalize(env_a.out().join("a/latest")).unwrap();
    let a_out = RunOutcome {
        run_dir: env_a.out().join("a").join(a_dir.file_name().unwrap()),
        record: read_record(&a_dir),
        exit_code: 5,
    };
    let a_total = summary::tally(&a_out.record).data;
    let expected = format!(
        "{}\njobs (exit code, outcome):\n  a                          5  complete, with errors reported by the server: {} resources in {} files\n  b                        130  interrupted (Ctrl-C)\n",
        summary::text("a", &a_out),
        units::thousands(a_total.lines),
        a_total.files
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), expected);
    // stderr: which job was cut short, and the commands that resume or forget it.
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "error: interrupted (Ctrl-C) during job b; its state is kept\n  resume:  {me} run {b}\n  forget the export instead:  {me} cancel {b}\n",
            me = me(),
            b = b.display()
        )
    );
    assert!(b_inflight.exists(), "b's state is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_ends_clean_and_its_next_lines_work_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let o = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || bin_in(&d).args(["demo", "-q"]).output().unwrap()
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(out.starts_with("sandbox: complete (transactionTime "), "{out}");
    assert!(!out.contains("error"), "no server errors unless asked for: {out}");
    let next = out.split_once("\nnext:\n").map(|x| x.1).unwrap_or_else(|| panic!("{out}"));
    let me = me();
    assert_eq!(
        next,
        format!(
            "  {me} inspect exports/sandbox/latest   review what arrived\n  {me} sandbox   serve the same server on :8089 for your own job files\n"
        )
    );
    // The inspect line, run as printed from the same folder.
    let cmd = next.lines().next().unwrap().trim().split("   ").next().unwrap().to_string();
    let d = dir.path().to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh").arg("-c").arg(&cmd).current_dir(d).output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Asked for: the sandbox lists an error[] file, the summary shows it apart, exit 5.
    let d = dir.path().to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        bin_in(&d).args(["demo", "-q", "--with-server-errors", "--out", "other"]).output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\n  error/ (server errors)        1           1 "),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_logs_show_no_option_wrappers_and_no_line_twice() {
    let env = Env::new(SandboxConfig { error_file: false, ..Default::default() }).await;
    let path = env.write_job("v.yaml", &env.yaml("v", SMALL, ""));
    let o = run_bin(vec!["run".into(), "-v".into(), path.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!stderr.contains("Some("), "{stderr}");
    // Without the timestamp, no line repeats (polls differ by their X-Progress).
    let mut seen = std::collections::BTreeSet::new();
    for l in stderr.lines() {
        let rest = l.split_once(' ').map_or(l, |x| x.1);
        assert!(seen.insert(rest.to_string()), "repeated: {rest}\n{stderr}");
    }
    assert_eq!(stderr.matches("access token obtained").count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_named_twice_runs_once_and_status_finds_jobs_without_being_told() {
    let env = Env::new(SandboxConfig { error_file: false, ..Default::default() }).await;
    let path = env.write_job("t.yaml", &env.yaml("t", SMALL, ""));
    let again = env.dir.path().join(".").join("t.yaml");
    let o = run_bin(vec!["run".into(), path.display().to_string(), again.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.matches("t: complete (transactionTime").count(), 1, "{stdout}");
    assert!(!stdout.contains("jobs (exit code, outcome)"), "one job, no table: {stdout}");
    let note = format!("WARN {} is named more than once; running it once\n", again.display());
    assert!(String::from_utf8_lossy(&o.stderr).contains(&note), "{}", text(&o));
    assert_eq!(env.sandbox.kickoff_count(), 1);

    // `status` with no job file: every job folder under exports/ (here --out).
    let o = run_bin(vec!["status".into(), "--out".into(), env.out().display().to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.starts_with(&format!("t  ({})\n  last complete run: ", env.out().join("t").display())), "{s}");
    let empty = tempfile::tempdir().unwrap();
    let o = tokio::task::spawn_blocking({
        let d = empty.path().to_path_buf();
        move || bin_in(&d).arg("status").output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    // The hint names the program as it was run from there (off PATH: its path).
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "error: exports: No such file or directory (os error 2); name the job files ({} status jobs/*.yaml) or the output folder (--out DIR)\n",
            me()
        )
    );
}
