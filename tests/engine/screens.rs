//! What users read, compared whole as insta snapshots (tests/engine/snapshots/engine__screens__*.snap):
//! the end-of-run summary (text and `--summary json`), `status` (idle, in flight, after a complete
//! run), `run --dry-run`, what `cancel` says, and the hints after a failure (a wrong secret, a server
//! that is down, Ctrl-C). Temp folders, ports, instants, run ids, pids, the host name and timings are
//! filtered; every other character is the program's.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::*;

const SMALL: &str = "  level: system\n  types: [Patient, Coverage]\n";

/// What varies from one run to the next, and what it is shown as.
const FILTERS: &[(&str, &str)] = &[
    (r#"[^\s`'"(]*\.tmp[A-Za-z0-9]+"#, "[TMP]"),
    (r"\d{8}T\d{6}(\.\d+)?Z", "[RUN-ID]"),
    (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", "[INSTANT]"),
    (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
    (r"\$export-status/[0-9a-f]+", "$$export-status/[ID]"),
    (r"(pid|kill) \d+", "$1 [PID]"),
    (r"\b\d+\.\ds;", "[SECS]s;"),
    (r#""seconds": [0-9.e-]+"#, r#""seconds": [SECS]"#),
];

/// Asserts `text` (with this machine's name replaced) against the snapshot `name`.
macro_rules! screen {
    ($name:expr, $text:expr) => {{
        let text = scrub(&$text);
        insta::with_settings!({ filters => FILTERS.to_vec() }, {
            insta::assert_snapshot!($name, text);
        })
    }};
}

fn scrub(s: &str) -> String {
    s.replace(&format!("on {} ", oneup_bulk::holder::hostname()), "on [HOST] ")
}

/// The binary with itself on `PATH`, so the commands it prints start with `oneup-bulk` wherever the
/// tests are built.
fn on_path() -> Command {
    let dir = Path::new(env!("CARGO_BIN_EXE_oneup-bulk")).parent().unwrap().display().to_string();
    let mut c = bin();
    c.env_remove("CARGO").env("PATH", format!("{dir}:/usr/bin:/bin"));
    c
}

async fn output(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().expect("binary runs")).await.unwrap()
}

async fn cmd(args: &[&str], job: &Path) -> Output {
    let mut c = on_path();
    c.args(args).arg(job);
    output(c).await
}

/// Starts `run -q job` in the background and waits until its export is in flight and its lock
/// names it.
async fn run_in_flight(env: &Env, job: &Path) -> std::process::Child {
    let child = on_path().args(["run", "-q"]).arg(job).spawn().unwrap();
    env.wait_in_flight().await;
    let lock = env.out().join("t/.state/lock");
    wait_until("the lock's holder line", || std::fs::read_to_string(&lock).is_ok_and(|s| s.ends_with('\n'))).await;
    child
}

fn kill(mut child: std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_text_and_json_and_status_before_and_after() {
    let env = Env::default().await;
    let job = env.write_job("t.yaml", &env.yaml("t", SMALL, ""));
    let o = cmd(&["status"], &job).await;
    assert_eq!((o.status.code(), stderr(&o)), (Some(0), String::new()));
    screen!("status_idle", stdout(&o));

    let o = cmd(&["run", "-q"], &job).await;
    assert_eq!((o.status.code(), stderr(&o)), (Some(5), String::new()));
    screen!("summary_text", stdout(&o));

    let o = cmd(&["status"], &job).await;
    assert_eq!(o.status.code(), Some(0));
    screen!("status_after_a_complete_run", stdout(&o));

    let o = cmd(&["run", "-q", "--summary", "json"], &job).await;
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    // One JSON document on one line; shown pretty below, with the same keys in the same order.
    let out = stdout(&o);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out, format!("{doc}\n"));
    screen!("summary_json", serde_json::to_string_pretty(&doc).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run() {
    let env = Env::default().await;
    let job = env.write_job("t.yaml", &env.yaml("t", SMALL, ""));
    let o = cmd(&["run", "--dry-run"], &job).await;
    assert_eq!((o.status.code(), stderr(&o)), (Some(0), String::new()));
    screen!("dry_run", stdout(&o));
    assert!(env.sandbox.requests().is_empty(), "a dry run sends nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_in_flight_and_what_cancel_says() {
    let env = Env::long_export(100_000).await;
    let job = env.write_job("t.yaml", &env.yaml("t", SMALL, ""));
    let child = run_in_flight(&env, &job).await;
    let o = cmd(&["status"], &job).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    screen!("status_in_flight", stdout(&o));
    let o = cmd(&["cancel"], &job).await;
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    screen!("cancel_while_running", stderr(&o));
    kill(child);

    let o = cmd(&["cancel", "-q"], &job).await;
    assert_eq!((o.status.code(), stderr(&o)), (Some(0), String::new()));
    screen!("cancel_deleted", stdout(&o));
    let o = cmd(&["cancel", "-q"], &job).await;
    assert_eq!((o.status.code(), stderr(&o)), (Some(0), String::new()));
    screen!("cancel_nothing", stdout(&o));

    // Again, and the server restarts and forgets its exports before the DELETE.
    let child = run_in_flight(&env, &job).await;
    kill(child);
    env.sandbox.faults().update(|f| f.lose_exports_on = Some("$export-status".into()));
    let o = cmd(&["cancel", "-q"], &job).await;
    assert_eq!((o.status.code(), stderr(&o)), (Some(0), String::new()));
    screen!("cancel_gone", stdout(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hint_after_a_wrong_secret() {
    let env = Env::default().await;
    let job = env.write_job("t.yaml", &env.yaml("t", SMALL, "").replace("${TEST_SECRET}", "not-the-secret"));
    let o = cmd(&["run", "-q"], &job).await;
    assert_eq!((o.status.code(), stdout(&o)), (Some(3), String::new()));
    screen!("hint_wrong_secret", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hint_after_the_server_went_down_mid_export() {
    let env = Env::long_export(100_000).await;
    let job = env.write_job("t.yaml", &env.yaml("t", SMALL, ""));
    let child = run_in_flight(&env, &job).await;
    kill(child);
    let Env { sandbox, dir } = env;
    let base = sandbox.fhir_base();
    sandbox.shutdown().await;
    // Nothing listens on the port now: the resume cannot reach the server, and keeps the export.
    let o = cmd(&["run", "-q"], &job).await;
    assert_eq!((o.status.code(), stdout(&o)), (Some(75), String::new()), "{base}");
    screen!("hint_server_down", stderr(&o));
    assert!(dir.path().join("exports/t/.state/inflight.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hint_after_ctrl_c() {
    let env = Env::long_export(100_000).await;
    let job = env.write_job("t.yaml", &env.yaml("t", SMALL, ""));
    let o = interrupted(&env, &[], &job).await;
    screen!("hint_ctrl_c", stderr(&o));
}

/// `run -q ARGS JOB`, interrupted with SIGINT once its export is in flight: exit 130, nothing on stdout.
async fn interrupted(env: &Env, args: &[&std::ffi::OsStr], job: &std::path::Path) -> std::process::Output {
    let child = on_path()
        .args(["run", "-q"])
        .args(args)
        .arg(job)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    env.wait_in_flight().await;
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert_eq!((o.status.code(), stdout(&o)), (Some(130), String::new()));
    o
}

/// The export failed on the server after `--out` was given: the step's hint names the same `--out`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hint_after_a_failed_export_repeats_out() {
    use oneup_bulk::sandbox::{Faults, SandboxConfig};
    let failed = Some((500, "File generation failed".to_string()));
    let env =
        Env::new(SandboxConfig { faults: Faults { status_error: failed, ..Default::default() }, ..Default::default() })
            .await;
    let job = env.write_job("t.yaml", &env.yaml("t", SMALL, ""));
    let elsewhere = env.dir.path().join("elsewhere");
    let o = cmd(&["run", "-q", "--out", &elsewhere.display().to_string()], &job).await;
    assert_eq!((o.status.code(), stdout(&o)), (Some(4), String::new()));
    screen!("hint_failed_export_with_out", stderr(&o));
    assert!(elsewhere.join("t/.state").is_dir(), "the run used --out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hint_after_ctrl_c_with_out() {
    let env = Env::long_export(100_000).await;
    // The job's own download.dir is where the test waits for the export; --out names the same folder.
    let job = env.write_job("t.yaml", &env.yaml("t", SMALL, ""));
    let o = interrupted(&env, &["--out".as_ref(), env.out().as_os_str()], &job).await;
    screen!("hint_ctrl_c_with_out", stderr(&o));
}

/// The summary and the table of jobs on terminals of 60, 80 and 120 columns (on a terminal the
/// summary fits its width; off one it is the `summary_text` above). The run folder is named as under
/// the default `exports/`, so the layout does not depend on where the tests' temp folder is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_at_60_80_and_120_columns() {
    use oneup_bulk::app::RunOutcome;
    use oneup_bulk::commands::{Slot, SlotState, jobs_table, summary};
    use oneup_bulk::error::{Error, Signal};

    let env = Env::default().await;
    let types = "  level: system\n  types: [Patient, Coverage, ExplanationOfBenefit]\n";
    let job = env.write_job("t.yaml", &env.yaml("provider-nightly", types, ""));
    let o = cmd(&["run", "-q"], &job).await;
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let latest = std::fs::canonicalize(env.out().join("provider-nightly/latest")).unwrap();
    let run_dir = Path::new("exports/provider-nightly").join(latest.file_name().unwrap());
    let out = RunOutcome { run_dir, record: read_record(&latest), exit_code: 5 };
    let slot = |name: &str, state| Slot { name: name.into(), file: None, state };
    let slots = [
        slot("provider-nightly", SlotState::Done(Ok(Box::new(out.clone())))),
        slot("payer", SlotState::Done(Err(Error::Transient("status: gave up after 6 attempts: HTTP 503".into())))),
        slot("members", SlotState::Running),
        slot("patients", SlotState::Waiting),
    ];
    for columns in [60, 80, 120] {
        let shown = format!(
            "{}\njobs (exit code, outcome):\n{}",
            summary::text_at("provider-nightly", &out, Some(columns)),
            jobs_table(&slots, Some(Signal::Interrupt), Some(columns))
        );
        for line in shown.lines() {
            assert!(line.chars().count() < columns, "{columns} columns: {line:?}");
        }
        screen!(format!("summary_at_{columns}_columns"), shown);
    }
    // Off a terminal: exactly the text scripts have always read.
    assert_eq!(summary::text_at("provider-nightly", &out, None), summary::text("provider-nightly", &out));
}
