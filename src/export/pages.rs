//! Paged manifests (`link` next, Bulk Data `allowPartialManifests`): every page is fetched through the
//! asynchronous-request poller, kept in the run folder as `manifest.NNN.json` (so a resumed run reads
//! them from disk), and merged into one manifest.

use std::time::SystemTime;

use url::Url;

use super::manifest::{self, Manifest};
use super::poll::{self, Polled};
use crate::error::{Error, Result};
use crate::job::PollSettings;
use crate::session::Session;

/// Whether pages are kept in the run folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pages {
    /// Read each page from the run folder when it is there, else fetch and save it.
    Saved,
    /// Fetch every page fresh (to renew expired file URLs) and save none over the originals.
    Fresh,
}

/// Follows `first`'s `link` next pages and merges them.
pub async fn collect(
    session: &Session,
    settings: &PollSettings,
    status_url: &Url,
    run_dir: &crate::store::Dir,
    first: Manifest,
    mode: Pages,
) -> Result<Manifest> {
    let mut pages = vec![first];
    while let Some(next) = pages.last().and_then(manifest::next_link) {
        if pages.len() >= manifest::MAX_PAGES {
            return Err(Error::ServerRejected(format!("the manifest has more than {} pages", manifest::MAX_PAGES)));
        }
        let number = pages.len() + 1;
        let page_file = manifest::page_file_name(number);
        let on_disk = if mode == Pages::Saved { run_dir.read(&page_file)? } else { None };
        let body = match on_disk {
            Some(b) => b,
            None => {
                let url = status_url
                    .join(&next)
                    .map_err(|e| Error::ServerRejected(format!("manifest link {next:?}: {e}")))?;
                crate::job::check_url_scheme(&url).map_err(Error::ServerRejected)?;
                match poll::wait(session, &url, settings, SystemTime::now(), |_| {}).await? {
                    Polled::Ready(b) => {
                        if mode == Pages::Saved {
                            run_dir.write(&page_file, &b)?;
                        }
                        b
                    }
                    Polled::Gone(gone) => return Err(Error::gone(format!("manifest page {number}: {gone}"))),
                }
            }
        };
        pages.push(manifest::parse(&body)?);
    }
    Ok(manifest::merge(pages))
}
