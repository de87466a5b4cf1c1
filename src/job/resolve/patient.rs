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
