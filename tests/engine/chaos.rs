//! The chaos soak, short (issue 16): fixed seeds of random faults switched on together, the real binary
//! SIGKILLed at seeded moments and rerun, every invariant checked (`oneup_bulk::soak`). The long soak
//! is `cargo run --locked --bin soak`. Also: the checks themselves catch what they promise, and
//! expiring links are renewed as long as files keep arriving.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use oneup_bulk::sandbox::SandboxConfig;
use oneup_bulk::sandbox::chaos::{ChaosPlan, FaultKind};
use oneup_bulk::soak::{self, Options, check};

use crate::harness::*;

/// Seeds that between them switch on every fault kind and kill runs at every stage.
const SEEDS: [u64; 5] = [2, 3, 8, 10, 12];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chaos_soak_keeps_every_invariant() {
    let opts = Options::new(PathBuf::from(env!("CARGO_BIN_EXE_oneup-bulk")));
    let mut failures = Vec::new();
    let mut kinds = BTreeSet::new();
    let mut kills = 0;
    for seed in SEEDS {
        match soak::iteration(seed, &opts).await {
            Ok(r) => {
                eprintln!("seed {seed}: ok: {}", r.line());
                kinds.extend(r.faults.keys().copied());
                kills += r.kills;
                assert!(r.downloaded.files > 0 && r.faults.values().sum::<u64>() > 0, "{}", r.line());
            }
            Err(f) => failures.push(soak::describe_failure(&f)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Whether a kill lands depends on how fast each run is; seed 8 plans four early ones.
    assert!(kills >= 1, "runs were killed ({kills})");
    assert_eq!(kinds.len(), FaultKind::ALL.len(), "every kind fired at least once: {kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checks_catch_what_they_promise() {
    let env = Env::default().await;
    let job_dir = env.out().join("t");
    let out = env.run(&env.job("  level: system\n  types: [Patient, Coverage]\n")).await.unwrap();
    let none = BTreeSet::new();
    let done = check::complete(&job_dir, &env.sandbox, i32::from(out.exit_code), &none).expect("a clean run passes");
    assert_eq!(done.files, out.record.files.len());
    let err = |what: &str| {
        let e = check::complete(&job_dir, &env.sandbox, i32::from(out.exit_code), &none).unwrap_err();
        assert!(e.contains(what), "{what}: {e}");
    };
    err_on_wrong_exit(&job_dir, &env, out.exit_code);

    let patient = out.run_dir.join("Patient.ndjson");
    let good = std::fs::read(&patient).unwrap();
    let mut bad = good.clone();
    bad[10] ^= 1;
    std::fs::write(&patient, &bad).unwrap();
    err("Patient.ndjson: SHA-256");
    let e = check::after_kill(&job_dir, &env.sandbox).unwrap_err();
    assert!(e.contains("is under its final name but is not any file the server sent"), "{e}");
    std::fs::write(&patient, &good).unwrap();

    std::fs::write(out.run_dir.join("Coverage.ndjson.part"), b"{}").unwrap();
    err("Coverage.ndjson.part is in the run folder but not in the record");
    std::fs::remove_file(out.run_dir.join("Coverage.ndjson.part")).unwrap();

    let inflight = job_dir.join(".state/inflight.json");
    std::fs::write(&inflight, b"{\"export_id\": ").unwrap();
    assert!(check::after_kill(&job_dir, &env.sandbox).unwrap_err().contains("inflight.json: does not parse"));
    std::fs::remove_file(&inflight).unwrap();

    let lock = oneup_bulk::state::JobState::new(&job_dir).lock().unwrap();
    err("the job's lock is still held");
    drop(lock);

    // A second export of the same job is a second kick-off, unless a kill orphaned it.
    env.run(&env.job("  level: system\n  types: [Patient]\n")).await.unwrap();
    let e = check::complete(&job_dir, &env.sandbox, 5, &none).unwrap_err();
    assert!(e.contains("2 kick-offs for one export"), "{e}");
}

fn err_on_wrong_exit(job_dir: &std::path::Path, env: &Env, exit: u8) {
    let e = check::complete(job_dir, &env.sandbox, if exit == 0 { 5 } else { 0 }, &BTreeSet::new()).unwrap_err();
    assert!(e.contains("but the record says"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_that_keep_expiring_are_renewed_while_files_arrive() {
    // One download at a time, so the arrivals (and the links that expire) are the same every run.
    let plan = ChaosPlan { seed: 4, rates: BTreeMap::from([(FaultKind::ExpiredLink, 0.3)]) };
    let env = Env::new(SandboxConfig {
        requires_access_token: false,
        files_per_type: 2,
        chaos: Some(plan),
        ..Default::default()
    })
    .await;
    let yaml = env.yaml("t", "  level: system\n", "").replace("  retries: 3\n", "  retries: 3\n  concurrency: 1\n");
    let out = env.run(&env.job_from(&yaml)).await.expect("every expired link is renewed");
    let expired = env.sandbox.chaos_fired().get(&FaultKind::ExpiredLink).copied().unwrap_or(0);
    assert!(expired > 3, "more expiries ({expired}) than refreshes allowed in a row");
    assert_eq!(env.sandbox.kickoff_count(), 1, "renewed, never replaced");
    // (The record's links have expired by now: the sandbox's own bytes are the reference.)
    let done = check::complete(&env.out().join("t"), &env.sandbox, i32::from(out.exit_code), &BTreeSet::new());
    assert_eq!(done.expect("the run is whole and the same as the server's").files, out.record.files.len());
}
