//! `bench`: the README's Performance section, regenerated in one unattended run, printed as markdown.
//!
//! ```text
//! ./target/release/bench                       # 100 MB, 1 GB and 4 GB of both data sets, 3 rounds
//! ./target/release/bench --sizes 1000 --rounds 5 --build-times
//! ./target/release/bench scan [MB]             # only the single-core line-check figures
//! ./target/debug/bench --scale 5 --rounds 1 --bin ./target/debug/oneup-bulk   # CI smoke, seconds
//! ```
//!
//! For each data set (the sandbox's realistic claims-shaped FHIR; long-string DocumentReferences, 24
//! files) and size: `oneup-bulk run` with `validate: strict` and with `validate: off`, `curl --parallel
//! --parallel-max 4` fetching the same files, and the peers that are installed (smart-fetch, on the
//! types it supports, beside a curl of the same files), in alternation, `--rounds` times each; medians
//! of wall and CPU time (`/usr/bin/time`), peak RSS, ratios to curl. Then `inspect` on what was
//! downloaded (1 and 2 threads; plain folder and run folder with SHA-256; `--check-references`), the
//! line checks alone on one core over data in memory, and a `perf` profile of a strict run and of
//! `inspect`. `--build-times` adds the cold `cargo build` times (minutes). Needs `curl` and
//! `/usr/bin/time` (Debian `curl`, `time`); `perf` (Debian `linux-perf`) for the profiles. Timings are
//! printed, never asserted.

mod build;
mod data;
mod measure;
mod profile;
mod scan;
mod server;
mod sets;

use std::path::PathBuf;

pub struct Args {
    /// Sizes in decimal megabytes.
    pub sizes: Vec<u64>,
    /// A sandbox scale instead of sizes (the CI smoke test uses 5).
    pub scale: Option<u32>,
    pub files_per_type: u32,
    pub rounds: usize,
    pub concurrency: usize,
    pub bin: PathBuf,
    pub sets: Vec<String>,
    pub build_times: bool,
    pub profile: bool,
}

fn args() -> Args {
    let mut a = Args {
        sizes: vec![100, 1000, 4000],
        scale: None,
        files_per_type: 4,
        rounds: 3,
        concurrency: 4,
        bin: default_bin(),
        sets: vec!["realistic".into(), "long-string".into()],
        build_times: false,
        profile: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--sizes" => a.sizes = v().split(',').map(|x| x.trim().parse().expect("--sizes MB,MB,…")).collect(),
            "--scale" => a.scale = Some(v().parse().expect("--scale N")),
            "--files-per-type" => a.files_per_type = v().parse().expect("--files-per-type K"),
            "--rounds" => a.rounds = v().parse().expect("--rounds R"),
            "--concurrency" => a.concurrency = v().parse().expect("--concurrency C"),
            "--bin" => a.bin = PathBuf::from(v()),
            "--sets" => a.sets = v().split(',').map(str::to_string).collect(),
            "--build-times" => a.build_times = true,
            "--no-profile" => a.profile = false,
            other => panic!("unknown argument {other}; see the doc comment of src/bin/bench/main.rs"),
        }
    }
    a
}

/// The `oneup-bulk` binary next to this one (same profile).
fn default_bin() -> PathBuf {
    std::env::current_exe().expect("current exe").with_file_name("oneup-bulk")
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cores} cores ({cpu}); load average at start {}", load.join(" "))
}

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("scan") {
        let mb: u64 = std::env::args().nth(2).map_or(100, |v| v.parse().expect("bench scan [MB]"));
        scan_section(mb);
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("scan-files") {
        // `bench scan-files WHAT FILE…`: one candidate, one pass (for instruction counts under valgrind).
        let what = std::env::args().nth(2).expect("bench scan-files WHAT FILE…");
        let files: Vec<(String, Vec<u8>)> =
            std::env::args().skip(3).map(|f| (f.clone(), std::fs::read(&f).expect("read"))).collect();
        for r in scan::run_only(&files, &what) {
            println!("{:50} {:.2} GB/s", r.what, r.gbps);
        }
        return;
    }
    let a = args();
    println!(
        "# oneup-bulk benchmark\n\n{}; {} rounds; concurrency {}; binary {}",
        machine(),
        a.rounds,
        a.concurrency,
        a.bin.display()
    );
    let peers: Vec<&str> = ["smart-fetch"].into_iter().filter(|p| measure::on_path(p)).collect();
    if peers.is_empty() {
        println!("\nPeers: smart-fetch is not installed (`pip install smart-fetch`); its rows are skipped.");
    }
    let work = tempfile::tempdir().expect("temp dir");
    let mut downloads = Vec::new();
    let mut inspects = Vec::new();
    let mut profiles = Vec::new();
    let sizes: Vec<Option<u64>> = match a.scale {
        Some(_) => vec![None],
        None => a.sizes.iter().map(|&s| Some(s)).collect(),
    };
    // Profile the realistic 1 GB run (else the first size): big enough to be steady.
    let profiled_size = if sizes.contains(&Some(1000)) { Some(1000) } else { sizes[0] };
    let perf = if a.profile { profile::available() } else { Err("not asked for".into()) };
    for set in &a.sets {
        for &size in &sizes {
            let profile_it = perf.is_ok() && set == "realistic" && size == profiled_size;
            let r = sets::run_set(&a, set, size, &peers, work.path(), profile_it).await;
            downloads.extend(r.downloads);
            inspects.extend(r.inspects);
            profiles.extend(r.profiles);
        }
    }
    println!("\n### Downloads\n");
    sets::print_downloads(&downloads);
    println!("\n### inspect\n");
    sets::print_inspects(&inspects);
    scan_section(if a.scale.is_some() { 2 } else { 100 });
    if a.profile {
        println!("\n### Where the CPU goes\n");
        if let Err(e) = &perf {
            println!("Skipped: {e}.");
        }
        for (title, p) in &profiles {
            match p {
                Ok(p) => profile::print(title, p, 12),
                Err(e) => println!("{title}: skipped: {e}"),
            }
        }
    }
    if a.build_times {
        println!("\n### First build\n");
        build::print_cold_builds();
    }
}

fn scan_section(mb: u64) {
    println!("\n### Line checks on one core, data in memory (`bench scan {mb}`)\n");
    let sets = [("realistic", data::realistic(data::scale_for_mb(mb))), ("long-string", data::long_text(mb, 4))];
    let results: Vec<Vec<scan::Row>> = sets.iter().map(|(_, d)| scan::run(d, 3)).collect();
    println!("| what | realistic GB/s | long-string GB/s |\n|---|---:|---:|");
    for (i, r) in results[0].iter().enumerate() {
        println!("| {} | {:.2} | {:.2} |", r.what, r.gbps, results[1][i].gbps);
    }
}
