//! Object storage through the `object_store` crate: the client for an [`ObjectUrl`] (credentials from
//! each cloud's standard environment and instance chains, via its `from_env` builder), and the few
//! calls the tool makes on a prefix: whole-object puts (plain or conditional), gets, heads, deletes
//! and listings. Every error becomes one of ours with the object's URL and without credentials.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::multipart::MultipartStore;
use object_store::path::Path as Key;
use object_store::{ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::location::{ObjectUrl, Scheme};
use crate::error::{Error, Result};

/// Both halves of a cloud client: plain objects and the low-level multipart calls (whose upload ids we
/// keep, so a crashed run's uploads can be aborted by the next one).
pub trait Backend: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> Backend for T {}

/// Environment variables whose values are secrets: scrubbed from any error text we pass on.
const SECRET_VARS: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_BEARER_TOKEN",
];

/// A prefix in a bucket, with the client that reaches it. Cheap to clone.
#[derive(Clone)]
pub struct ObjectDir {
    pub backend: Arc<dyn Backend>,
    pub url: ObjectUrl,
}

impl std::fmt::Debug for ObjectDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's Debug would print its configuration; the URL is all a message needs.
        write!(f, "ObjectDir({})", self.url)
    }
}

/// What a conditional write expects to find.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// No object yet (create-if-absent).
    Absent,
    /// The object as we last read or wrote it (its ETag / version).
    Version(UpdateVersion),
}

/// Builds the client for `url`'s bucket from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`), then
/// `config` (`object_store` configuration keys such as `aws_endpoint`; empty outside tests).
pub fn connect(url: &ObjectUrl, config: &[(&str, &str)]) -> Result<Arc<dyn Backend>> {
    let failed = |e: object_store::Error| Error::Failed(format!("{url}: {}", scrub(&e.to_string())));
    Ok(match url.scheme {
        Scheme::S3 => {
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(&url.bucket)
                .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "60s");
            for (k, v) in config {
                b = b.with_config(k.parse().map_err(failed)?, *v);
            }
            let endpoint = b.get_config_value(&AmazonS3ConfigKey::Endpoint);
            check_endpoint(url, endpoint.as_deref())?;
            Arc::new(b.build().map_err(failed)?)
        }
        Scheme::Gs => {
            let b = GoogleCloudStorageBuilder::from_env().with_bucket_name(&url.bucket);
            check_endpoint(url, b.get_config_value(&GoogleConfigKey::BaseUrl).as_deref())?;
            Arc::new(b.build().map_err(failed)?)
        }
        Scheme::Az => {
            let mut b = MicrosoftAzureBuilder::from_env().with_container_name(&url.bucket);
            for (k, v) in config {
                b = b.with_config(k.parse().map_err(failed)?, *v);
            }
            check_endpoint(url, b.get_config_value(&AzureConfigKey::Endpoint).as_deref())?;
            let emulator = b.get_config_value(&AzureConfigKey::UseEmulator);
            let emulator_url = std::env::var("AZURITE_BLOB_STORAGE_URL").ok();
            check_endpoint(url, azure_emulator_endpoint(emulator.as_deref(), emulator_url.as_deref()))?;
            Arc::new(b.build().map_err(failed)?)
        }
    })
}

/// Where object_store's Azure client goes in emulator mode (`AZURE_STORAGE_USE_EMULATOR`): always
/// plain http, to `AZURITE_BLOB_STORAGE_URL` or Azurite's default address. It bypasses the endpoint
/// setting, so it is checked on its own.
fn azure_emulator_endpoint<'a>(use_emulator: Option<&str>, url: Option<&'a str>) -> Option<&'a str> {
    let on = use_emulator.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes" | "y"));
    on.then(|| url.unwrap_or("http://127.0.0.1:10000"))
}

/// Plain http only to a loopback endpoint (a local test server), as for every other URL the tool uses.
fn check_endpoint(url: &ObjectUrl, endpoint: Option<&str>) -> Result<()> {
    let Some(e) = endpoint.filter(|e| e.starts_with("http://")) else { return Ok(()) };
    let loopback = url::Url::parse(e).ok().is_some_and(|u| match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    });
    if loopback {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{url}: the storage endpoint {e} is plain http; use https (plain http is allowed only to 127.0.0.1 or localhost)"
        )))
    }
}

/// Removes credential values from a message (a store's error body may quote the access key id).
pub fn scrub(msg: &str) -> String {
    let mut s = msg.to_string();
    for v in SECRET_VARS.iter().filter_map(|k| std::env::var(k).ok()).filter(|v| v.len() >= 4) {
        s = s.replace(&v, "[redacted]");
    }
    s
}

impl ObjectDir {
    pub fn open(url: &ObjectUrl) -> Result<ObjectDir> {
        Self::open_with(url, &[])
    }

    /// As [`ObjectDir::open`], with configuration keys on top of the environment's.
    pub fn open_with(url: &ObjectUrl, config: &[(&str, &str)]) -> Result<ObjectDir> {
        Ok(ObjectDir { backend: connect(url, config)?, url: url.clone() })
    }

    pub fn join(&self, name: &str) -> ObjectDir {
        ObjectDir { backend: self.backend.clone(), url: self.url.join(name) }
    }

    /// The key of `rel` under this prefix.
    pub fn key(&self, rel: &str) -> Key {
        Key::from(self.url.join(rel).prefix)
    }

    /// Our error for a failed call on `rel`: a conflict is exit 75 (another run), a missing bucket or
    /// refused credentials exit 1, anything else (the network, after the client's retries) exit 75.
    pub fn error(&self, rel: &str, e: object_store::Error) -> Error {
        let at = self.url.join(rel);
        let text = scrub(&e.to_string());
        match e {
            object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. } => Error::Transient(
                format!("{at} was changed by another run of this job; this run stops without writing more state"),
            ),
            object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Error::Failed(format!("{at}: {text}")),
            _ => Error::Transient(format!("{at}: {text}; run again to resume")),
        }
    }

    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<UpdateVersion> {
        self.put_mode(rel, bytes, PutMode::Overwrite).await
    }

    /// A write that succeeds only if the object is as `expect` says; else an exit-75 conflict.
    pub async fn put_if(&self, rel: &str, bytes: Bytes, expect: &Expect) -> Result<UpdateVersion> {
        let mode = match expect {
            Expect::Absent => PutMode::Create,
            Expect::Version(v) => PutMode::Update(v.clone()),
        };
        self.put_mode(rel, bytes, mode).await
    }

    /// As [`ObjectDir::put_if`], with a lost race as `None` rather than an error.
    pub async fn try_put_if(&self, rel: &str, bytes: Bytes, expect: &Expect) -> Result<Option<UpdateVersion>> {
        let mode = match expect {
            Expect::Absent => PutMode::Create,
            Expect::Version(v) => PutMode::Update(v.clone()),
        };
        let opts = PutOptions { mode, ..Default::default() };
        match self.backend.put_opts(&self.key(rel), PutPayload::from(bytes), opts).await {
            Ok(r) => Ok(Some(UpdateVersion::from(r))),
            Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => Ok(None),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    async fn put_mode(&self, rel: &str, bytes: Bytes, mode: PutMode) -> Result<UpdateVersion> {
        let opts = PutOptions { mode, ..Default::default() };
        let r = self.backend.put_opts(&self.key(rel), PutPayload::from(bytes), opts).await;
        r.map(UpdateVersion::from).map_err(|e| self.error(rel, e))
    }

    /// The whole object (small ones only: state, records, pointers) and its version; `None` if absent.
    pub async fn get(&self, rel: &str) -> Result<Option<(Bytes, UpdateVersion)>> {
        match self.backend.get(&self.key(rel)).await {
            Ok(r) => {
                let v = UpdateVersion { e_tag: r.meta.e_tag.clone(), version: r.meta.version.clone() };
                Ok(Some((r.bytes().await.map_err(|e| self.error(rel, e))?, v)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// The object's size, if it exists.
    pub async fn size(&self, rel: &str) -> Result<Option<u64>> {
        match self.backend.head(&self.key(rel)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.backend.delete(&self.key(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// Every object under `rel/` (recursively), as (path relative to this prefix, size), sorted.
    pub async fn list(&self, rel: &str) -> Result<Vec<(String, u64)>> {
        let base = self.key(rel);
        let mut out = Vec::new();
        let mut s = self.backend.list(Some(&base));
        while let Some(m) = s.next().await {
            let m = m.map_err(|e| self.error(rel, e))?;
            let full = m.location.as_ref();
            let own = self.url.prefix.as_str();
            let relative = if own.is_empty() { full } else { full.strip_prefix(own).unwrap_or(full) };
            out.push((relative.trim_start_matches('/').to_string(), m.size));
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ObjectUrl {
        match super::super::Location::parse(s).unwrap() {
            super::super::Location::Object(u) => u,
            _ => unreachable!(),
        }
    }

    #[test]
    fn plain_http_endpoints_only_on_loopback() {
        let u = url("s3://b/p");
        assert!(check_endpoint(&u, None).is_ok());
        assert!(check_endpoint(&u, Some("https://s3.example.org")).is_ok());
        assert!(check_endpoint(&u, Some("http://127.0.0.1:9000")).is_ok());
        assert!(check_endpoint(&u, Some("http://localhost:9000")).is_ok());
        assert!(check_endpoint(&u, Some("http://[::1]:9000")).is_ok());
        let e = check_endpoint(&u, Some("http://minio.internal:9000")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "s3://b/p: the storage endpoint http://minio.internal:9000 is plain http; use https (plain http is allowed only to 127.0.0.1 or localhost)"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn the_azure_emulator_only_on_loopback() {
        let u = url("az://c/p");
        assert_eq!(azure_emulator_endpoint(None, Some("http://10.0.0.5:10000")), None);
        assert_eq!(azure_emulator_endpoint(Some("false"), Some("http://10.0.0.5:10000")), None);
        assert_eq!(azure_emulator_endpoint(Some("TRUE"), None), Some("http://127.0.0.1:10000"));
        let ok = azure_emulator_endpoint(Some("true"), Some("http://127.0.0.1:41234"));
        assert!(check_endpoint(&u, ok).is_ok());
        let far = azure_emulator_endpoint(Some("1"), Some("http://azurite.internal:10000"));
        let e = check_endpoint(&u, far).unwrap_err();
        assert_eq!(
            e.to_string(),
            "az://c/p: the storage endpoint http://azurite.internal:10000 is plain http; use https (plain http is allowed only to 127.0.0.1 or localhost)"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn keys_sit_under_the_prefix() {
        let d = ObjectDir { backend: Arc::new(object_store::memory::InMemory::new()), url: url("s3://b/exp") };
        assert_eq!(d.key("job/.state/lease").as_ref(), "exp/job/.state/lease");
        assert_eq!(d.join("job").key("latest").as_ref(), "exp/job/latest");
    }
}
