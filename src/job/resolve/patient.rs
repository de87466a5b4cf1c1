//! `access: patient-access`: the keys only it uses (`auth.authorize_url`, `auth.redirect_uri`,
//! `export.mode`), its defaults (1up's demo plan endpoints and scope, where 1up documents them), and
//! the bulk-only `export` keys it refuses. The patient keys are taken out of the raw sections before
//! `auth` and `export` are resolved, so the bulk rules never see them and no key is reported twice.

use url::Url;

use super::Resolver;
use crate::job::model::*;
use crate::job::raw::{Field, RawAuth, RawExport, Text};

/// The patient-access keys as written, and which bulk-only `export` keys were written.
#[derive(Default)]
pub(super) struct PatientKeys {
    authorize_url: Field<Text>,
    redirect_uri: Field<Text>,
    mode: Field<Text>,
    /// `export.<key>` paths given that a patient-access job does not use.
    bulk_only: Vec<&'static str>,
}

impl PatientKeys {
    /// Takes the patient keys out of `auth`; for a patient-access job, also the bulk-only export keys
    /// (reported once, by [`Resolver::patient`], instead of by the export rules as well).
    pub(super) fn take(auth: &mut RawAuth, export: Option<&mut RawExport>, patient: bool) -> Self {
        let mut k = PatientKeys {
            authorize_url: std::mem::take(&mut auth.authorize_url),
            redirect_uri: std::mem::take(&mut auth.redirect_uri),
            ..Default::default()
        };
        let Some(e) = export else {
            return k;
        };
        k.mode = std::mem::take(&mut e.mode);
        if !patient {
            return k;
        }
        let mut given = |path: &'static str, was: bool| {
            if was {
                k.bulk_only.push(path);
            }
        };
        given("export.level", std::mem::take(&mut e.level).is_given());
        given("export.group_id", std::mem::take(&mut e.group_id).is_given());
        given("export.operation", std::mem::take(&mut e.operation).is_given());
        given("export.export_type", std::mem::take(&mut e.export_type).is_given());
        given("export.until", std::mem::take(&mut e.until).is_given());
        given("export.type_filters", std::mem::take(&mut e.type_filters).is_given());
        given("export.elements", std::mem::take(&mut e.elements).is_given());
        given("export.patients", std::mem::take(&mut e.patients).is_given());
        given("export.include_associated_data", std::mem::take(&mut e.include_associated_data).is_given());
        given("export.output_format", std::mem::take(&mut e.output_format).is_given());
        given("export.organize_output_by", std::mem::take(&mut e.organize_output_by).is_given());
        given("export.allow_partial_manifests", std::mem::take(&mut e.allow_partial_manifests).is_given());
        given("export.method", std::mem::take(&mut e.method).is_given());
        given("export.lenient", std::mem::take(&mut e.lenient).is_given());
        k
    }
}

impl Resolver<'_> {
    /// The [`PatientAccess`] of a patient-access job (defaults filled into `auth` too); for any other
    /// access type, an error for each patient key written. `None` when it cannot be built.
    pub(super) fn patient(
        &mut self,
        access: Option<Access>,
        k: PatientKeys,
        auth: Option<&mut Auth>,
        export: Option<&ExportSpec>,
    ) -> Option<PatientAccess> {
        if access != Some(Access::PatientAccess) {
            if access.is_some() {
                for (path, given) in [
                    ("auth.authorize_url", k.authorize_url.is_given()),
                    ("auth.redirect_uri", k.redirect_uri.is_given()),
                    ("export.mode", k.mode.is_given()),
                ] {
                    if given {
                        self.err(
                            path,
                            format!("`{path}` is for `access: patient-access`"),
                            Some("remove it, or set `access: patient-access`".into()),
                        );
                    }
                }
            }
            return None;
        }
        for path in &k.bulk_only {
            self.err(
                path,
                format!("`{path}` is not used with `access: patient-access`"),
                Some(
                    "a patient-access job reads one member's data: it uses export.types, export.since and export.mode"
                        .into(),
                ),
            );
        }
        let authorize_url = match k.authorize_url.is_given() {
            true => self.url("auth.authorize_url", k.authorize_url),
            false => Some(Url::parse(ONEUP_DEMO_PLAN_AUTHORIZE_URL).expect("constant URL")),
        };
        let redirect_given = k.redirect_uri.is_given();
        let redirect_uri = self.url("auth.redirect_uri", k.redirect_uri);
        if !redirect_given {
            self.missing(
                "auth.redirect_uri",
                "auth",
                "`access: patient-access` needs `auth.redirect_uri`",
                Some(
                    "the redirect URI registered for your app: `http://127.0.0.1:8765/callback` (1up's sandbox only), or your HTTPS URL with `authorize --paste`"
                        .into(),
                ),
            );
        }
        let mode = self.choice("export.mode", k.mode).unwrap_or(ReadMode::Everything);
        if mode == ReadMode::Search
            && export.is_some_and(|e| e.types.is_empty())
            && self.checked(&["export.mode", "export.types"])
        {
            self.err(
                "export.mode",
                "`mode: search` needs `export.types`: one search per type",
                Some("e.g. `types: [Patient, Coverage, ExplanationOfBenefit, Condition, Observation]`".into()),
            );
        }
        if let Some(a) = auth {
            if a.token_url.is_none() {
                a.token_url = Some(Url::parse(ONEUP_DEMO_PLAN_TOKEN_URL).expect("constant URL"));
            }
            if a.scope.is_none() {
                a.scope = Some(PATIENT_ACCESS_SCOPE.to_string());
            }
        }
        Some(PatientAccess { authorize_url: authorize_url?, redirect_uri: redirect_uri?, mode })
    }
}

#[cfg(test)]
mod tests {
    use crate::job::{Access, ReadMode, parse};

    fn job(extra_auth: &str, export: &str) -> Result<crate::job::Job, String> {
        let yaml = format!(
            "access: patient-access\nfhir_base: https://fhir.plan.example/r4\nauth:\n  client_id: app\n  client_secret: ${{S}}\n{extra_auth}export:\n  types: [Patient]\n{export}"
        );
        parse(&yaml, "m.yaml", std::path::Path::new("."), &|_| Some("x".into())).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_1ups_demo_plan() {
        let j = job("  redirect_uri: http://127.0.0.1:8765/callback\n", "").unwrap();
        let p = j.patient.as_ref().unwrap();
        assert_eq!(j.access, Access::PatientAccess);
        assert_eq!(p.authorize_url.as_str(), "https://auth.1updemohealthplan.com/oauth2/authorize/demoplan");
        assert_eq!(j.auth.token_url.as_ref().unwrap().as_str(), "https://auth.1updemohealthplan.com/oauth2/token");
        assert_eq!(j.auth.scope.as_deref(), Some("patient/*.read launch/patient"));
        assert_eq!((p.mode, p.redirect_uri.as_str()), (ReadMode::Everything, "http://127.0.0.1:8765/callback"));
        let j = job(
            "  redirect_uri: https://app.example/cb\n  authorize_url: https://auth.plan.example/oauth2/authorize/acme\n  token_url: https://auth.plan.example/oauth2/token\n  scope: user/*.read\n",
            "  mode: search\n",
        )
        .unwrap();
        assert_eq!(j.patient.unwrap().authorize_url.as_str(), "https://auth.plan.example/oauth2/authorize/acme");
        assert_eq!(j.auth.scope.as_deref(), Some("user/*.read"));
    }

    #[test]
    fn what_a_patient_access_job_must_and_must_not_say() {
        let e = job("", "  level: group\n  group_id: g\n").unwrap_err();
        assert!(e.contains("error: `access: patient-access` needs `auth.redirect_uri`"), "{e}");
        assert!(e.contains("error: `export.level` is not used with `access: patient-access`"), "{e}");
        assert!(e.contains("error: `export.group_id` is not used with `access: patient-access`"), "{e}");
        assert!(!e.contains("`group_id` is only used with"), "reported once: {e}");
        let e = job("  redirect_uri: http://app.example/cb\n", "").unwrap_err();
        assert!(e.contains("uses plain http to a remote host"), "{e}");
        let yaml = "access: patient-access\nfhir_base: https://f.example/\nauth:\n  client_id: a\n  client_secret: b\n  redirect_uri: https://a.example/cb\nexport:\n  mode: search\n";
        let e = parse(yaml, "m.yaml", std::path::Path::new("."), &|_| None).unwrap_err().to_string();
        assert!(e.contains("`mode: search` needs `export.types`"), "{e}");
        let bulk = "access: bulk-data\nfhir_base: https://f.example/\nauth:\n  method: none\n  redirect_uri: https://a.example/cb\nexport:\n  mode: everything\n";
        let e = parse(bulk, "b.yaml", std::path::Path::new("."), &|_| None).unwrap_err().to_string();
        assert!(e.contains("`auth.redirect_uri` is for `access: patient-access`"), "{e}");
        assert!(e.contains("`export.mode` is for `access: patient-access`"), "{e}");
    }
}
