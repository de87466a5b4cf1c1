//! One data set at one size: serve it, warm up, run the download rounds in alternation, then
//! `inspect` on the result, and (when asked) profile; rows for the tables.

use std::path::{Path, PathBuf};
use std::process::Command;

use oneup_bulk::record::RunRecord;
use oneup_bulk::sandbox::{RetryAfterStyle, Sandbox, SandboxConfig};

use crate::measure::{self, Sample};
use crate::{Args, data, profile, server};

/// The types smart-fetch can export that the sandbox serves.
const SMART_FETCH_TYPES: &[&str] = &["Patient", "Encounter", "Observation", "Condition"];

pub struct DownloadRow {
    pub group: String,
    pub command: String,
    pub s: Result<Sample, String>,
    pub bytes: u64,
    /// Median wall time of the curl run over the same files.
    pub curl_wall: f64,
}

pub struct InspectRow {
    pub group: String,
    pub command: String,
    pub s: Result<Sample, String>,
    pub bytes: u64,
}

pub struct SetResult {
    pub downloads: Vec<DownloadRow>,
    pub inspects: Vec<InspectRow>,
    pub profiles: Vec<(String, Result<profile::Profile, String>)>,
}

/// What the rounds run against.
struct Served {
    fhir_base: String,
    token_url: String,
    token: String,
    /// The types a smart-fetch run asks for, and the URLs (from the warm-up) of those files.
    peer_types: Vec<&'static str>,
    peer_urls: Vec<String>,
    stop: Stop,
}

enum Stop {
    Sandbox(Sandbox),
    Static(server::StaticExport),
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

async fn serve(a: &Args, set: &str, size: Option<u64>) -> Served {
    if set == "realistic" {
        let scale = a.scale.unwrap_or_else(|| data::scale_for_mb(size.unwrap_or(100)));
        let cfg = SandboxConfig {
            data_scale: scale,
            files_per_type: a.files_per_type,
            polls_before_ready: 0,
            retry_after: RetryAfterStyle::None,
            ..Default::default()
        };
        let sb = Sandbox::start(cfg).await.expect("sandbox");
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", "demo-client"),
            ("client_secret", "demo-secret-not-real"),
        ];
        let r = reqwest::Client::new().post(sb.token_url()).form(&form).send().await.expect("token");
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.expect("token body")).expect("token JSON");
        Served {
            fhir_base: sb.fhir_base().to_string(),
            token_url: sb.token_url().to_string(),
            token: v["access_token"].as_str().expect("access_token").to_string(),
            peer_types: SMART_FETCH_TYPES.to_vec(),
            peer_urls: Vec::new(),
            stop: Stop::Sandbox(sb),
        }
    } else {
        // The smoke test's scale 5 is about half a megabyte of realistic data; match it.
        let mb = size.unwrap_or_else(|| (u64::from(a.scale.unwrap_or(5)) / 9).max(1));
        let files = data::long_text(mb, 24);
        let s = server::StaticExport::start("DocumentReference", files).await;
        Served {
            fhir_base: s.fhir_base(),
            token_url: s.token_url(),
            token: server::TOKEN.to_string(),
            peer_types: vec!["DocumentReference"],
            peer_urls: Vec::new(),
            stop: Stop::Static(s),
        }
    }
}

pub async fn run_set(
    a: &Args,
    set: &str,
    size: Option<u64>,
    peers: &[&str],
    work: &Path,
    profile_it: bool,
) -> SetResult {
    let mut sv = serve(a, set, size).await;
    let dir = work.join(format!("{set}-{}", size.map_or("scale".to_string(), |s| s.to_string())));
    std::fs::create_dir_all(&dir).expect("work dir");
    let job = |name: &str, validate: &str, types: &[&str]| -> (PathBuf, PathBuf) {
        let out = dir.join(name);
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, measure::job_yaml(&sv.fhir_base, &sv.token_url, &out, validate, a.concurrency, types))
            .expect("job file");
        (file, out)
    };
    // Warm-up: the sandbox generates the export once (it caches identical ones); gives the URLs.
    let (warm, warm_out) = job("warm", "off", &[]);
    let cmd = measure::oneup_run(&a.bin, &warm);
    blocking(move || measure::measure(&cmd)).await.expect("warm-up run");
    let run_json = std::fs::read_to_string(warm_out.join("bench/latest/run.json")).expect("run.json of the warm-up");
    let record: RunRecord = serde_json::from_str(&run_json).expect("run.json");
    let urls: Vec<String> = record.files.iter().map(|f| f.url.clone()).collect();
    let bytes: u64 = record.files.iter().map(|f| f.bytes).sum();
    let in_peer_types =
        |f: &&oneup_bulk::record::FileRecord| sv.peer_types.iter().any(|t| f.path.starts_with(&format!("{t}.")));
    sv.peer_urls = record.files.iter().filter(in_peer_types).map(|f| f.url.clone()).collect();
    let peer_bytes: u64 = record.files.iter().filter(in_peer_types).map(|f| f.bytes).sum();
    let _ = std::fs::remove_dir_all(&warm_out);
    let group =
        format!("{set} {} ({} files, {} resources)", size_text(bytes), urls.len(), count_text(record.totals.resources));
    eprintln!("bench: {group}");
    let token_file = dir.join("token.txt");
    std::fs::write(&token_file, &sv.token).expect("token file");
    let smart_fetch = peers.contains(&"smart-fetch");
    if smart_fetch {
        // Its own kick-off (another selection): let the sandbox generate and cache it first.
        let out = dir.join("sf-warm");
        let cmd = measure::smart_fetch(&sv.fhir_base, &token_file, &sv.peer_types, &out);
        let _ = blocking(move || measure::measure(&cmd)).await;
        let _ = std::fs::remove_dir_all(&out);
    }
    let all_types = sv.peer_urls.len() == urls.len();
    let mut names: Vec<String> =
        vec!["oneup-bulk (strict)".into(), "oneup-bulk (validate off)".into(), "curl --parallel".into()];
    if smart_fetch {
        if !all_types {
            names.push(format!("curl --parallel, {} types", sv.peer_types.len()));
        }
        names.push(if all_types {
            "smart-fetch".into()
        } else {
            format!("smart-fetch, {} types", sv.peer_types.len())
        });
    }
    let mut samples: Vec<Vec<Result<Sample, String>>> = names.iter().map(|_| Vec::new()).collect();
    let mut kept = None;
    for round in 0..a.rounds.max(1) {
        for (i, name) in names.iter().enumerate() {
            let out = dir.join(format!("r{round}-{i}"));
            std::fs::create_dir_all(&out).expect("out dir");
            let cmd = if name.starts_with("oneup-bulk") {
                let (file, _) = job(&format!("r{round}-{i}"), if i == 0 { "strict" } else { "off" }, &[]);
                measure::oneup_run(&a.bin, &file)
            } else if name.starts_with("curl") {
                let u = if name.contains("types") { &sv.peer_urls } else { &urls };
                measure::curl(u, &sv.token, a.concurrency, &out)
            } else {
                measure::smart_fetch(&sv.fhir_base, &token_file, &sv.peer_types, &out.join("sf"))
            };
            // smart-fetch exits 1 when the server reported errors (the sandbox always reports one).
            let ok: &'static [i32] = if name.starts_with("smart-fetch") { &[0, 1] } else { &[0, 5] };
            samples[i].push(blocking(move || measure::measure_ok(&cmd, ok)).await);
            if i == 0 && round + 1 == a.rounds.max(1) {
                kept = Some(out.join("bench/latest"));
            } else {
                let _ = std::fs::remove_dir_all(&out);
            }
        }
    }
    let summary = |v: &[Result<Sample, String>]| -> Result<Sample, String> {
        let ok: Vec<Sample> = v.iter().filter_map(|s| s.as_ref().ok().copied()).collect();
        match v.iter().find_map(|s| s.as_ref().err()) {
            Some(e) if ok.is_empty() => Err(e.clone()),
            _ => Ok(measure::summary(&ok)),
        }
    };
    let wall_of = |name: &str| {
        names.iter().position(|n| n == name).and_then(|i| summary(&samples[i]).ok()).map_or(f64::NAN, |s| s.wall)
    };
    let curl_all = wall_of("curl --parallel");
    let curl_peer =
        if all_types { curl_all } else { wall_of(&format!("curl --parallel, {} types", sv.peer_types.len())) };
    let downloads = names
        .iter()
        .zip(&samples)
        .map(|(name, v)| {
            let peer = name.contains("types") || (name.starts_with("smart-fetch") && !all_types);
            DownloadRow {
                group: group.clone(),
                command: name.clone(),
                s: summary(v),
                bytes: if peer { peer_bytes } else { bytes },
                curl_wall: if peer { curl_peer } else { curl_all },
            }
        })
        .collect();
    let kept = kept.expect("a strict run folder");
    let plain = measure::plain_folder(&kept, &dir.join("plain")).expect("hard links");
    let cases: Vec<(String, Command)> = vec![
        ("inspect --threads 1".into(), measure::inspect(&a.bin, 1, false, &plain)),
        ("inspect --threads 2".into(), measure::inspect(&a.bin, 2, false, &plain)),
        ("inspect --threads 2, run folder (+ SHA-256)".into(), measure::inspect(&a.bin, 2, false, &kept)),
        ("inspect --check-references --threads 1".into(), measure::inspect(&a.bin, 1, true, &plain)),
        ("inspect --check-references --threads 2".into(), measure::inspect(&a.bin, 2, true, &plain)),
    ];
    let mut isamples: Vec<Vec<Result<Sample, String>>> = cases.iter().map(|_| Vec::new()).collect();
    for _ in 0..a.rounds.max(1) {
        for (i, (_, cmd)) in cases.iter().enumerate() {
            let cmd = clone(cmd);
            isamples[i].push(blocking(move || measure::measure_ok(&cmd, &[0, 1])).await);
        }
    }
    let inspects = cases
        .iter()
        .zip(&isamples)
        .map(|((name, _), v)| InspectRow { group: group.clone(), command: name.clone(), s: summary(v), bytes })
        .collect();
    let mut profiles = Vec::new();
    if profile_it {
        let (file, _) = job("profiled", "strict", &[]);
        let strict = measure::oneup_run(&a.bin, &file);
        profiles.push((
            format!("`oneup-bulk run`, validate: strict, {group}"),
            blocking(move || profile::record(&strict)).await,
        ));
        let insp = measure::inspect(&a.bin, 1, false, &plain);
        profiles.push((
            format!("`oneup-bulk inspect --threads 1`, {group}"),
            blocking(move || profile::record(&insp)).await,
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    match sv.stop {
        Stop::Sandbox(sb) => sb.shutdown().await,
        Stop::Static(s) => s.shutdown().await,
    }
    SetResult { downloads, inspects, profiles }
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.2} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

fn count_text(n: u64) -> String {
    match n {
        1_000_000.. => format!("{:.2}M", n as f64 / 1e6),
        10_000.. => format!("{:.0}k", n as f64 / 1e3),
        _ => n.to_string(),
    }
}

fn clone(c: &Command) -> Command {
    let mut n = Command::new(c.get_program());
    n.args(c.get_args());
    n
}

fn per_gb(cpu: f64, bytes: u64) -> f64 {
    cpu / (bytes as f64 / 1e9)
}

pub fn print_downloads(rows: &[DownloadRow]) {
    println!("| export | command | median wall s | × curl | median CPU s | CPU s/GB | peak RSS MiB | MB/s |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut last = String::new();
    for r in rows {
        let g = if r.group == last { String::new() } else { r.group.clone() };
        last = r.group.clone();
        match &r.s {
            Ok(s) => println!(
                "| {g} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.0} |",
                r.command,
                s.wall,
                s.wall / r.curl_wall,
                s.cpu,
                per_gb(s.cpu, r.bytes),
                s.rss_mib,
                r.bytes as f64 / 1e6 / s.wall
            ),
            Err(e) => println!("| {g} | {} | failed: {} | | | | | |", r.command, e.replace('|', "/")),
        }
    }
}

pub fn print_inspects(rows: &[InspectRow]) {
    println!("| data | command | median wall s | GB/s | median CPU s | CPU s/GB | peak RSS MiB |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut last = String::new();
    for r in rows {
        let g = if r.group == last { String::new() } else { r.group.clone() };
        last = r.group.clone();
        match &r.s {
            Ok(s) => println!(
                "| {g} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
                r.command,
                s.wall,
                r.bytes as f64 / 1e9 / s.wall,
                s.cpu,
                per_gb(s.cpu, r.bytes),
                s.rss_mib
            ),
            Err(e) => println!("| {g} | {} | failed: {} | | | | |", r.command, e.replace('|', "/")),
        }
    }
}
