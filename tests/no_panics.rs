//! Untrusted input never panics (issue 9): job files, manifests, NDJSON lines, Retry-After and
//! X-Progress values, arbitrary and mutated. Property tests with a fixed case count, so they are fast.

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use oneup_bulk::export::{manifest, poll};
use oneup_bulk::job::PollSettings;
use oneup_bulk::ndjson::{LineSplitter, check_line};
use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};

#[path = "support/mod.rs"]
mod support;
use support::write_file;

const JOB: &str = "name: x\naccess: bulk-data\nfhir_base: https://s.example/fhir\nauth:\n  client_id: a\n  client_secret: b\n  token_url: https://s.example/t\nexport:\n  types: [Patient]\n  since: 2024-01-01\npoll:\n  timeout: 1h\n";
const MANIFEST: &str = r#"{"transactionTime":"2024-01-01T00:00:00Z","request":"x","requiresAccessToken":true,"output":[{"type":"Patient","url":"https://s/1","count":2}],"error":[]}"#;

fn mutate(base: &str, edits: &[(usize, u8)]) -> String {
    let mut b = base.as_bytes().to_vec();
    for &(at, byte) in edits {
        let i = at % (b.len() + 1);
        if byte % 3 == 0 && i < b.len() {
            b.remove(i);
        } else {
            b.insert(i, byte);
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn job_parser_never_panics(text in "\\PC{0,300}") {
        let _ = oneup_bulk::job::parse(&text, "x.yaml", Path::new("."), &|_| Some("v".into()));
    }

    #[test]
    fn job_parser_never_panics_on_mutated_jobs(edits in proptest::collection::vec((0usize..400, 0u8..128), 1..6)) {
        let text = mutate(JOB, &edits);
        if let Err(e) = oneup_bulk::job::parse(&text, "x.yaml", Path::new("."), &|_| Some("v".into())) {
            prop_assert!(e.to_string().starts_with("error: "));
            // Never an empty error, and with an environment never a note: every problem is an error.
            prop_assert!(!e.diagnostics.is_empty() && e.diagnostics.iter().all(|d| d.is_error()), "{e}");
        }
    }

    #[test]
    fn job_linter_never_panics_without_the_environment(edits in proptest::collection::vec((0usize..400, 0u8..128), 1..6)) {
        // `validate --no-env` on mutated jobs (with a variable in them): no panic, an error is an error.
        let text = mutate(&JOB.replace("client_id: a", "client_id: ${ID}"), &edits);
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "x.yaml", &text);
        if let Err(e) = oneup_bulk::job::lint(&path, oneup_bulk::job::Env::Unchecked) {
            prop_assert!(e.diagnostics.iter().any(|d| d.is_error()), "{e}");
        }
    }

    #[test]
    fn manifest_parser_never_panics(edits in proptest::collection::vec((0usize..300, 0u8..128), 0..6)) {
        let text = mutate(MANIFEST, &edits);
        if let Ok(m) = manifest::parse(text.as_bytes()) {
            let base = url::Url::parse("https://s/fhir/").unwrap();
            if let Ok(files) = manifest::plan(&m, &base) {
                for f in files {
                    prop_assert!(!f.path.contains(".."));
                    prop_assert!(!f.path.starts_with('/'));
                }
            }
        }
    }

    #[test]
    fn line_splitter_and_checker_never_panic_and_count_right(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        cuts in proptest::collection::vec(0usize..2000, 0..8),
        max in 1usize..200,
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort();
        let mut s = LineSplitter::new(max);
        let mut seen = 0u64;
        let mut f = |_: u64, l: Result<&[u8], _>| {
            seen += 1;
            if let Ok(l) = l {
                let _ = check_line(l, Some("Patient"));
            }
        };
        let mut prev = 0;
        for c in cuts.into_iter().chain(std::iter::once(data.len())) {
            s.feed(&data[prev..c], &mut f);
            prev = c;
        }
        s.finish(&mut f);
        // Every non-blank line is reported exactly once (as a line or as too long).
        let expected = data
            .split(|b| *b == b'\n')
            .filter(|l| { let l = l.strip_suffix(b"\r").unwrap_or(l); !l.iter().all(u8::is_ascii_whitespace) || l.len() > max })
            .count() as u64;
        prop_assert_eq!(seen, expected);
    }

    #[test]
    fn retry_after_and_progress_never_panic(value in "[ -~]{0,60}", status in 100u16..600) {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert("retry-after", v.clone());
            h.insert("x-progress", v);
        }
        let _ = oneup_bulk::http::retry_after(&h, SystemTime::now());
        let settings = PollSettings { min_interval: Duration::from_secs(1), max_interval: Duration::from_secs(60), timeout: Duration::from_secs(3600) };
        let clock = poll::Clock { elapsed: Duration::from_secs(5), polls: 3, now: SystemTime::now(), jitter: 0.5 };
        if let poll::Step::Wait { after, .. } = poll::next_step(status, &h, &Bytes::from(value.clone()), clock, &settings) {
            prop_assert!(after >= settings.min_interval && after <= settings.max_interval);
        }
    }
}
