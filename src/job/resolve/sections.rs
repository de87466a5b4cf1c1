//! The top level of a job file and its small sections: `name`, `access`, `fhir_base`,
//! `poll`, `download`, `timeouts`, `headers` and `tls`. `auth`, `export`, `member_match` and `oneup` have files of their own.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};

use super::Resolver;
use super::member_match::MatchPlan;
use super::patient::PatientKeys;
use crate::job::choice::Choice;
use crate::job::model::*;
use crate::job::raw::{Field, RawDownload, RawJob, RawPoll, RawTimeouts, RawTls, Text};

impl Resolver<'_> {
    pub(super) fn job(&mut self, raw: RawJob) -> Option<Job> {
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
        if !raw.access.is_given() {
            let (first, rest) = Access::NAMES.split_first().expect("access types");
            self.missing(
                "access",
                "access",
                "missing `access`",
                Some(format!("add `access: {first}` (or {})", rest.join(", "))),
            );
        }
        let access = self.choice::<Access>("access", raw.access);
        let names = self.take("oneup", raw.oneup).map(|o| self.oneup(o, access));
        let get_only = access.is_some_and(Access::get_only);
        let base_given = raw.fhir_base.is_given();
        let fhir_base = if base_given {
            self.url("fhir_base", raw.fhir_base)
        } else if let Some(derived) = names.as_ref().and_then(|n| n.fhir_base()) {
            Some(derived)
        } else {
            if !names.as_ref().is_some_and(|n| n.tenant_given) {
                let hint = match get_only {
                    true => {
                        "add `oneup:` with `tenant: <your 1up customer name>` (1up's bulk URL is derived from it), or `fhir_base: https://…`"
                    }
                    false => "add `fhir_base: https://…/fhir/`, the server's FHIR base URL",
                };
                self.missing("fhir_base", "fhir_base", "missing `fhir_base`", Some(hint.into()));
            }
            None
        };
        let fhir_base_derived = !base_given && fhir_base.is_some();
        let fhir_base = fhir_base.map(|mut u| {
            if !u.path().ends_with('/') {
                let p = format!("{}/", u.path());
                u.set_path(&p);
            }
            u
        });
        self.loopback_base = fhir_base.as_ref().is_some_and(is_loopback);
        let mut auth = self.take("auth", raw.auth).unwrap_or_default();
        let mut export = self.take("export", raw.export);
        let patient_keys = PatientKeys::take(&mut auth, export.as_mut(), access == Some(Access::PatientAccess));
        let token_url_given = auth.token_url.is_given();
        let mut auth = self.auth(auth, access, names.as_ref());
        let oneup = names.as_ref().map(|n| {
            let used = auth.as_ref().is_some_and(|a| a.token_url.is_some());
            n.resolved(fhir_base_derived, !token_url_given && used)
        });
        // The export's defaults follow a member match that is asked for, even if its file is not usable
        // (reported there) or not checked (`--no-env`).
        let (plan, member_match) = match self.take("member_match", raw.member_match) {
            Some(m) => self.member_match(m),
            None => (MatchPlan::default(), None),
        };
        if plan.asked && access != Some(Access::PayerToPayer) && access.is_some() {
            self.err("member_match", "member_match is for `access: payer-to-payer`", None);
        }
        let export = self.export(export.unwrap_or_default(), access, plan);
        let patient = self.patient(access, patient_keys, auth.as_mut(), export.as_ref());
        let poll = self.take("poll", raw.poll).unwrap_or_default();
        let poll = self.poll(poll);
        let download = self.take("download", raw.download).unwrap_or_default();
        let download = self.download(download);
        let timeouts = self.take("timeouts", raw.timeouts).unwrap_or_default();
        let timeouts = self.timeouts(timeouts);
        let headers = self.headers(raw.headers);
        let tls = self.take("tls", raw.tls).unwrap_or_default();
        let tls = self.tls(tls);
        if plan.asked && member_match.is_none() {
            return None; // a job without its member match would be another job
        }
        if access == Some(Access::PatientAccess) && patient.is_none() {
            return None;
        }
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
            timeouts,
            headers,
            tls,
            oneup,
            patient,
            warnings: std::mem::take(&mut self.warnings),
            out_given: None,
        })
    }

    fn poll(&mut self, p: RawPoll) -> PollSettings {
        let poll = PollSettings {
            min_interval: self.duration("poll.min_interval", p.min_interval, Duration::from_secs(2)),
            max_interval: self.duration("poll.max_interval", p.max_interval, Duration::from_secs(300)),
            timeout: self.duration("poll.timeout", p.timeout, Duration::from_secs(24 * 3600)),
        };
        if poll.min_interval > poll.max_interval && self.checked(&["poll.min_interval", "poll.max_interval"]) {
            self.err("poll.min_interval", "poll.min_interval is larger than poll.max_interval", None);
        }
        poll
    }

    fn timeouts(&mut self, t: RawTimeouts) -> TimeoutSettings {
        let d = TimeoutSettings::default();
        let mut one = |key: &str, v: Field<Text>, default: Duration| {
            let path = format!("timeouts.{key}");
            let given = self.duration(&path, v, default);
            if given.is_zero() {
                self.err(&path, format!("timeouts.{key} must be more than 0"), Some("write e.g. 10s, 1m".into()));
                return default;
            }
            given
        };
        TimeoutSettings {
            connect: one("connect", t.connect, d.connect),
            request: one("request", t.request, d.request),
            read_idle: one("read_idle", t.read_idle, d.read_idle),
        }
    }

    fn download(&mut self, d: RawDownload) -> DownloadSettings {
        let concurrency = self.take("download.concurrency", d.concurrency).unwrap_or(4);
        if !(1..=64).contains(&concurrency) {
            self.err(
                "download.concurrency",
                format!("concurrency {concurrency} is out of range"),
                Some("use 1 to 64".into()),
            );
        }
        let validate = self.choice("download.validate", d.validate).unwrap_or(Validate::Strict);
        let dir = self.opt("download.dir", d.dir).unwrap_or_else(|| "exports".into());
        let dir = crate::store::Location::parse(&dir).unwrap_or_else(|e| {
            self.err("download.dir", e, None);
            crate::store::Location::Local(PathBuf::from(dir))
        });
        DownloadSettings {
            dir,
            concurrency: concurrency as usize,
            validate,
            retries: self.take("download.retries", d.retries).unwrap_or(5),
            delete_on_success: self.take("download.delete_on_success", d.delete_on_success).unwrap_or(false),
            max_line_bytes: self.size("download.max_line_bytes", d.max_line_bytes, 64 << 20) as usize,
            max_file_bytes: self.size("download.max_file_bytes", d.max_file_bytes, 100 << 30),
            accept_count_mismatch: self
                .take("download.accept_count_mismatch", d.accept_count_mismatch)
                .unwrap_or(false),
        }
    }

    /// Each header as HTTP will send it: a token name, a value without control characters.
    fn headers(&mut self, h: Field<std::collections::BTreeMap<String, Text>>) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        for (k, v) in self.take("headers", h).unwrap_or_default() {
            let path = format!("headers.{k}");
            if k.eq_ignore_ascii_case("authorization") {
                self.err(
                    &path,
                    "headers: Authorization is set by oneup-bulk",
                    Some("put credentials under `auth:`".into()),
                );
                continue;
            }
            if HeaderName::from_bytes(k.as_bytes()).is_err() {
                let pos = self.loc.key(&path);
                self.diags.push(crate::job::Diagnostic::at(
                    self.file,
                    self.loc,
                    pos,
                    format!("`{k}` is not a valid header name"),
                    Some("header names are letters, digits and !#$%&'*+-.^_`|~, without spaces".into()),
                ));
                continue;
            }
            let Some(v) = self.expand(&path, &v.0) else {
                continue;
            };
            if HeaderValue::from_str(&v).is_err() {
                self.err(
                    &path,
                    format!("the value of header `{k}` is not a valid header value"),
                    Some("header values are visible ASCII text without line breaks".into()),
                );
                continue;
            }
            headers.push((k, v));
        }
        headers
    }

    fn tls(&mut self, t: RawTls) -> TlsSettings {
        let ca_file = self.opt("tls.ca_file", t.ca_file).map(|f| self.file_path(&f));
        let ca_pem = ca_file.as_deref().and_then(|f| self.ca_bundle("tls.ca_file", f));
        TlsSettings { ca_file, ca_pem }
    }
}
