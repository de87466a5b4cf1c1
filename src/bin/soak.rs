//! `cargo run --locked --bin soak -- [--seed S] [--iterations N] [--bin PATH]` (`--release` for speed)
//!
//! The chaos soak: N iterations, seeds S, S+1, …; each against a sandbox in chaos mode, with the real
//! `oneup-bulk run` SIGKILLed at seeded moments and run again until it completes, then the invariants
//! checked (see `oneup_bulk::soak`). Prints each iteration's seed and result, a repro command for a
//! failure, and a summary; exits 1 if any iteration failed. Not part of `cargo test` (a short run is:
//! `tests/engine/chaos.rs`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use oneup_bulk::soak::{self, Options, Totals};

#[derive(Parser)]
#[command(about = "Chaos soak: random faults, SIGKILLs and reruns against the sandbox, invariants checked")]
struct Args {
    /// The first iteration's seed (decimal or 0x hex); iteration i uses seed + i.
    #[arg(long, default_value = "1", value_parser = parse_seed)]
    seed: u64,
    #[arg(long, default_value_t = 50)]
    iterations: u64,
    /// The oneup-bulk binary to run (default: the one beside this program).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Runs of the binary per iteration before it counts as failed.
    #[arg(long, default_value_t = 40)]
    max_runs: u32,
}

fn parse_seed(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s}: {e}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bin = args.bin.unwrap_or_else(|| {
        let me = std::env::current_exe().expect("the path of this program");
        me.with_file_name(format!("oneup-bulk{}", std::env::consts::EXE_SUFFIX))
    });
    if !bin.exists() {
        eprintln!("error: {} does not exist (cargo build --release first, or pass --bin)", bin.display());
        return ExitCode::from(2);
    }
    let opts = Options { max_runs: args.max_runs, ..Options::new(bin) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let started = Instant::now();
    let mut totals = Totals::default();
    rt.block_on(async {
        for i in 0..args.iterations {
            let seed = args.seed.wrapping_add(i);
            match soak::iteration(seed, &opts).await {
                Ok(r) => {
                    println!("seed {seed}: ok: {}", r.line());
                    totals.add(&r, true);
                }
                Err(f) => {
                    print!("{}", soak::describe_failure(&f));
                    totals.add(&f.report, false);
                }
            }
        }
    });
    println!("{}", totals.summary(started.elapsed()));
    if totals.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
