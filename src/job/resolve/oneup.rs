//! `oneup:`: a 1up job names its customer (`tenant`) and Keycloak `realm`, and the two long URLs are
//! derived in the shapes 1up documents: the bulk base
//! `https://gateway.1up.health/v1/<tenant>/bulk-export/bulk-data/r4/` and the token URL
//! `https://gateway.1up.health/auth/realms/<realm>/protocol/openid-connect/token`. An explicit
//! `fhir_base` or `auth.token_url` still wins; `oneup.gateway` replaces the host (a private deployment,
//! or the local sandbox). Only for `provider-access` and `payer-to-payer`.

use url::Url;

use super::Resolver;
use crate::job::model::{Access, ONEUP_GATEWAY, OneUp, oneup_fhir_base, oneup_token_url};
use crate::job::raw::{Field, RawOneUp, Text};

/// What the section gave, before `fhir_base` and `auth.token_url` are decided.
pub(super) struct Names {
    pub tenant: Option<String>,
    pub realm: Option<String>,
    pub gateway: Url,
    /// `tenant` / `realm` were written (even if unusable or not checked), so their absence is explained.
    pub tenant_given: bool,
    pub realm_given: bool,
}

impl Names {
    pub fn fhir_base(&self) -> Option<Url> {
        self.tenant.as_deref().map(|t| oneup_fhir_base(&self.gateway, t))
    }

    pub fn token_url(&self) -> Option<Url> {
        self.realm.as_deref().map(|r| oneup_token_url(&self.gateway, r))
    }

    /// The resolved section, once it is known which URLs were derived.
    pub fn resolved(&self, fhir_base_derived: bool, token_url_derived: bool) -> OneUp {
        OneUp {
            tenant: self.tenant.clone(),
            realm: self.realm.clone(),
            gateway: self.gateway.clone(),
            fhir_base_derived,
            token_url_derived,
        }
    }
}

/// A tenant or realm is one path segment of 1up's URLs.
fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) && s != "."
}

impl Resolver<'_> {
    pub(super) fn oneup(&mut self, o: RawOneUp, access: Option<Access>) -> Names {
        if access.is_some_and(|a| !a.get_only()) {
            self.err(
                "oneup",
                "`oneup:` is for `access: provider-access` or `payer-to-payer`",
                Some("give `fhir_base` and `auth.token_url` instead".into()),
            );
        }
        let (tenant_given, realm_given) = (o.tenant.is_given(), o.realm.is_given());
        let tenant = self.oneup_name("tenant", o.tenant);
        let realm = self.oneup_name("realm", o.realm);
        let gateway = match o.gateway.is_given() {
            true => self.url("oneup.gateway", o.gateway),
            false => None,
        };
        let gateway = gateway.unwrap_or_else(|| Url::parse(ONEUP_GATEWAY).expect("constant URL"));
        Names { tenant, realm, gateway, tenant_given, realm_given }
    }

    fn oneup_name(&mut self, key: &str, v: Field<Text>) -> Option<String> {
        let path = format!("oneup.{key}");
        let n = self.opt(&path, v)?;
        if is_name(n.trim()) {
            return Some(n.trim().to_string());
        }
        self.err(
            &path,
            format!("`{n}` is not a 1up {key} name"),
            Some(format!("the {key} is one part of 1up's URLs: letters, digits, - _ .")),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_1ups_documented_shapes() {
        let g = Url::parse(ONEUP_GATEWAY).unwrap();
        assert_eq!(
            oneup_fhir_base(&g, "bison").as_str(),
            "https://gateway.1up.health/v1/bison/bulk-export/bulk-data/r4/"
        );
        assert_eq!(
            oneup_token_url(&g, "dev-portal").as_str(),
            crate::job::model::ONEUP_TOKEN_URL,
            "the sandbox realm gives today's default token URL"
        );
        let local = Url::parse("http://127.0.0.1:8089/").unwrap();
        assert_eq!(
            oneup_token_url(&local, "acme").as_str(),
            "http://127.0.0.1:8089/auth/realms/acme/protocol/openid-connect/token"
        );
        assert!(is_name("bison") && is_name("acme_prod-2") && !is_name("a/b") && !is_name("") && !is_name("."));
    }
}
