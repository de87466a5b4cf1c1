//! A job's folder (`exports/<job>`, or its bucket prefix) names runs rather than holding one: it is
//! listed (each run's id, whether it is complete, its files and resources when known, which one
//! `latest` names), and nothing in it is checked.

use serde::Serialize;

use super::input::{is_run_file, is_run_folder};
use super::standing::{JobView, Status, assess, verified_so_far};
use crate::record::{MANIFEST_FILE, RUN_FILE, RunRecord};
use crate::store::reader::Tree;

#[derive(Debug, Clone, Serialize)]
pub struct RunListing {
    pub id: String,
    pub status: Status,
    pub latest: bool,
    #[serde(rename = "transactionTime")]
    pub transaction_time: Option<String>,
    /// Data files and resources: from `run.json`, or verified so far for a run in flight.
    pub files: Option<u64>,
    pub resources: Option<u64>,
}

/// The runs of the job at `tree`, oldest first (run ids are UTC times).
pub(super) fn list(tree: &Tree) -> Vec<RunListing> {
    let loc = tree.location();
    let latest = crate::store::Dir::open(&loc).ok().and_then(|d| d.latest().ok().flatten());
    let view = JobView::of(&loc);
    run_ids(tree)
        .into_iter()
        .map(|id| {
            let record: Option<RunRecord> =
                tree.read(&format!("{id}/{RUN_FILE}")).and_then(|b| serde_json::from_slice(&b).ok());
            let (status, _) = assess(record.as_ref(), Some(&view), &id, 0);
            let (files, resources) = match (&record, view.in_flight_for(&id)) {
                (Some(r), _) => (Some(r.totals.files), Some(r.totals.resources)),
                (None, Some(f)) => {
                    let (n, r) = verified_so_far(f);
                    (Some(n), Some(r))
                }
                (None, None) => (None, None),
            };
            let transaction_time = record.as_ref().map(|r| r.transaction_time.clone()).or_else(|| {
                let m = tree.read(&format!("{id}/{MANIFEST_FILE}"))?;
                let v: serde_json::Value = serde_json::from_slice(&m).ok()?;
                v["transactionTime"].as_str().map(str::to_string)
            });
            RunListing {
                latest: latest.as_deref() == Some(id.as_str()),
                id,
                status,
                transaction_time,
                files,
                resources,
            }
        })
        .collect()
}

/// The folders of the job that hold a run (a manifest or a record), sorted.
fn run_ids(tree: &Tree) -> Vec<String> {
    let mut ids: Vec<String> = match tree {
        Tree::Local(p) => std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|id| is_run_folder(&p.join(id)))
            .collect(),
        Tree::Object { .. } => tree
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(rel, _)| {
                let (id, f) = rel.split_once('/')?;
                is_run_file(f).then(|| id.to_string())
            })
            .collect(),
    };
    ids.retain(|id| !id.starts_with('.'));
    ids.sort();
    ids.dedup();
    ids
}
