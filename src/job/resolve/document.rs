//! YAML text → the raw job: one document, a mapping, every unknown key reported (and set aside, so
//! the rest of the file is still checked), then serde into [`RawJob`]. A YAML file that is not a job
//! file at all (a Kubernetes manifest: `apiVersion`/`kind` and none of the job keys) is told apart
//! here, so `validate examples/**` can skip it and `run` can say what it is.

use serde::Deserialize;
use yaml_serde::{Mapping, Value};

use super::Resolver;
use crate::job::diag::{Diagnostic, JobError, closest, did_you_mean};
use crate::job::locate::Pos;
use crate::job::raw::{self, RawJob};

pub(super) enum Document {
    Job(Box<RawJob>),
    /// What the file looks like instead, e.g. `a Kubernetes manifest (ConfigMap, CronJob)`.
    NotAJob(String),
}

/// `run`'s error for a file that is not a job file.
pub(super) fn not_a_job_error(file: &str, what: &str) -> JobError {
    let mut d = Diagnostic::file(file, format!("not a job file: {what}"));
    d.hint = Some("a job file has `access:`, `fhir_base:` and `auth:` at the top (README: Job files)".into());
    JobError { diagnostics: vec![d] }
}

/// `Some(kinds)` when `v` is a manifest with `apiVersion`/`kind` and none of the job keys.
fn manifest_kind(v: &Value) -> Option<String> {
    let map = v.as_mapping()?;
    let top = raw::keys_of("").unwrap_or_default();
    let has = |k: &str| map.contains_key(k);
    if !(has("apiVersion") || has("kind")) || top.iter().any(|k| has(k)) {
        return None;
    }
    Some(map.get("kind").and_then(Value::as_str).unwrap_or("no kind").to_string())
}

impl Resolver<'_> {
    /// The raw job of `text`, or `Err` with the diagnostics already pushed.
    pub(super) fn document(&mut self, text: &str) -> Result<Document, ()> {
        let mut docs = Vec::new();
        for de in yaml_serde::Deserializer::from_str(text) {
            match Value::deserialize(de) {
                Ok(v) if v.is_null() => {}
                Ok(v) => docs.push(v),
                Err(e) => {
                    self.yaml_error(&e);
                    return Err(());
                }
            }
        }
        let kinds: Option<Vec<String>> = docs.iter().map(manifest_kind).collect();
        if let Some(kinds) = kinds.filter(|k| !k.is_empty()) {
            return Ok(Document::NotAJob(format!("a Kubernetes manifest ({})", kinds.join(", "))));
        }
        let mut value = match docs.len() {
            0 => {
                self.diags.push(Diagnostic::file(self.file, "the job file is empty"));
                return Err(());
            }
            1 => docs.remove(0),
            n => {
                self.diags.push(Diagnostic::file(
                    self.file,
                    format!("a job file holds one YAML document; this one has {n} (separated by `---`)"),
                ));
                return Err(());
            }
        };
        let Some(map) = value.as_mapping_mut() else {
            self.diags
                .push(Diagnostic::file(self.file, "a job file is a mapping of keys (name:, access:, fhir_base:, …)"));
            return Err(());
        };
        self.unknown_keys(map, "");
        match yaml_serde::from_value::<RawJob>(value) {
            Ok(raw) => Ok(Document::Job(Box::new(raw))),
            // Every value is a lenient `Field` and unknown keys are gone, so this is not expected.
            Err(e) => {
                self.diags.push(Diagnostic::file(self.file, e.to_string()));
                Err(())
            }
        }
    }

    fn yaml_error(&mut self, e: &yaml_serde::Error) {
        let text = e.to_string();
        // yaml_serde appends " at line L column C"; we show the place our own way.
        let message = text.split(" at line ").next().unwrap_or(&text).to_string();
        let pos = e.location().map(|l| Pos { line: l.line(), column: l.column() });
        self.diags.push(Diagnostic::at(self.file, self.loc, pos, message, None));
    }

    /// Reports every key a section does not have, and removes it so serde reads the rest.
    fn unknown_keys(&mut self, map: &mut Mapping, section: &str) {
        let Some(allowed) = raw::keys_of(section) else {
            return;
        };
        let mut unknown = Vec::new();
        for (k, child) in map.iter_mut() {
            let key = match k.as_str() {
                Some(s) => s.to_string(),
                None => yaml_serde::to_string(k).map(|s| s.trim().to_string()).unwrap_or_default(),
            };
            let path = if section.is_empty() { key.clone() } else { format!("{section}.{key}") };
            if !allowed.contains(&key.as_str()) {
                let pos = self.loc.key(&path);
                let where_ = if section.is_empty() { "at the top level".into() } else { format!("in `{section}`") };
                let hint =
                    did_you_mean(&key, allowed).or_else(|| Some(format!("allowed here: {}", allowed.join(", "))));
                if let Some(meant) = closest(&key, allowed) {
                    let meant = if section.is_empty() { meant.to_string() } else { format!("{section}.{meant}") };
                    self.explained.insert(meant);
                }
                self.diags.push(Diagnostic::at(
                    self.file,
                    self.loc,
                    pos,
                    format!("unknown key `{key}` {where_}"),
                    hint,
                ));
                unknown.push(k.clone());
            } else if section.is_empty()
                && let Some(m) = child.as_mapping_mut()
            {
                self.unknown_keys(m, &key);
            }
        }
        for k in unknown {
            map.shift_remove(&k);
        }
    }
}
