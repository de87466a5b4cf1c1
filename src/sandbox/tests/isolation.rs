//! The sandbox depends on nothing inside the client: it is the other side of every integration test,
//! so sharing code with the client (an instant parser, a type, a redaction helper) would let a bug
//! pass on both sides. This test reads the sandbox's sources and fails on any path that leaves it.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every line of `text` that names something outside the sandbox, as `line: text`.
fn escapes(text: &str, is_mod_rs: bool) -> Vec<String> {
    // Built from pieces, so this file does not trip over its own patterns.
    let krate = ["crate", "::"].concat();
    let inside = [krate.as_str(), "sandbox"].concat();
    let by_name = ["oneup_bulk", "::"].concat();
    let three_up = ["super", "::"].concat().repeat(3);
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let crate_path = line.match_indices(&krate).any(|(i, _)| !line[i..].starts_with(&inside));
        // In sandbox/mod.rs, `super` is already the client's crate root; two levels below it, three
        // `super`s are (a `mod tests` inside a file is one of those levels).
        let up = (is_mod_rs && line.contains("super::")) || line.contains(&three_up);
        if crate_path || up || line.contains(&by_name) {
            out.push(format!("{}: {}", n + 1, line.trim()));
        }
    }
    out
}

#[test]
fn the_sandbox_imports_nothing_from_the_client() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sandbox");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    assert!(files.len() > 10, "found the sandbox's sources: {files:?}");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let is_mod_rs = f == &root.join("mod.rs");
        for e in escapes(&text, is_mod_rs) {
            found.push(format!("{}:{e}", f.strip_prefix(&root).unwrap().display()));
        }
    }
    assert!(found.is_empty(), "the sandbox must not use the client's code:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_every_way_out() {
    let k = ["crate", "::"].concat();
    let s = ["super", "::"].concat();
    assert_eq!(escapes(&format!("use {k}sandbox::fhir;\nuse {s}fhir::oo;"), false), Vec::<String>::new());
    assert_eq!(escapes(&format!("use {k}instant::parse;"), false), [format!("1: use {k}instant::parse;")]);
    assert_eq!(escapes(&format!("x({k}sandbox::a, {k}redact::b)"), false).len(), 1, "a second path on the line");
    assert_eq!(escapes(&format!("use {s}job::Job;"), true).len(), 1, "mod.rs: super is the crate root");
    assert_eq!(escapes(&format!("use {s}{s}{s}job::Job;"), false).len(), 1);
    assert_eq!(escapes(&["use oneup_bulk", "::job;"].concat(), false).len(), 1);
}
