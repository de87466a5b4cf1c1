//! Chaos mode: from one `u64` seed, many faults switched on together, each firing at random on the
//! requests it applies to — 429s (with `Retry-After`) and transient 5xx at every stage (token,
//! kick-off, status, file), 401s for tokens that expired early, connections cut mid-file, slow bodies,
//! tokens that live seconds, and file links that expire (410, or 403 to a request without a token) and
//! stay expired until the client fetches fresh ones from the status URL.
//!
//! Deterministic as far as a server can be: the plan (which kinds are on, how often each fires, the
//! shape of the server) comes from the seed alone, and each request draws from its own generator seeded
//! by the seed and the request's arrival number. Concurrent downloads may arrive in another order from
//! one run to the next; the faults a given arrival sees do not change.
//!
//! The faults never make the server lie: nothing is accepted and then refused, a kick-off that gets a
//! fault was not started, and every 5xx says it is transient (`Retry-After`, or an OperationOutcome
//! with code `transient`, or no OperationOutcome at all), so a correct client always gets there.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::fhir::{RetryAfterStyle, oo, retry_after};
use super::lock;

/// splitmix64: small, fast, and good enough to pick faults; no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// What a chaos fault did to one answer (the soak's summary counts them by kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// 429 with `Retry-After`.
    Throttled,
    /// 503 with `Retry-After`, 500 with a `transient` OperationOutcome, or 502 with an HTML page.
    ServerError,
    /// A 401 for a token the server forgot (it expired early).
    TokenRevoked,
    /// A token issued with a lifetime of seconds.
    ShortToken,
    /// Part of a file's body, then the connection aborted.
    CutMidFile,
    /// A file's body sent slowly.
    SlowBody,
    /// A file link that has expired (answered 410 or 403 until fresh links are fetched).
    ExpiredLink,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Throttled,
        FaultKind::ServerError,
        FaultKind::TokenRevoked,
        FaultKind::ShortToken,
        FaultKind::CutMidFile,
        FaultKind::SlowBody,
        FaultKind::ExpiredLink,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Throttled => "429 + Retry-After",
            FaultKind::ServerError => "transient 5xx",
            FaultKind::TokenRevoked => "401 token expired early",
            FaultKind::ShortToken => "token living seconds",
            FaultKind::CutMidFile => "connection cut mid-file",
            FaultKind::SlowBody => "slow body",
            FaultKind::ExpiredLink => "expired file link",
        }
    }
}

/// Where a request is in the flow (faults that apply to all stages fire at each of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Token,
    Kickoff,
    Status,
    File,
}

/// Which faults are on and how often each fires (per request it applies to), from the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosPlan {
    pub seed: u64,
    /// Rate per kind; a kind not listed is off.
    pub rates: BTreeMap<FaultKind, f64>,
}

impl ChaosPlan {
    /// Each kind is on with probability 2/3, at a rate of 4–20 % of the requests it applies to
    /// (short tokens, when on, are every token).
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut rates = BTreeMap::new();
        for kind in FaultKind::ALL {
            let on = rng.chance(2.0 / 3.0);
            let rate = 0.04 + 0.16 * rng.unit();
            if on {
                rates.insert(kind, if kind == FaultKind::ShortToken { 1.0 } else { rate });
            }
        }
        ChaosPlan { seed, rates }
    }

    fn rate(&self, kind: FaultKind) -> f64 {
        self.rates.get(&kind).copied().unwrap_or(0.0)
    }
}

/// The live chaos of a running sandbox: the plan, the arrival counter, what has fired.
#[derive(Debug)]
pub struct Chaos {
    plan: ChaosPlan,
    arrivals: AtomicU64,
    fired: Mutex<BTreeMap<FaultKind, u64>>,
    /// When each token was issued (a token younger than a second is never revoked, so the client's
    /// one renewal on a 401 always gets through).
    issued: Mutex<HashMap<String, Instant>>,
    /// Links signed by manifests up to this number (`?sig=N`) have expired.
    expired_upto: Mutex<Option<u32>>,
    /// Signatures under which a whole file body has been served. A manifest's links expire at random
    /// only after one of them has delivered a file, as real links last minutes: links that expire
    /// before any file can arrive are a broken server (the client rightly gives up on those), not
    /// the chaos this soak is after.
    delivered: Mutex<BTreeSet<u32>>,
}

/// A file request's draw: its generator and the link's signature.
pub struct FileDraw {
    pub rng: Rng,
    pub sig: Option<u32>,
}

/// What a request's own draw decided about its body.
pub enum BodyFault {
    /// Send this many bytes, then abort the connection.
    Cut(u64),
    /// Send at about this many bytes per second.
    Slow(u64),
}

impl Chaos {
    pub fn new(plan: ChaosPlan) -> Self {
        Chaos {
            plan,
            arrivals: AtomicU64::new(0),
            fired: Mutex::default(),
            issued: Mutex::default(),
            expired_upto: Mutex::default(),
            delivered: Mutex::default(),
        }
    }

    /// How many answers each kind changed so far.
    pub fn fired(&self) -> BTreeMap<FaultKind, u64> {
        lock(&self.fired).clone()
    }

    fn count(&self, kind: FaultKind) {
        *lock(&self.fired).entry(kind).or_default() += 1;
    }

    /// The generator of the next request to arrive.
    pub fn arrival(&self) -> Rng {
        let n = self.arrivals.fetch_add(1, Ordering::Relaxed);
        Rng::new(self.plan.seed ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    /// An answer instead of the real one for a request at `stage`, or `None` to serve it. `token` is
    /// the bearer token the request carried (revoked through `revoke` when it "expires").
    pub fn intercept(
        &self,
        rng: &mut Rng,
        stage: Stage,
        query: Option<&str>,
        token: Option<&str>,
        revoke: impl FnOnce(),
    ) -> Option<Response> {
        if stage == Stage::File
            && let Some(sig) = signature(query)
        {
            let mut upto = lock(&self.expired_upto);
            let expired = upto.is_some_and(|u| sig <= u);
            let may_expire = lock(&self.delivered).contains(&sig);
            if expired || (may_expire && rng.chance(self.plan.rate(FaultKind::ExpiredLink))) {
                *upto = Some(upto.map_or(sig, |u| u.max(sig)));
                drop(upto);
                self.count(FaultKind::ExpiredLink);
                return Some(expired_link(token.is_some()));
            }
        }
        if rng.chance(self.plan.rate(FaultKind::Throttled)) {
            self.count(FaultKind::Throttled);
            let r = oo(StatusCode::TOO_MANY_REQUESTS, "throttled", "too many requests (chaos)");
            return Some(retry_after(r, RetryAfterStyle::Seconds(rng.range(0, 1))));
        }
        if rng.chance(self.plan.rate(FaultKind::ServerError)) {
            self.count(FaultKind::ServerError);
            return Some(server_error(rng));
        }
        if stage != Stage::Token
            && let Some(t) = token
            && rng.chance(self.plan.rate(FaultKind::TokenRevoked))
            && lock(&self.issued).get(t).is_some_and(|at| at.elapsed() >= Duration::from_secs(1))
        {
            self.count(FaultKind::TokenRevoked);
            revoke();
            let mut r = oo(StatusCode::UNAUTHORIZED, "expired", "access token expired (chaos)");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            return Some(r);
        }
        None
    }

    /// The lifetime of a token being issued: seconds when short tokens are on.
    pub fn token_ttl(&self, token: &str, default: Duration) -> Duration {
        lock(&self.issued).insert(token.to_string(), Instant::now());
        let mut rng = self.arrival();
        if rng.chance(self.plan.rate(FaultKind::ShortToken)) {
            self.count(FaultKind::ShortToken);
            Duration::from_secs(rng.range(2, 4))
        } else {
            default
        }
    }

    /// Whether a file body of `len` bytes is cut or slowed.
    pub fn body(&self, draw: &mut FileDraw, len: u64) -> Option<BodyFault> {
        let rng = &mut draw.rng;
        if len > 1 && rng.chance(self.plan.rate(FaultKind::CutMidFile)) {
            self.count(FaultKind::CutMidFile);
            return Some(BodyFault::Cut(rng.range(1, len - 1)));
        }
        // A slow body is still a whole one.
        if let Some(sig) = draw.sig {
            lock(&self.delivered).insert(sig);
        }
        if rng.chance(self.plan.rate(FaultKind::SlowBody)) {
            self.count(FaultKind::SlowBody);
            return Some(BodyFault::Slow(rng.range(32, 256) * 1024));
        }
        None
    }
}

/// `sig=N` from a file URL's query (the links every manifest signs in chaos mode).
pub fn signature(query: Option<&str>) -> Option<u32> {
    query?.split('&').find_map(|kv| kv.strip_prefix("sig=")).and_then(|n| n.parse().ok())
}

/// What storage answers for a link past its expiry: 403 to a pre-signed request (no token), else 410.
fn expired_link(with_token: bool) -> Response {
    if with_token {
        oo(StatusCode::GONE, "not-found", "this link has expired (chaos)")
    } else {
        oo(StatusCode::FORBIDDEN, "security", "Request has expired (chaos)")
    }
}

/// One of the transient 5xx answers: 503 + `Retry-After`, 500 + a `transient` OperationOutcome, 502 +
/// an HTML page from a proxy.
fn server_error(rng: &mut Rng) -> Response {
    match rng.range(0, 2) {
        0 => retry_after(
            oo(StatusCode::SERVICE_UNAVAILABLE, "transient", "service unavailable (chaos)"),
            RetryAfterStyle::Seconds(rng.range(0, 1)),
        ),
        1 => oo(StatusCode::INTERNAL_SERVER_ERROR, "transient", "temporary failure, retry the request (chaos)"),
        _ => {
            let mut r = Response::new(Body::from("<html><body><h1>502 Bad Gateway</h1></body></html>"));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            r
        }
    }
}

/// The bearer token a request carries, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::SandboxConfig;

    #[test]
    fn a_seed_makes_one_plan_and_one_server() {
        assert_eq!(ChaosPlan::from_seed(7), ChaosPlan::from_seed(7));
        let a = SandboxConfig::chaos(7);
        let b = SandboxConfig::chaos(7);
        assert_eq!((a.files_per_type, a.gzip, a.manifest_page_size), (b.files_per_type, b.gzip, b.manifest_page_size));
        let plans: Vec<ChaosPlan> = (0..64).map(ChaosPlan::from_seed).collect();
        assert!(plans.iter().any(|p| p.rates.len() >= 6), "some seeds switch on nearly everything");
        assert!(plans.windows(2).any(|w| w[0].rates != w[1].rates), "seeds differ");
        for p in &plans {
            assert!(p.rates.iter().all(|(k, r)| *k == FaultKind::ShortToken || (0.04..=0.2).contains(r)), "{p:?}");
        }
    }

    #[test]
    fn each_arrival_draws_the_same_faults_for_the_same_seed() {
        let draws = |seed| {
            let c = Chaos::new(ChaosPlan::from_seed(seed));
            (0..200)
                .map(|_| c.intercept(&mut c.arrival(), Stage::Status, None, None, || {}).map(|r| r.status().as_u16()))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(11), draws(11));
        let all_on = ChaosPlan { seed: 3, rates: FaultKind::ALL.iter().map(|k| (*k, 0.2)).collect() };
        let c = Chaos::new(all_on);
        let answers: Vec<u16> = (0..300)
            .filter_map(|_| c.intercept(&mut c.arrival(), Stage::Kickoff, None, None, || {}))
            .map(|r| r.status().as_u16())
            .collect();
        for s in [429, 500, 502, 503] {
            assert!(answers.contains(&s), "{s} among {answers:?}");
        }
    }

    #[test]
    fn an_expired_link_stays_expired_until_a_fresher_manifest() {
        let plan = ChaosPlan { seed: 1, rates: BTreeMap::from([(FaultKind::ExpiredLink, 1.0)]) };
        let c = Chaos::new(plan);
        let status = |q: &str, token: Option<&str>| {
            c.intercept(&mut c.arrival(), Stage::File, Some(q), token, || {}).map(|r| r.status().as_u16())
        };
        assert_eq!(status("sig=2", None), None, "no link of manifest 2 has delivered a file yet");
        let mut draw = FileDraw { rng: c.arrival(), sig: Some(2) };
        assert!(c.body(&mut draw, 100).is_none(), "a whole body (no cut or slow rate in this plan)");
        assert_eq!(status("sig=2", None), Some(403), "pre-signed: 403");
        assert_eq!(status("sig=1", Some("t")), Some(410), "older links expired too; with a token: 410");
        let c2 = Chaos::new(ChaosPlan { seed: 1, rates: BTreeMap::new() });
        *lock(&c2.expired_upto) = Some(2);
        let st = |q: &str| c2.intercept(&mut c2.arrival(), Stage::File, Some(q), None, || {}).map(|r| r.status());
        assert_eq!(st("sig=2").map(|s| s.as_u16()), Some(403));
        assert_eq!(st("sig=3"), None, "fresh links work");
        assert_eq!(c2.fired().get(&FaultKind::ExpiredLink), Some(&1));
    }

    #[test]
    fn young_tokens_are_never_revoked() {
        let plan = ChaosPlan { seed: 5, rates: BTreeMap::from([(FaultKind::TokenRevoked, 1.0)]) };
        let c = Chaos::new(plan);
        c.token_ttl("young", Duration::from_secs(60));
        let mut revoked = false;
        assert!(c.intercept(&mut c.arrival(), Stage::Status, None, Some("young"), || revoked = true).is_none());
        lock(&c.issued).insert("old".into(), Instant::now() - Duration::from_secs(2));
        let r = c.intercept(&mut c.arrival(), Stage::Status, None, Some("old"), || revoked = true);
        assert_eq!(r.map(|r| r.status().as_u16()), Some(401));
        assert!(revoked);
    }
}
