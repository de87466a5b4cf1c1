//! Raw job → [`Job`]: `${VAR}` from the environment, secret and key files read, URLs parsed, durations
//! and sizes, the access type's defaults, and the rules between fields. Every problem is collected,
//! with its place in the file, before any is reported.
//!
//! Paths inside a job (`client_secret_file`, `private_key_file`, `member_match.parameters_file`,
//! `tls.ca_file`) are relative to the job file's folder, so a job and its files move together;
//! `download.dir` is relative to the working directory, like `--out`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;
use url::Url;

use super::diag::{Diagnostic, JobError, did_you_mean};
use super::fhir_types::{R4_RESOURCE_TYPES, is_r4_type};
use super::locate::Locator;
use super::model::*;
use super::raw::{self, RawJob, Size};
use crate::redact::Secret;

const ACCESS: &[&str] = &["provider-access", "payer-to-payer", "bulk-data"];
const METHODS: &[&str] = &["client-secret-post", "client-secret-basic", "private-key-jwt", "none"];
const ALGORITHMS: &[&str] = &["RS384", "ES384"];
const LEVELS: &[&str] = &["system", "patient", "group"];
const OPERATIONS: &[&str] = &["export", "davinci-data-export"];
const EXPORT_TYPES: &[&str] = &["provider-download", "provider-delta", "provider-snapshot", "payertopayer"];
const KICKOFF_METHODS: &[&str] = &["auto", "get", "post"];
const VALIDATE: &[&str] = &["strict", "report", "off"];
pub const PDEX_PREFIX: &str = "hl7.fhir.us.davinci-pdex#";

/// Reads and resolves a job file.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Job, JobError> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| JobError {
        diagnostics: vec![Diagnostic::file(&label, format!("cannot read the job file: {e}"))],
    })?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut job = parse(&text, &label, base, env)?;
    job.source = Some(path.to_path_buf());
    if job.name.is_empty() {
        job.name = name_from_stem(path);
    }
    Ok(job)
}

/// `jobs/Provider Nightly.yaml` → `provider-nightly`.
pub fn name_from_stem(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default();
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' }).collect();
    if name.is_empty() { "job".into() } else { name }
}

/// Resolves job text. `file_label` names the file in messages; `base_dir` anchors relative paths.
/// A job parsed without a file gets an empty name unless it sets one (`load` fills the stem in).
pub fn parse(
    text: &str,
    file_label: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Job, JobError> {
    let loc = Locator::new(text);
    let mut r = Resolver {
        file: file_label,
        loc: &loc,
        base: base_dir,
        env,
        diags: Vec::new(),
        warnings: Vec::new(),
        loopback_base: false,
    };
    // Unknown keys first, all of them: serde would stop at the first.
    let value: yaml_serde::Value = match yaml_serde::from_str(text) {
        Ok(v) => v,
        Err(e) => return Err(r.yaml_error(&e)),
    };
    if value.is_null() {
        return Err(JobError { diagnostics: vec![Diagnostic::file(file_label, "the job file is empty")] });
    }
    r.unknown_keys(&value, "");
    if !r.diags.is_empty() {
        return Err(JobError { diagnostics: r.diags });
    }
    let raw: RawJob = match yaml_serde::from_value(value) {
        Ok(raw) => raw,
        Err(e) => {
            // Type errors carry no position from a Value; parse the text again for one.
            let e2 = yaml_serde::from_str::<RawJob>(text).err();
            return Err(r.yaml_error(e2.as_ref().unwrap_or(&e)));
        }
    };
    let job = r.job(raw);
    match job {
        Some(j) if r.diags.is_empty() => Ok(j),
        _ => Err(JobError { diagnostics: r.diags }),
    }
}

/// One line: name, access, level, operation, types, where outputs go.
pub fn summary(job: &Job) -> String {
    let level = match (&job.export.level, &job.export.group_id) {
        (Level::Group, Some(g)) => format!("group {g}"),
        (l, _) => l.as_str().to_string(),
    };
    let op = match job.export.operation {
        Operation::Export => "$export".to_string(),
        Operation::DavinciDataExport => format!(
            "$davinci-data-export {}",
            job.export.export_type.as_deref().unwrap_or("").trim_start_matches(PDEX_PREFIX)
        ),
    };
    let types = if job.export.types.is_empty() { "all types".to_string() } else { job.export.types.join(",") };
    let mm = if job.member_match.is_some() { " after $bulk-member-match" } else { "" };
    format!(
        "{}: {} {} {}{} [{}] → {}",
        job.name,
        job.access.as_str(),
        level,
        op,
        mm,
        types,
        job.download.dir.join(&job.name).display()
    )
}

struct Resolver<'a> {
    file: &'a str,
    loc: &'a Locator,
    base: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    diags: Vec<Diagnostic>,
    warnings: Vec<String>,
    loopback_base: bool,
}

impl Resolver<'_> {
    fn err(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let pos = self.loc.value(path);
        self.diags.push(Diagnostic::at(self.file, self.loc, pos, message, hint));
    }

    fn yaml_error(&self, e: &yaml_serde::Error) -> JobError {
        let text = e.to_string();
        // yaml_serde appends " at line L column C"; we show the place our own way.
        let message = text.split(" at line ").next().unwrap_or(&text).to_string();
        let pos = e.location().map(|l| super::locate::Pos { line: l.line(), column: l.column() });
        let mut hint = None;
        if message.contains("invalid type") {
            hint = Some("check the value's type: text, a number, true/false, or a [list]".into());
        }
        JobError { diagnostics: vec![Diagnostic::at(self.file, self.loc, pos, message, hint)] }
    }

    fn unknown_keys(&mut self, v: &yaml_serde::Value, section: &str) {
        let Some(map) = v.as_mapping() else {
            if section.is_empty() {
                self.diags.push(Diagnostic::file(
                    self.file,
                    "a job file is a mapping of keys (name:, access:, fhir_base:, …)",
                ));
            }
            return;
        };
        let Some(allowed) = raw::keys_of(section) else {
            return;
        };
        for (k, child) in map {
            let Some(key) = k.as_str() else { continue };
            let path = if section.is_empty() { key.to_string() } else { format!("{section}.{key}") };
            if !allowed.contains(&key) {
                let pos = self.loc.key(&path);
                let where_ = if section.is_empty() { "at the top level".into() } else { format!("in `{section}`") };
                let hint = did_you_mean(key, allowed).or_else(|| Some(format!("allowed here: {}", allowed.join(", "))));
                self.diags.push(Diagnostic::at(
                    self.file,
                    self.loc,
                    pos,
                    format!("unknown key `{key}` {where_}"),
                    hint,
                ));
            } else if section.is_empty() && child.is_mapping() {
                self.unknown_keys(child, key);
            }
        }
    }

    /// `${VAR}` from the environment; `$${` is a literal `${`.
    fn expand(&mut self, path: &str, s: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = s;
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
                match (self.env)(name) {
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
        Some(out)
    }

    fn opt(&mut self, path: &str, v: Option<String>) -> Option<String> {
        v.and_then(|s| self.expand(path, &s))
    }

    fn choice(&mut self, path: &str, v: Option<String>, allowed: &[&str]) -> Option<String> {
        let v = self.opt(path, v)?;
        if allowed.iter().any(|a| a.eq_ignore_ascii_case(&v)) {
            Some(v.to_ascii_lowercase())
        } else {
            let key = path.rsplit('.').next().unwrap_or(path);
            let hint = did_you_mean(&v, allowed).unwrap_or_else(|| format!("allowed: {}", allowed.join(", ")));
            self.err(
                path,
                format!("`{v}` is not a valid {key}"),
                Some(format!("{hint} (allowed: {})", allowed.join(" | "))),
            );
            None
        }
    }

    fn url(&mut self, path: &str, v: Option<String>) -> Option<Url> {
        let s = self.opt(path, v)?;
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

    fn duration(&mut self, path: &str, v: Option<String>, default: Duration) -> Duration {
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

    fn size(&mut self, path: &str, v: Option<Size>, default: u64) -> u64 {
        match v {
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

    fn instant(&mut self, path: &str, s: &str) -> Option<OffsetDateTime> {
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
    fn file_path(&self, s: &str) -> PathBuf {
        let p = PathBuf::from(s);
        if p.is_absolute() { p } else { self.base.join(p) }
    }

    /// Reads a secret file, refusing one that others can read.
    fn secret_file(&mut self, path: &str, s: &str, first_line: bool) -> Option<Secret> {
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

    fn job(&mut self, raw: RawJob) -> Option<Job> {
        let name = match self.opt("name", raw.name) {
            Some(n)
                if !n.is_empty()
                    && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') =>
            {
                n
            }
            Some(n) => {
                self.err(
                    "name",
                    format!("`{n}` is not a valid job name"),
                    Some("use lowercase letters, digits, - and _".into()),
                );
                String::new()
            }
            None => String::new(),
        };
        let access = match raw.access {
            None => {
                self.err(
                    "access",
                    "missing `access`",
                    Some("add `access: provider-access` (or payer-to-payer, bulk-data)".into()),
                );
                None
            }
            a => self.choice("access", a, ACCESS).map(|a| match a.as_str() {
                "provider-access" => Access::ProviderAccess,
                "payer-to-payer" => Access::PayerToPayer,
                _ => Access::BulkData,
            }),
        };
        let fhir_base = if raw.fhir_base.is_none() {
            self.err(
                "fhir_base",
                "missing `fhir_base`",
                Some("add `fhir_base: https://…/fhir/`, the server's FHIR base URL".into()),
            );
            None
        } else {
            self.url("fhir_base", raw.fhir_base).map(|mut u| {
                if !u.path().ends_with('/') {
                    let p = format!("{}/", u.path());
                    u.set_path(&p);
                }
                u
            })
        };
        self.loopback_base = fhir_base.as_ref().is_some_and(is_loopback);
        let auth = self.auth(raw.auth, access);
        let member_match = raw.member_match.and_then(|m| {
            let f = self.opt("member_match.parameters_file", m.parameters_file);
            match f {
                None => {
                    self.err(
                        "member_match",
                        "member_match needs `parameters_file`",
                        Some("the FHIR Parameters file of MemberBundle entries to match".into()),
                    );
                    None
                }
                Some(f) => {
                    let p = self.file_path(&f);
                    if !p.is_file() {
                        self.err("member_match.parameters_file", format!("{} does not exist", p.display()), None);
                    }
                    Some(MemberMatch { parameters_file: p })
                }
            }
        });
        if member_match.is_some() && access != Some(Access::PayerToPayer) && access.is_some() {
            self.err("member_match", "member_match is for `access: payer-to-payer`", None);
        }
        let export = self.export(raw.export, access, member_match.is_some());
        let poll = PollSettings {
            min_interval: self.duration("poll.min_interval", raw.poll.min_interval, Duration::from_secs(2)),
            max_interval: self.duration("poll.max_interval", raw.poll.max_interval, Duration::from_secs(300)),
            timeout: self.duration("poll.timeout", raw.poll.timeout, Duration::from_secs(24 * 3600)),
        };
        if poll.min_interval > poll.max_interval {
            self.err("poll.min_interval", "poll.min_interval is larger than poll.max_interval", None);
        }
        let d = raw.download;
        let concurrency = d.concurrency.unwrap_or(4);
        if !(1..=64).contains(&concurrency) {
            self.err(
                "download.concurrency",
                format!("concurrency {concurrency} is out of range"),
                Some("use 1 to 64".into()),
            );
        }
        let validate = match self.choice("download.validate", d.validate, VALIDATE).as_deref() {
            Some("report") => Validate::Report,
            Some("off") => Validate::Off,
            _ => Validate::Strict,
        };
        let dir = self.opt("download.dir", d.dir).unwrap_or_else(|| "exports".into());
        let download = DownloadSettings {
            dir: PathBuf::from(dir),
            concurrency: concurrency as usize,
            validate,
            retries: d.retries.unwrap_or(5),
            delete_on_success: d.delete_on_success.unwrap_or(false),
            max_line_bytes: self.size("download.max_line_bytes", d.max_line_bytes, 64 << 20) as usize,
            max_file_bytes: self.size("download.max_file_bytes", d.max_file_bytes, 100 << 30),
        };
        let mut headers = Vec::new();
        for (k, v) in raw.headers {
            let path = format!("headers.{k}");
            if k.eq_ignore_ascii_case("authorization") {
                self.err(
                    &path,
                    "headers: Authorization is set by oneup-bulk",
                    Some("put credentials under `auth:`".into()),
                );
                continue;
            }
            if let Some(v) = self.expand(&path, &v) {
                headers.push((k, v));
            }
        }
        let tls = TlsSettings { ca_file: self.opt("tls.ca_file", raw.tls.ca_file).map(|f| self.file_path(&f)) };
        Some(Job {
            name,
            source: None,
            access: access?,
            fhir_base: fhir_base?,
            auth: auth?,
            export: export?,
            member_match,
            poll,
            download,
            headers,
            tls,
            warnings: std::mem::take(&mut self.warnings),
        })
    }

    fn auth(&mut self, a: raw::RawAuth, access: Option<Access>) -> Option<Auth> {
        let oneup = matches!(access, Some(Access::ProviderAccess | Access::PayerToPayer));
        let method = match self.choice("auth.method", a.method, METHODS).as_deref() {
            Some("client-secret-basic") => AuthMethod::ClientSecretBasic,
            Some("private-key-jwt") => AuthMethod::PrivateKeyJwt,
            Some("none") => AuthMethod::None,
            _ => AuthMethod::ClientSecretPost,
        };
        let literal_secret = a.client_secret.as_deref().is_some_and(|s| !s.contains("${"));
        // Given but unusable (an unset variable) is reported once, where it is, not again as missing.
        let secret_given = a.client_secret.is_some() || a.client_secret_file.is_some();
        let id_given = a.client_id.is_some();
        let key_given = a.private_key_file.is_some();
        let client_id = self.opt("auth.client_id", a.client_id);
        let secret = self.opt("auth.client_secret", a.client_secret);
        let secret_file = self.opt("auth.client_secret_file", a.client_secret_file);
        let key_file = self.opt("auth.private_key_file", a.private_key_file);
        let mut ok = true;
        if method != AuthMethod::None && !id_given {
            self.err(
                "auth.client_id",
                "missing `auth.client_id`",
                Some("add `client_id: ${ONEUP_CLIENT_ID}` under `auth:`".into()),
            );
            ok = false;
        }
        let mut client_secret = None;
        if matches!(method, AuthMethod::ClientSecretPost | AuthMethod::ClientSecretBasic) {
            match (secret, secret_file) {
                (Some(_), Some(_)) => {
                    self.err("auth.client_secret_file", "give `client_secret` or `client_secret_file`, not both", None);
                    ok = false;
                }
                (Some(s), None) => {
                    // The sandbox's demo secret on loopback is no risk; anything else in git is.
                    let loopback = self.loopback_base;
                    if literal_secret && !s.is_empty() && !loopback {
                        self.warnings.push(
                            "auth.client_secret is written in the job file; use ${VAR} or client_secret_file so it stays out of git".into(),
                        );
                    }
                    client_secret = Some(Secret::new(s));
                }
                (None, Some(f)) => client_secret = self.secret_file("auth.client_secret_file", &f, true),
                (None, None) if secret_given => ok = false,
                (None, None) => {
                    self.err(
                        "auth",
                        format!("auth.method {} needs a secret", method.as_str()),
                        Some("add `client_secret: ${ONEUP_CLIENT_SECRET}` or `client_secret_file: path`".into()),
                    );
                    ok = false;
                }
            }
        }
        let mut private_key_pem = None;
        let algorithm =
            match self.choice("auth.algorithm", a.algorithm.map(|s| s.to_ascii_uppercase()), ALGORITHMS).as_deref() {
                Some("es384") => JwtAlgorithm::Es384,
                _ => JwtAlgorithm::Rs384,
            };
        if method == AuthMethod::PrivateKeyJwt {
            match key_file {
                Some(f) => {
                    private_key_pem = self.secret_file("auth.private_key_file", &f, false);
                    if let Some(pem) = &private_key_pem
                        && let Err(e) = crate::jwt::SigningKey::from_pem(pem.expose(), algorithm)
                    {
                        self.err("auth.private_key_file", e, Some("make one with `oneup-bulk keygen`".into()));
                    }
                }
                None if key_given => ok = false,
                None => {
                    self.err(
                        "auth",
                        "auth.method private-key-jwt needs `private_key_file`",
                        Some("make a key with `oneup-bulk keygen`".into()),
                    );
                    ok = false;
                }
            }
        }
        let token_url = match a.token_url {
            Some(t) => self.url("auth.token_url", Some(t)),
            None if oneup => Some(Url::parse(ONEUP_TOKEN_URL).expect("constant URL")),
            None => None,
        };
        let scope = self
            .opt("auth.scope", a.scope)
            .or_else(|| (access == Some(Access::ProviderAccess)).then(|| ONEUP_PROVIDER_SCOPE.to_string()));
        let mut token_origins = Vec::new();
        for (i, o) in a.token_origins.into_iter().enumerate() {
            if let Some(u) = self.url(&format!("auth.token_origins.{i}"), Some(o)) {
                token_origins.push(u.origin());
            }
        }
        ok.then_some(Auth {
            method,
            client_id: client_id.unwrap_or_default(),
            client_secret,
            private_key_pem,
            key_id: self.opt("auth.key_id", a.key_id),
            algorithm,
            token_url,
            scope,
            token_origins,
        })
    }

    fn export(&mut self, e: raw::RawExport, access: Option<Access>, member_match: bool) -> Option<ExportSpec> {
        let default_level = match access {
            Some(Access::BulkData) | None => "system",
            _ => "group",
        };
        let level = match self.choice("export.level", e.level, LEVELS).as_deref().unwrap_or(default_level) {
            "patient" => Level::Patient,
            "group" => Level::Group,
            _ => Level::System,
        };
        let default_op = if member_match { "davinci-data-export" } else { "export" };
        let operation = match self.choice("export.operation", e.operation, OPERATIONS).as_deref().unwrap_or(default_op)
        {
            "davinci-data-export" => Operation::DavinciDataExport,
            _ => Operation::Export,
        };
        let group_id = self.opt("export.group_id", e.group_id);
        match (level, &group_id) {
            (Level::Group, None) if !member_match => self.err(
                "export.level",
                "`level: group` needs `group_id`",
                Some(
                    "add `group_id: <the Group's id>` under `export:` (1up: the group of your attributed members)"
                        .into(),
                ),
            ),
            (Level::System | Level::Patient, Some(_)) => self.err(
                "export.group_id",
                "`group_id` is only used with `level: group`",
                Some("set `level: group`, or remove group_id".into()),
            ),
            _ => {}
        }
        let mut export_type = self.opt("export.export_type", e.export_type);
        if member_match && export_type.is_none() {
            export_type = Some("payertopayer".into());
        }
        let export_type = match (operation, export_type) {
            (Operation::Export, Some(_)) => {
                self.err(
                    "export.export_type",
                    "`export_type` goes with `operation: davinci-data-export`",
                    Some("add `operation: davinci-data-export`".into()),
                );
                None
            }
            (Operation::DavinciDataExport, None) => {
                self.err(
                    "export.operation",
                    "`operation: davinci-data-export` needs `export_type`",
                    Some(format!("one of: {}", EXPORT_TYPES.join(", "))),
                );
                None
            }
            (Operation::DavinciDataExport, Some(t)) if t.contains('#') || t.contains('/') => Some(t),
            (Operation::DavinciDataExport, Some(t)) => {
                if EXPORT_TYPES.contains(&t.as_str()) {
                    Some(format!("{PDEX_PREFIX}{t}"))
                } else {
                    let hint = did_you_mean(&t, EXPORT_TYPES)
                        .unwrap_or_else(|| format!("one of: {}", EXPORT_TYPES.join(", ")));
                    self.err("export.export_type", format!("`{t}` is not a PDex export type"), Some(hint));
                    None
                }
            }
            (Operation::Export, None) => None,
        };
        if operation == Operation::DavinciDataExport && level != Level::Group {
            self.err(
                "export.level",
                "`$davinci-data-export` runs on a Group",
                Some("set `level: group` and `group_id`".into()),
            );
        }
        let mut types = Vec::new();
        for (i, t) in e.types.into_iter().enumerate() {
            let path = format!("export.types.{i}");
            let Some(t) = self.expand(&path, &t) else {
                continue;
            };
            if is_r4_type(&t) {
                types.push(t);
            } else {
                let hint = did_you_mean(&t, R4_RESOURCE_TYPES).or_else(|| {
                    Some("resource types are FHIR R4 names like Patient, Coverage, ExplanationOfBenefit".into())
                });
                self.err(&path, format!("`{t}` is not a FHIR R4 resource type"), hint);
            }
        }
        let since = match self.opt("export.since", e.since).as_deref().map(str::trim) {
            None | Some("") => Since::None,
            Some("auto") => Since::Auto,
            Some(s) => self.instant("export.since", s).map_or(Since::None, Since::At),
        };
        let until = self.opt("export.until", e.until).and_then(|s| self.instant("export.until", s.trim()));
        let mut patients = Vec::new();
        for (i, p) in e.patients.into_iter().enumerate() {
            let path = format!("export.patients.{i}");
            let Some(p) = self.expand(&path, &p) else {
                continue;
            };
            if p.strip_prefix("Patient/").is_some_and(|id| !id.is_empty() && !id.contains('/')) {
                patients.push(p);
            } else {
                self.err(&path, format!("`{p}` is not a Patient reference"), Some("write Patient/<id>".into()));
            }
        }
        let list = |r: &mut Self, key: &str, v: Vec<String>| -> Vec<String> {
            v.into_iter().enumerate().filter_map(|(i, s)| r.expand(&format!("export.{key}.{i}"), &s)).collect()
        };
        let type_filters = list(self, "type_filters", e.type_filters);
        let elements = list(self, "elements", e.elements);
        let include_associated_data = list(self, "include_associated_data", e.include_associated_data);
        let method = match self.choice("export.method", e.method, KICKOFF_METHODS).as_deref() {
            Some("get") => KickoffMethod::Get,
            Some("post") => KickoffMethod::Post,
            _ => KickoffMethod::Auto,
        };
        if method == KickoffMethod::Get && (!patients.is_empty() || operation == Operation::DavinciDataExport) {
            self.err(
                "export.method",
                "`method: get` cannot send this request",
                Some("`patients` and $davinci-data-export need POST: use `method: auto`".into()),
            );
        }
        Some(ExportSpec {
            level,
            group_id,
            operation,
            export_type,
            types,
            since,
            until,
            type_filters,
            elements,
            patients,
            include_associated_data,
            output_format: self.opt("export.output_format", e.output_format),
            organize_output_by: self.opt("export.organize_output_by", e.organize_output_by),
            allow_partial_manifests: e.allow_partial_manifests,
            method,
            lenient: e.lenient,
        })
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

    #[test]
    fn stems_become_names() {
        assert_eq!(name_from_stem(Path::new("jobs/Provider Nightly.yaml")), "provider-nightly");
    }

    #[test]
    fn raw_key_lists_match_the_structs() {
        // Every listed key is accepted by serde (a job with just that key parses or fails on its value,
        // never as unknown).
        for (section, keys) in [
            ("auth", raw::AUTH_KEYS),
            ("export", raw::EXPORT_KEYS),
            ("poll", raw::POLL_KEYS),
            ("download", raw::DOWNLOAD_KEYS),
        ] {
            for k in keys {
                let text = format!("{section}:\n  {k}: null\n");
                if let Err(e) = yaml_serde::from_str::<RawJob>(&text) {
                    assert!(!e.to_string().contains("unknown field"), "{section}.{k}: {e}");
                }
            }
        }
    }
}
