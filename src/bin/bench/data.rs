//! The two data sets: the sandbox's realistic claims-shaped FHIR (generated in-process, the same bytes
//! the sandbox serves) and a long-string set, DocumentReferences that are mostly one long clinical
//! note (a ~40 KB text with a `\n` escape every line of prose), like the exports of notes-heavy EHRs.

use oneup_bulk::sandbox::{DataSpec, ResourceType, Selection};

/// Sandbox scale per decimal megabyte of realistic data (scale 9000 ≈ 1.03 GB with 8 types).
pub const SCALE_PER_MB: f64 = 8.74;

/// The sandbox scale that gives about `mb` megabytes.
pub fn scale_for_mb(mb: u64) -> u32 {
    ((mb as f64 * SCALE_PER_MB).round() as u32).max(1)
}

/// Realistic NDJSON of every type at `scale`, one buffer per type, in memory.
pub fn realistic(scale: u32) -> Vec<(String, Vec<u8>)> {
    let spec = DataSpec { scale, anchor: 1_735_689_600 };
    let sel = Selection { types: ResourceType::ALL.to_vec(), since: None, until: None, patients: None };
    spec.generate(&sel).into_iter().map(|d| (d.rtype.name().to_string(), d.bytes.to_vec())).collect()
}

const WORDS: &[&str] = &[
    "patient",
    "presents",
    "with",
    "intermittent",
    "chest",
    "pain",
    "radiating",
    "to",
    "the",
    "left",
    "arm",
    "denies",
    "shortness",
    "of",
    "breath",
    "history",
    "hypertension",
    "type",
    "2",
    "diabetes",
    "mellitus",
    "on",
    "metformin",
    "500",
    "mg",
    "twice",
    "daily",
    "blood",
    "pressure",
    "138/86",
    "heart",
    "rate",
    "72",
    "regular",
    "lungs",
    "clear",
    "bilaterally",
    "abdomen",
    "soft",
    "non-tender",
    "plan:",
    "ECG",
    "troponin",
    "follow",
    "up",
    "in",
    "two",
    "weeks",
    "and",
    "discussed",
    "diet",
    "exercise",
    "counseling",
    "provided",
];

/// `files` files of long-note DocumentReferences totalling about `mb` megabytes.
pub fn long_text(mb: u64, files: usize) -> Vec<(String, Vec<u8>)> {
    let per_file = (mb * 1_000_000 / files as u64) as usize;
    let mut rng = fastrand::Rng::with_seed(17);
    let mut n = 0u64;
    (0..files)
        .map(|f| {
            let mut out = Vec::with_capacity(per_file + 50_000);
            while out.len() < per_file {
                n += 1;
                let day = 1 + n % 28;
                out.extend_from_slice(
                    format!(
                        "{{\"resourceType\":\"DocumentReference\",\"id\":\"doc-{n}\",\"meta\":{{\"lastUpdated\":\"2025-03-{day:02}T10:00:00Z\"}},\"status\":\"current\",\"subject\":{{\"reference\":\"Patient/pt-{}\"}},\"content\":[{{\"attachment\":{{\"contentType\":\"text/plain\",\"title\":\"Progress note\",\"data\":null}}}}],\"description\":\"",
                        n % 10_000
                    )
                    .as_bytes(),
                );
                let len = 30_000 + rng.usize(..20_000);
                let start = out.len();
                while out.len() - start < len {
                    for _ in 0..rng.usize(10..18) {
                        out.extend_from_slice(WORDS[rng.usize(..WORDS.len())].as_bytes());
                        out.push(b' ');
                    }
                    out.extend_from_slice(b"\\n");
                }
                out.extend_from_slice(b"\"}\n");
            }
            (format!("DocumentReference.{:03}", f + 1), out)
        })
        .collect()
}
