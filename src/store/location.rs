//! Where `download.dir` (or `--out`) points: a local folder, or a bucket and prefix in object storage
//! (`s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`). Parsing is pure, so a job
//! file's mistake is reported at resolution with its line and column, before anything is sent.

use std::fmt;
use std::path::{Path, PathBuf};

/// A place for a job's runs and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Object(ObjectUrl),
}

/// A bucket (an Azure container) and a `/`-separated prefix inside it, without leading or trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUrl {
    pub scheme: Scheme,
    pub bucket: String,
    pub prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    S3,
    Gs,
    Az,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Gs => "gs",
            Scheme::Az => "az",
        }
    }
}

impl Location {
    /// `s3://…`, `gs://…` or `az://…` is object storage; anything without `://` is a local path.
    pub fn parse(s: &str) -> Result<Location, String> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(s)));
        };
        let scheme = match scheme {
            "s3" => Scheme::S3,
            "gs" => Scheme::Gs,
            "az" => Scheme::Az,
            other => {
                return Err(format!(
                    "`{other}://` is not a storage this tool writes to; use a local folder, s3://, gs:// or az://"
                ));
            }
        };
        if rest.contains(['?', '#', '\\']) {
            return Err(format!("{s}: a storage URL has no query, fragment or backslash"));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let what = if scheme == Scheme::Az { "container" } else { "bucket" };
        if bucket.is_empty() {
            return Err(format!("{s}: no {what} name; write {}://{what}/prefix", scheme.as_str()));
        }
        if !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)) {
            return Err(format!("{s}: a {what} name is lowercase letters, digits, `-`, `.` and `_`"));
        }
        let mut parts = Vec::new();
        for seg in prefix.split('/').filter(|p| !p.is_empty()) {
            if seg == "." || seg == ".." {
                return Err(format!("{s}: `{seg}` is not allowed in a storage prefix"));
            }
            parts.push(seg);
        }
        Ok(Location::Object(ObjectUrl { scheme, bucket: bucket.to_string(), prefix: parts.join("/") }))
    }

    /// A path from the command line (`--out`, `inspect PATH`): parsed the same way.
    pub fn from_path(p: &Path) -> Result<Location, String> {
        match p.to_str() {
            Some(s) => Location::parse(s),
            None => Ok(Location::Local(p.to_path_buf())),
        }
    }

    /// `self/name`, where `name` is one or more `/`-separated segments.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(p) => Location::Local(p.join(name)),
            Location::Object(u) => Location::Object(u.join(name)),
        }
    }

    pub fn local(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::Object(_) => None,
        }
    }

    /// The last segment (`latest` for `s3://b/exports/job/latest`).
    pub fn file_name(&self) -> Option<String> {
        match self {
            Location::Local(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
            Location::Object(u) => u.prefix.rsplit('/').next().filter(|s| !s.is_empty()).map(str::to_string),
        }
    }

    /// The location one level up.
    pub fn parent(&self) -> Option<Location> {
        match self {
            Location::Local(p) => p.parent().map(|p| Location::Local(p.to_path_buf())),
            Location::Object(u) if u.prefix.is_empty() => None,
            Location::Object(u) => {
                let prefix = u.prefix.rsplit_once('/').map(|(a, _)| a.to_string()).unwrap_or_default();
                Some(Location::Object(ObjectUrl { prefix, ..u.clone() }))
            }
        }
    }
}

impl ObjectUrl {
    pub fn join(&self, name: &str) -> ObjectUrl {
        let mut prefix = self.prefix.clone();
        for seg in name.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(seg);
        }
        ObjectUrl { prefix, ..self.clone() }
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Object(u) => u.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(s: &str) -> ObjectUrl {
        match Location::parse(s).unwrap() {
            Location::Object(u) => u,
            l => panic!("{s} parsed as {l:?}"),
        }
    }

    #[test]
    fn local_paths_stay_paths() {
        assert_eq!(Location::parse("exports").unwrap(), Location::Local("exports".into()));
        assert_eq!(Location::parse("/var/lib/x:y").unwrap(), Location::Local("/var/lib/x:y".into()));
    }

    #[test]
    fn object_urls_parse_and_print_back() {
        let u = obj("s3://phi-exports/bulk//nightly/");
        assert_eq!((u.scheme, u.bucket.as_str(), u.prefix.as_str()), (Scheme::S3, "phi-exports", "bulk/nightly"));
        assert_eq!(u.to_string(), "s3://phi-exports/bulk/nightly");
        assert_eq!(obj("gs://b").to_string(), "gs://b");
        assert_eq!(obj("az://container/p").scheme, Scheme::Az);
        assert_eq!(obj("s3://b/p").join("job/.state").to_string(), "s3://b/p/job/.state");
        assert_eq!(obj("s3://b").join("job").prefix, "job");
    }

    #[test]
    fn names_and_parents() {
        let l = Location::parse("s3://b/exports/job/latest").unwrap();
        assert_eq!(l.file_name().as_deref(), Some("latest"));
        assert_eq!(l.parent().unwrap().to_string(), "s3://b/exports/job");
        assert_eq!(Location::parse("s3://b").unwrap().parent(), None);
    }

    #[test]
    fn mistakes_are_explained() {
        let e = |s: &str| Location::parse(s).unwrap_err();
        assert_eq!(
            e("s4://b/p"),
            "`s4://` is not a storage this tool writes to; use a local folder, s3://, gs:// or az://"
        );
        assert_eq!(e("s3:///p"), "s3:///p: no bucket name; write s3://bucket/prefix");
        assert_eq!(e("az:///p"), "az:///p: no container name; write az://container/prefix");
        assert_eq!(
            e("s3://My_Bucket/p"),
            "s3://My_Bucket/p: a bucket name is lowercase letters, digits, `-`, `.` and `_`"
        );
        assert_eq!(e("s3://b/a/../c"), "s3://b/a/../c: `..` is not allowed in a storage prefix");
        assert_eq!(e("s3://b/p?x=1"), "s3://b/p?x=1: a storage URL has no query, fragment or backslash");
    }
}
