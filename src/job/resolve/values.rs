//! One value at a time: `${VAR}` expansion, enumerations, URLs, durations, sizes, instants, and the
//! files a job names (secrets, keys, CA roots), each problem reported at the value's place.

use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;
use url::Url;

use super::{Env, Resolver};
use crate::job::choice::Choice;
use crate::job::diag::{Diagnostic, choice_hint};
use crate::job::model::check_url_scheme;
use crate::job::raw::{Field, Size, Text};
use crate::redact::Secret;

impl Resolver<'_> {
    /// `${VAR}` from the environment; `$${` is a literal `${`. `None` after an error, or when a
    /// variable is not read ([`Env::Unchecked`]: a note, and the path is marked unchecked).
    pub(super) fn expand(&mut self, path: &str, s: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = s;
        let mut unchecked = false;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("${") {
                let Some(end) = tail.find('}') else {
                    self.err(path, "`${` without a closing `}`", Some("write ${NAME}, or $${ for a literal ${".into()));
                    return None;
                };
                let name = &tail[..end];
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    self.err(
                        path,
                        format!("`${{{name}}}` is not a variable name"),
                        Some("variable names are letters, digits and _".into()),
                    );
                    return None;
                }
                let env = match self.env {
                    Env::Vars(env) => env,
                    Env::Unchecked => {
                        let pos = self.loc.value(path);
                        let message = format!("environment variable `{name}` not checked (--no-env)");
                        self.diags.push(Diagnostic::at(self.file, self.loc, pos, message, None).note());
                        self.unchecked.insert(path.to_string());
                        unchecked = true;
                        rest = &tail[end + 1..];
                        continue;
                    }
                };
                match env(name) {
                    // Set but empty is almost always a cron or Kubernetes environment that lost a value.
                    Some(v) if v.is_empty() => {
                        self.err(path, format!("environment variable `{name}` is set but empty"), None);
                        return None;
                    }
                    Some(v) => out.push_str(&v),
                    None => {
                        self.err(
                            path,
                            format!("environment variable `{name}` is not set"),
                            Some(format!(
                                "export {name}=… before running, or set it in the cron/Kubernetes environment"
                            )),
                        );
                        return None;
                    }
                }
                rest = &tail[end + 1..];
            } else {
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
        (!unchecked).then_some(out)
    }

    /// A text value, expanded.
    pub(super) fn opt(&mut self, path: &str, v: Field<Text>) -> Option<String> {
        let t = self.take(path, v)?;
        self.expand(path, &t.0)
    }

    /// A list's items with their paths (`export.types.2`), not yet expanded.
    pub(super) fn items(&mut self, path: &str, v: Field<Vec<Text>>) -> Vec<(String, String)> {
        let list = self.take(path, v).unwrap_or_default();
        list.into_iter().enumerate().map(|(i, t)| (format!("{path}.{i}"), t.0)).collect()
    }

    /// A list of text values, each expanded (the ones that fail are reported and left out).
    pub(super) fn texts(&mut self, path: &str, v: Field<Vec<Text>>) -> Vec<String> {
        let items = self.items(path, v);
        items.into_iter().filter_map(|(p, s)| self.expand(&p, &s)).collect()
    }

    /// One of an enumeration's names, any case.
    pub(super) fn choice<E: Choice>(&mut self, path: &str, v: Field<Text>) -> Option<E> {
        let v = self.opt(path, v)?;
        match E::from_name(&v) {
            Some(e) => Some(e),
            None => {
                let key = path.rsplit('.').next().unwrap_or(path);
                self.err(path, format!("`{v}` is not a valid {key}"), Some(choice_hint(&v, E::NAMES)));
                None
            }
        }
    }

    pub(super) fn url(&mut self, path: &str, v: Field<Text>) -> Option<Url> {
        let s = self.opt(path, v)?;
        self.url_text(path, &s)
    }

    pub(super) fn url_text(&mut self, path: &str, s: &str) -> Option<Url> {
        match Url::parse(s.trim()) {
            Ok(u) => match check_url_scheme(&u) {
                Ok(()) => Some(u),
                Err(why) => {
                    self.err(path, why, Some("use https:// (plain http only for 127.0.0.1 or localhost)".into()));
                    None
                }
            },
            Err(e) => {
                self.err(
                    path,
                    format!("`{s}` is not a URL: {e}"),
                    Some("write an absolute URL like https://example.org/fhir/".into()),
                );
                None
            }
        }
    }

    pub(super) fn duration(&mut self, path: &str, v: Field<Text>, default: Duration) -> Duration {
        let Some(s) = self.opt(path, v) else {
            return default;
        };
        match humantime::parse_duration(s.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.err(path, format!("`{s}` is not a duration: {e}"), Some("write e.g. 500ms, 2s, 5m, 24h".into()));
                default
            }
        }
    }

    pub(super) fn size(&mut self, path: &str, v: Field<Size>, default: u64) -> u64 {
        match self.take(path, v) {
            None => default,
            Some(Size::Bytes(n)) => n,
            Some(Size::Text(s)) => match parse_size(&s) {
                Some(n) => n,
                None => {
                    self.err(path, format!("`{s}` is not a size"), Some("write bytes, or e.g. 64MiB, 10GB".into()));
                    default
                }
            },
        }
    }

    pub(super) fn instant(&mut self, path: &str, s: &str) -> Option<OffsetDateTime> {
        crate::instant::parse(s).or_else(|| {
            self.err(
                path,
                format!("`{s}` is not an instant"),
                Some("write e.g. 2024-01-31T00:00:00Z (with a time zone) or 2024-01-31".into()),
            );
            None
        })
    }

    /// A path relative to the job file's folder.
    pub(super) fn file_path(&self, s: &str) -> PathBuf {
        let p = PathBuf::from(s);
        if p.is_absolute() { p } else { self.base.join(p) }
    }

    /// Reads a secret file, refusing one that others can read.
    pub(super) fn secret_file(&mut self, path: &str, s: &str, first_line: bool) -> Option<Secret> {
        let p = self.file_path(s);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(&p)
                && m.permissions().mode() & 0o077 != 0
            {
                self.err(
                    path,
                    format!("{} can be read by other users", p.display()),
                    Some(format!("chmod 600 {}", p.display())),
                );
                return None;
            }
        }
        match std::fs::read_to_string(&p) {
            Ok(t) => {
                let v = if first_line { t.lines().next().unwrap_or("").trim().to_string() } else { t };
                if v.is_empty() {
                    self.err(path, format!("{} is empty", p.display()), None);
                    return None;
                }
                Some(Secret::new(v))
            }
            Err(e) => {
                self.err(path, format!("cannot read {}: {e}", p.display()), None);
                None
            }
        }
    }

    /// Reads a PEM bundle of CA roots and checks it the way the TLS client will use it: every block
    /// well formed, at least one certificate, each one usable as a trust anchor.
    pub(super) fn ca_bundle(&mut self, path: &str, file: &std::path::Path) -> Option<Vec<u8>> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let pem = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                self.err(path, format!("cannot read {}: {e}", file.display()), None);
                return None;
            }
        };
        let hint = || Some("a PEM file of CA certificates (-----BEGIN CERTIFICATE----- blocks)".to_string());
        let mut count = 0;
        for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
            let problem = match cert {
                Err(e) => Some(format!("{}: not a PEM certificate bundle ({e})", file.display())),
                Ok(der) => webpki::anchor_from_trusted_cert(&der)
                    .err()
                    .map(|e| format!("{}: certificate {} is not usable as a CA root ({e})", file.display(), i + 1)),
            };
            if let Some(problem) = problem {
                self.err(path, problem, hint());
                return None;
            }
            count += 1;
        }
        if count == 0 {
            self.err(path, format!("{} holds no certificate", file.display()), hint());
            return None;
        }
        Some(pem)
    }
}

/// `64MiB`, `10GB`, `512k`, `1000` → bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("10GB"), Some(10_000_000_000));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("lots"), None);
    }
}
