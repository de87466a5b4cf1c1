//! A Group's size, read before an export (`check`): 1up documents at most 10,000 members per Group, so
//! a bigger one is worth a warning before hours of exporting. [`size`] and [`limit_warning`] are pure;
//! [`read_size`] is the one GET.

use reqwest::header::ACCEPT;
use serde_json::Value;

use crate::http::MAX_SMALL_BODY;
use crate::job::{Access, Job, ONEUP_GROUP_LIMIT};
use crate::session::{Req, Session};

/// Members in a Group resource: its `member` list, or its `quantity` when that says more.
pub fn size(group: &Value) -> Option<usize> {
    if group["resourceType"] != "Group" {
        return None;
    }
    let listed = group["member"].as_array().map(Vec::len);
    let quantity = group["quantity"].as_u64().map(|q| q as usize);
    listed.max(quantity)
}

/// The warning for a Group over 1up's limit (1up's access types only).
pub fn limit_warning(access: Access, id: &str, size: usize) -> Option<String> {
    (access.get_only() && size > ONEUP_GROUP_LIMIT).then(|| {
        format!("Group/{id} has {size} members: more than the {ONEUP_GROUP_LIMIT} a 1up Group holds (1up's documented limit)")
    })
}

/// `GET [base]/Group/{id}`: its size, or why it could not be read.
pub async fn read_size(session: &Session, job: &Job, id: &str) -> Result<usize, String> {
    let enc: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    let url = job.fhir_base.join(&format!("Group/{enc}")).expect("relative");
    let req = Req::get(url, "Group").header(ACCEPT, "application/fhir+json");
    let r = session.send(&req, MAX_SMALL_BODY).await.map_err(|e| e.to_string())?;
    if !r.status.is_success() {
        return Err(format!("HTTP {}: {}", r.status.as_u16(), crate::fhir::outcome_text(&r.body)));
    }
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("not JSON ({e})"))?;
    size(&v).ok_or_else(|| "not a Group resource".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_and_the_limit() {
        assert_eq!(size(&json!({"resourceType": "Group", "member": [{}, {}]})), Some(2));
        assert_eq!(size(&json!({"resourceType": "Group", "quantity": 12000, "member": [{}]})), Some(12000));
        assert_eq!(size(&json!({"resourceType": "Patient"})), None);
        assert_eq!(limit_warning(Access::ProviderAccess, "g", 10_000), None);
        assert_eq!(
            limit_warning(Access::ProviderAccess, "g", 10_001).as_deref(),
            Some("Group/g has 10001 members: more than the 10000 a 1up Group holds (1up's documented limit)")
        );
        assert_eq!(limit_warning(Access::BulkData, "g", 20_000), None);
    }
}
