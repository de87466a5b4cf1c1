//! Asking the server to forget an export: `DELETE` on its status URL, best effort (after a complete run
//! with `download.delete_on_success`, and for `cancel`). 1up documents that its population-level exports
//! answer 403 to DELETE: for `provider-access` and `payer-to-payer` jobs that answer is reported as
//! information, not as a problem.

use url::Url;

use crate::job::Access;
use crate::session::{Req, Session};

/// What a DELETE answer means, for the log; `None` when there is nothing to say (it was deleted).
pub fn refusal_note(status: u16, access: Access) -> Option<(bool, String)> {
    match status {
        200..=299 => None,
        403 if access.get_only() => Some((
            false,
            "the server answered 403 to DELETE, as 1up documents for population-level exports; the export stays until the server expires it".into(),
        )),
        s => Some((true, format!("the server did not delete the export (HTTP {s})"))),
    }
}

/// Sends the DELETE; the status the server answered, or `None` when it could not be reached.
pub async fn delete_export(session: &Session, status_url: &Url) -> Option<u16> {
    let mut req = Req::get(status_url.clone(), "delete export");
    req.method = reqwest::Method::DELETE;
    match session.send(&req, 1 << 20).await {
        Ok(r) if matches!(r.status.as_u16(), 404 | 410) => {
            tracing::debug!(status = r.status.as_u16(), "the server no longer has the export");
            Some(r.status.as_u16())
        }
        Ok(r) => {
            let status = r.status.as_u16();
            match refusal_note(status, session.access) {
                Some((true, note)) => tracing::warn!(status, "{note}"),
                Some((false, note)) => tracing::info!(status, "{note}"),
                None => {}
            }
            Some(status)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not delete the export on the server");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_403_is_1ups_documented_answer_not_a_warning() {
        assert_eq!(refusal_note(202, Access::ProviderAccess), None);
        assert_eq!(refusal_note(403, Access::PayerToPayer).map(|n| n.0), Some(false));
        assert_eq!(
            refusal_note(403, Access::BulkData),
            Some((true, "the server did not delete the export (HTTP 403)".into()))
        );
        assert_eq!(refusal_note(500, Access::ProviderAccess).map(|n| n.0), Some(true));
    }
}
