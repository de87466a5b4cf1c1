//! `auth:`: the method, the client id, the secret (inline, `${VAR}` or a file) or the private key
//! (read and parsed now, so a bad key is a job-file error and not a failed run), the token URL and
//! scope with the access type's defaults, and the origins that may receive the token.

use url::Url;

use super::Resolver;
use super::oneup::Names;
use crate::job::model::*;
use crate::job::raw::RawAuth;
use crate::redact::Secret;

impl Resolver<'_> {
    pub(super) fn auth(&mut self, a: RawAuth, access: Option<Access>, names: Option<&Names>) -> Option<Auth> {
        let oneup = access.is_some_and(Access::get_only);
        let method = self.choice("auth.method", a.method).unwrap_or(AuthMethod::ClientSecretPost);
        // A method from an unread `${VAR}` could be any: its requirements are not checked.
        let method_known = self.checked(&["auth.method"]);
        if method == AuthMethod::ClientHeaders && access == Some(Access::PatientAccess) {
            self.err(
                "auth.method",
                "`client-headers` is 1up's credential for its bulk servers, not for a member's Patient Access",
                Some(
                    "use client-secret-post (1up's way for Patient Access), client-secret-basic or private-key-jwt"
                        .into(),
                ),
            );
        }
        let literal_secret = a.client_secret.as_given().is_some_and(|s| !s.0.contains("${"));
        // Given but unusable (an unset variable, a wrong type) is reported once, where it is, not
        // again as missing. Given but not checked (`--no-env`) counts as given.
        let secret_given = a.client_secret.is_given() || a.client_secret_file.is_given();
        let id_given = a.client_id.is_given();
        let key_given = a.private_key_file.is_given();
        let client_id = self.opt("auth.client_id", a.client_id);
        let secret = self.opt("auth.client_secret", a.client_secret);
        let secret_file = self.opt("auth.client_secret_file", a.client_secret_file);
        let key_file = self.opt("auth.private_key_file", a.private_key_file);
        let secret_unchecked = !self.checked(&["auth.client_secret", "auth.client_secret_file"]);
        let mut ok = true;
        if method != AuthMethod::None && !id_given && method_known {
            self.missing(
                "auth.client_id",
                "auth.client_id",
                "missing `auth.client_id`",
                Some("add `client_id: ${ONEUP_CLIENT_ID}` under `auth:`".into()),
            );
            ok = false;
        }
        let mut client_secret = None;
        let with_secret =
            matches!(method, AuthMethod::ClientSecretPost | AuthMethod::ClientSecretBasic | AuthMethod::ClientHeaders);
        if with_secret && method_known {
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
                (None, None) if secret_given => ok = secret_unchecked,
                (None, None) => {
                    let paths = ["auth.client_secret", "auth.client_secret_file"];
                    if !paths.iter().any(|p| self.explained.contains(*p)) {
                        self.missing(
                            "auth.client_secret",
                            "auth",
                            format!("auth.method {} needs a secret", method.as_str()),
                            Some("add `client_secret: ${ONEUP_CLIENT_SECRET}` or `client_secret_file: path`".into()),
                        );
                    }
                    ok = false;
                }
            }
        }
        let mut private_key_pem = None;
        let algorithm = self.choice("auth.algorithm", a.algorithm).unwrap_or(JwtAlgorithm::Rs384);
        if method == AuthMethod::PrivateKeyJwt {
            match key_file {
                Some(f) => {
                    private_key_pem = self.secret_file("auth.private_key_file", &f, false);
                    if let Some(pem) = &private_key_pem
                        && let Err(e) = crate::jwt::SigningKey::from_pem(pem.expose(), algorithm)
                    {
                        self.err(
                            "auth.private_key_file",
                            e,
                            Some(format!("make one with `{} keygen`", crate::invocation::program())),
                        );
                    }
                }
                None if key_given => ok = !self.checked(&["auth.private_key_file"]),
                None => {
                    self.missing(
                        "auth.private_key_file",
                        "auth",
                        "auth.method private-key-jwt needs `private_key_file`",
                        Some(format!("make a key with `{} keygen`", crate::invocation::program())),
                    );
                    ok = false;
                }
            }
        }
        let token_url = match a.token_url.is_given() {
            true => self.url("auth.token_url", a.token_url),
            // Header credentials need no token: nothing is sent to a token URL.
            false if method == AuthMethod::ClientHeaders => None,
            false if oneup => Some(self.oneup_token_url(names, method_known && method != AuthMethod::None)),
            false => None,
        };
        let scope = self
            .opt("auth.scope", a.scope)
            .or_else(|| (access == Some(Access::ProviderAccess)).then(|| ONEUP_PROVIDER_SCOPE.to_string()));
        let mut token_origins = Vec::new();
        for (path, o) in self.items("auth.token_origins", a.token_origins) {
            if let Some(u) = self.expand(&path, &o).and_then(|o| self.url_text(&path, &o)) {
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

    /// 1up's token URL: from `oneup.realm`, else the sandbox realm's (with a warning, unless the job
    /// names 1up's sandbox tenant: production realms are per customer).
    fn oneup_token_url(&mut self, names: Option<&Names>, warn: bool) -> Url {
        if let Some(u) = names.and_then(Names::token_url) {
            return u;
        }
        let sandbox = names.is_some_and(|n| n.tenant.as_deref() == Some(ONEUP_SANDBOX_TENANT));
        if !names.is_some_and(|n| n.realm_given) && !sandbox && warn {
            self.warnings.push(format!(
                "auth.token_url defaults to 1up's sandbox realm `{ONEUP_SANDBOX_REALM}`; production realms are per customer: set `oneup.realm` (or auth.token_url)"
            ));
        }
        match names {
            Some(n) => oneup_token_url(&n.gateway, ONEUP_SANDBOX_REALM),
            None => Url::parse(ONEUP_TOKEN_URL).expect("constant URL"),
        }
    }
}
