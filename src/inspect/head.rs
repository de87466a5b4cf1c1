//! `--head N`: the first N resources of each type (the data files' types; with `--type T`, of T
//! alone, from any file, `error/` and `deleted/` included), printed as the lines are in the files, or
//! indented with `--pretty` (keys in their order, numbers and strings as written). A `--type` that
//! names no type here is a usage error, with the nearest name when one is close.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::Path;

use super::InspectOptions;
use super::input::{JOB, resolve};
use super::scan::{open, role, type_from_name};
use crate::error::{Error, Result};
use crate::inspect::FileRole;
use crate::job::fhir_types::{R4_RESOURCE_TYPES, is_r4_type};
use crate::ndjson::{LineError, LineSplitter, parse_head, read_lines};

pub fn print_head(opts: &InspectOptions, out: &mut dyn Write) -> Result<()> {
    let n = opts.head.unwrap_or(1);
    let only = opts.type_filter.as_deref();
    let mut shown: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut failed: Option<io::Error> = None;
    let mut buf = Vec::new();
    'inputs: for p in &opts.paths {
        let input = resolve(p)?;
        if input.kind == JOB {
            return Err(Error::Usage(format!("{}: a job folder; name one of its runs (…/latest)", input.path)));
        }
        for (f, _) in &input.files {
            let named = type_from_name(Path::new(f));
            seen.extend(named.clone());
            let full = |t: &str, shown: &BTreeMap<String, usize>| shown.get(t).copied().unwrap_or(0) >= n;
            let skip = match (only, &named) {
                (Some(t), _) if full(t, &shown) => break 'inputs,
                (Some(t), Some(x)) => x != t,
                (Some(_), None) => false,
                // Without --type, the export's data: not the server's errors or deletions.
                (None, _) if role(f) != FileRole::Output => true,
                (None, Some(x)) => full(x, &shown),
                (None, None) => false,
            };
            if skip {
                continue;
            }
            let err = |e| Error::io(format!("{}/{f}", input.tree.label()), e);
            let mut r = open(&input.tree, f).map_err(err)?;
            let mut splitter = LineSplitter::new(opts.max_line_bytes);
            // Reading stops once this file's type (or --type) has its N; an untyped file is read whole.
            let wanted = only.map(str::to_string).or(named);
            let stop = std::cell::Cell::new(false);
            let mut emit = |_: u64, line: std::result::Result<&[u8], LineError>| {
                if failed.is_some() {
                    return;
                }
                let Some((line, rt)) = line.ok().and_then(|l| Some((l, parse_head(l).ok()?.resource_type?))) else {
                    return;
                };
                if !seen.contains(rt.as_ref()) {
                    seen.insert(rt.to_string());
                }
                let count = shown.entry(rt.to_string()).or_default();
                if *count >= n || only.is_some_and(|t| t != rt) {
                    return;
                }
                buf.clear();
                if opts.pretty {
                    indent(line, &mut buf);
                } else {
                    buf.extend_from_slice(line);
                }
                buf.push(b'\n');
                match out.write_all(&buf) {
                    Ok(()) => *count += 1,
                    Err(e) => {
                        failed = Some(e);
                        stop.set(true);
                    }
                }
                if wanted.as_deref().is_some_and(|t| full(t, &shown)) {
                    stop.set(true);
                }
            };
            read_lines(&mut *r, &mut splitter, |_| !stop.get(), &mut emit).map_err(err)?;
            if failed.is_some() {
                break 'inputs;
            }
        }
    }
    if let Some(e) = failed {
        return Err(Error::io("stdout", e));
    }
    match only {
        Some(t) if shown.get(t).copied().unwrap_or(0) == 0 => Err(Error::Usage(not_found(t, &seen))),
        None if shown.values().all(|&c| c == 0) => Err(Error::Usage("no resources found".into())),
        _ => Ok(()),
    }
}

/// Why `--type t` printed nothing: not a type (and the nearest one), or not in these files.
fn not_found(t: &str, seen: &BTreeSet<String>) -> String {
    let here = if seen.is_empty() {
        String::new()
    } else {
        format!(" (types here: {})", seen.iter().map(String::as_str).collect::<Vec<_>>().join(", "))
    };
    if is_r4_type(t) || seen.contains(t) {
        return format!("no {t} resources here{here}");
    }
    let mut candidates: Vec<&str> = seen.iter().map(String::as_str).collect();
    candidates.extend(R4_RESOURCE_TYPES.iter().filter(|c| !seen.contains(**c)));
    match crate::job::diag::did_you_mean(t, &candidates) {
        Some(hint) => format!("`{t}` is not a FHIR resource type; {hint}{here}"),
        None => format!("`{t}` is not a FHIR resource type{here}"),
    }
}

/// A valid JSON line, indented two spaces a level; strings, numbers and key order as written.
fn indent(line: &[u8], out: &mut Vec<u8>) {
    let mut depth = 0usize;
    let (mut in_str, mut esc) = (false, false);
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * 2));
    };
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        i += 1;
        if in_str {
            out.push(b);
            match b {
                _ if esc => esc = false,
                b'\\' => esc = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_str = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                let close = if b == b'{' { b'}' } else { b']' };
                let next = line[i..].iter().position(|c| !c.is_ascii_whitespace()).map(|k| i + k);
                match next {
                    // `{}` and `[]` stay as they are.
                    Some(k) if line[k] == close => {
                        out.push(close);
                        i = k + 1;
                    }
                    _ => {
                        depth += 1;
                        newline(out, depth);
                    }
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ if b.is_ascii_whitespace() => {}
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pretty(s: &str) -> String {
        let mut out = Vec::new();
        indent(s.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn indents_in_the_order_written() {
        assert_eq!(
            pretty(r#"{"resourceType":"Patient","id":"a,b{","n":[1, 2.50],"x":{},"y":[],"s":"q\"}"}"#),
            "{\n  \"resourceType\": \"Patient\",\n  \"id\": \"a,b{\",\n  \"n\": [\n    1,\n    2.50\n  ],\n  \"x\": {},\n  \
             \"y\": [],\n  \"s\": \"q\\\"}\"\n}"
        );
    }

    #[test]
    fn a_misspelt_type_gets_the_nearest_name() {
        let seen: BTreeSet<String> = ["Patient".to_string(), "Coverage".to_string()].into();
        assert_eq!(
            not_found("Patinet", &seen),
            "`Patinet` is not a FHIR resource type; did you mean `Patient`? (types here: Coverage, Patient)"
        );
        assert_eq!(not_found("Observation", &seen), "no Observation resources here (types here: Coverage, Patient)");
        assert_eq!(not_found("Zzzz", &BTreeSet::new()), "`Zzzz` is not a FHIR resource type");
    }
}
