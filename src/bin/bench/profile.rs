//! Where the CPU goes: `perf record` (the software cpu-clock event, which works in VMs without
//! hardware counters) of one command, summarised by symbol and by kind of work. Skipped with a note
//! where `perf` is missing or not permitted (`apt-get install linux-perf`).

use std::collections::BTreeMap;
use std::process::Command;

/// The kinds of work a symbol belongs to, by name; first match wins.
const KINDS: &[(&str, &[&str])] = &[
    ("JSON check (validating skip)", &["ndjson::json", "ndjson::blocks", "ndjson::parse", "ndjson::check_line"]),
    ("JSON (serde_json)", &["serde_json"]),
    ("UTF-8 check", &["from_utf8", "run_utf8_validation"]),
    ("line splitting (memchr)", &["memchr", "LineSplitter"]),
    ("SHA-256", &["sha256", "sha2", "SHA256"]),
    ("gzip", &["inflate", "flate2", "miniz"]),
    (
        "kernel: copies to/from user space",
        &[
            "copy_user",
            "copy_to_user",
            "copy_from_user",
            "copy_page",
            "_copy_to_iter",
            "_copy_from_iter",
            "rep_movs",
            "memcpy_orig",
        ],
    ),
    (
        "kernel: TCP and sockets",
        &["tcp_", "skb", "sock_", "__sys_recv", "inet_", "ip_", "netif", "__netif", "loopback"],
    ),
    (
        "kernel: page cache and files",
        &["filemap", "ext4", "xfs", "page_cache", "folio", "generic_perform_write", "iomap"],
    ),
    ("user-space copies (memcpy/memmove)", &["memcpy", "memmove", "__memcpy", "__memmove"]),
    ("allocation", &["malloc", "free", "alloc::", "realloc", "_int_"]),
    ("HTTP (hyper, reqwest, h2)", &["hyper", "reqwest", "h2::", "http::"]),
    ("async runtime (tokio)", &["tokio"]),
];

pub struct Profile {
    pub symbols: Vec<(f64, String)>,
    pub kinds: Vec<(f64, String)>,
}

pub fn available() -> Result<(), String> {
    let probe = std::env::temp_dir().join(format!("bench-perf-probe-{}", std::process::id()));
    let out = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-o"])
        .arg(&probe)
        .arg("true")
        .output()
        .map_err(|e| format!("perf not found ({e}); apt-get install linux-perf"))?;
    let _ = std::fs::remove_file(&probe);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("perf record fails here: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Records `cmd` and reads the report back.
pub fn record(cmd: &Command) -> Result<Profile, String> {
    let data = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let st = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "1999", "-o"])
        .arg(data.path())
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .output()
        .map_err(|e| e.to_string())?;
    if !st.status.code().is_some_and(|c| c == 0 || c == 5 || c == 1) {
        return Err(format!("perf record: {}", String::from_utf8_lossy(&st.stderr).trim()));
    }
    let rep = Command::new("perf")
        .args(["report", "--stdio", "--no-children", "--sort", "sym", "--percent-limit", "0.05", "-i"])
        .arg(data.path())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&rep.stdout);
    let mut symbols = Vec::new();
    for l in text.lines().filter(|l| !l.starts_with('#') && l.contains('%')) {
        let mut it = l.split_whitespace();
        let (Some(pct), Some(space)) = (it.next(), it.next()) else { continue };
        let Ok(pct) = pct.trim_end_matches('%').parse::<f64>() else { continue };
        symbols.push((pct, it.collect::<Vec<_>>().join(" "), space == "[k]"));
    }
    let mut kinds: BTreeMap<&str, f64> = BTreeMap::new();
    for (pct, sym, kernel) in &symbols {
        let other = if *kernel { "kernel: scheduling, interrupts, other" } else { "other user space" };
        let kind = KINDS.iter().find(|(_, pats)| pats.iter().any(|p| sym.contains(p))).map_or(other, |(k, _)| k);
        *kinds.entry(kind).or_default() += pct;
    }
    let symbols = symbols.into_iter().map(|(p, s, _)| (p, s)).collect();
    let mut kinds: Vec<(f64, String)> = kinds.into_iter().map(|(k, v)| (v, k.to_string())).collect();
    kinds.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(Profile { symbols, kinds })
}

/// Markdown: the kinds, then the top symbols.
pub fn print(title: &str, p: &Profile, top: usize) {
    println!("\n#### {title}\n\n| share of CPU samples | kind of work |\n|---:|---|");
    for (pct, k) in &p.kinds {
        println!("| {pct:.1} % | {k} |");
    }
    println!("\nTop symbols:\n\n| self | symbol |\n|---:|---|");
    for (pct, s) in p.symbols.iter().take(top) {
        let s: String = s.chars().take(90).collect();
        println!("| {pct:.1} % | `{}` |", s.replace('|', "\\|"));
    }
}
