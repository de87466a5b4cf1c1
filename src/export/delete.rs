//! Asking the server to forget an export: `DELETE` on its status URL, best effort (after a complete run
//! with `download.delete_on_success`, and for `cancel`). Some servers, 1up among them, answer 403.

use url::Url;

use crate::session::{Req, Session};

/// Sends the DELETE; the status the server answered, or `None` when it could not be reached.
pub async fn delete_export(session: &Session, status_url: &Url) -> Option<u16> {
    let mut req = Req::get(status_url.clone(), "delete export");
    req.method = reqwest::Method::DELETE;
    match session.send(&req, 1 << 20).await {
        Ok(r) if r.status.is_success() => Some(r.status.as_u16()),
        Ok(r) if matches!(r.status.as_u16(), 404 | 410) => {
            tracing::debug!(status = r.status.as_u16(), "the server no longer has the export");
            Some(r.status.as_u16())
        }
        Ok(r) => {
            tracing::warn!(
                status = r.status.as_u16(),
                "the server did not delete the export (some servers, 1up among them, answer 403 here)"
            );
            Some(r.status.as_u16())
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not delete the export on the server");
            None
        }
    }
}
