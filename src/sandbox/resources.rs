//! Line writers for each synthetic resource type, and the tiny formatting helpers they share.
//!
//! Each writer appends one compact JSON resource and a `\n`. Strings come from `tables.rs` (no characters
//! that need escaping), numbers and dates are formatted by hand: this is the hot loop of generation.

use super::tables::*;

pub(super) const N_PAYERS: u32 = 3;
pub(super) const N_PROVIDER_ORGS: u32 = 3;
pub(super) const N_PRACTITIONERS: u32 = 20;

/// What one resource needs to know about its patient.
pub(super) struct Ctx {
    pub i: u32,
    pub k: u32,
    pub upd: i64,
    pub payer: u32,
    pub pcp: u32,
    pub n_enc: u32,
}

pub(super) fn coverage(o: &mut Vec<u8>, c: &Ctx, r: &mut fastrand::Rng) {
    head(o, "Coverage", "cov-", c.i, Some(c.k), c.upd);
    s(
        o,
        r#","status":"active","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIP","display":"health insurance plan policy"}]},"subscriberId":"M"#,
    );
    pad(o, c.i as u64, 8);
    s(o, r#"","beneficiary":{"reference":"Patient/pt-"#);
    u(o, c.i as u64);
    s(
        o,
        r#""},"relationship":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/subscriber-relationship","code":"self"}]},"period":{"start":""#,
    );
    let start = c.upd / 86_400 - 400 - r.i64(0..700);
    date(o, start);
    s(o, r#"","end":""#);
    date(o, start + 365 + r.i64(0..365));
    s(o, r#""},"payor":[{"reference":"Organization/org-"#);
    u(o, ((c.payer + c.k - 1) % N_PAYERS + 1) as u64);
    s(
        o,
        r#""}],"class":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/coverage-class","code":"plan"}]},"value":""#,
    );
    let (plan, name) = PLANS[r.usize(0..PLANS.len())];
    s(o, plan);
    s(o, r#"","name":""#);
    s(o, name);
    s(o, "\"}]}\n");
}

pub(super) fn eob(o: &mut Vec<u8>, c: &Ctx, r: &mut fastrand::Rng) {
    head(o, "ExplanationOfBenefit", "eob-", c.i, Some(c.k), c.upd);
    let day = c.upd / 86_400 - r.i64(0..30);
    s(
        o,
        r#","status":"active","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},"use":"claim","patient":{"reference":"Patient/pt-"#,
    );
    u(o, c.i as u64);
    s(o, r#""},"billablePeriod":{"start":""#);
    date(o, day);
    s(o, r#"","end":""#);
    date(o, day);
    s(o, r#""},"created":""#);
    instant(o, c.upd);
    s(o, r#"","insurer":{"reference":"Organization/org-"#);
    u(o, c.payer as u64);
    s(o, r#""},"provider":{"reference":"Practitioner/pr-"#);
    u(o, 1 + r.u64(0..N_PRACTITIONERS as u64));
    s(o, r#""},"outcome":"complete","insurance":[{"focal":true,"coverage":{"reference":"Coverage/cov-"#);
    u(o, c.i as u64);
    s(o, r#"-0"}}],"item":["#);
    let mut total = 0u64;
    for seq in 1..=1 + r.u64(0..3) {
        if seq > 1 {
            s(o, ",");
        }
        let (code, display) = CPT[r.usize(0..CPT.len())];
        let cents = 2_000 + r.u64(0..48_000);
        total += cents;
        s(o, r#"{"sequence":"#);
        u(o, seq);
        s(o, r#","productOrService":{"coding":[{"system":"http://www.ama-assn.org/go/cpt","code":""#);
        s(o, code);
        s(o, r#"","display":""#);
        s(o, display);
        s(o, r#""}]},"servicedDate":""#);
        date(o, day);
        s(o, r#"","net":{"value":"#);
        money(o, cents);
        s(o, r#","currency":"USD"}}"#);
    }
    s(
        o,
        r#"],"total":[{"category":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/adjudication","code":"submitted"}]},"amount":{"value":"#,
    );
    money(o, total);
    s(o, r#","currency":"USD"}}],"payment":{"amount":{"value":"#);
    money(o, total * 8 / 10);
    s(o, ",\"currency\":\"USD\"}}}\n");
}

pub(super) fn encounter(o: &mut Vec<u8>, c: &Ctx, r: &mut fastrand::Rng) {
    head(o, "Encounter", "enc-", c.i, Some(c.k), c.upd);
    let start = c.upd - r.i64(3_600..30 * 86_400);
    let (code, display) = ENCOUNTER_TYPES[r.usize(0..ENCOUNTER_TYPES.len())];
    s(
        o,
        r#","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"type":[{"coding":[{"system":"http://snomed.info/sct","code":""#,
    );
    s(o, code);
    s(o, r#"","display":""#);
    s(o, display);
    s(o, r#""}]}],"subject":{"reference":"Patient/pt-"#);
    u(o, c.i as u64);
    s(o, r#""},"participant":[{"individual":{"reference":"Practitioner/pr-"#);
    u(o, c.pcp as u64);
    s(o, r#""}}],"period":{"start":""#);
    instant(o, start);
    s(o, r#"","end":""#);
    instant(o, start + 900 + r.i64(0..3_600));
    s(o, r#""},"serviceProvider":{"reference":"Organization/org-"#);
    u(o, (N_PAYERS + 1 + r.u32(0..N_PROVIDER_ORGS)) as u64);
    s(o, "\"}}\n");
}

pub(super) fn observation(o: &mut Vec<u8>, c: &Ctx, r: &mut fastrand::Rng) {
    head(o, "Observation", "obs-", c.i, Some(c.k), c.upd);
    let (code, display, unit, lo, hi) = LOINC[r.usize(0..LOINC.len())];
    s(
        o,
        r#","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":""#,
    );
    s(o, code);
    s(o, r#"","display":""#);
    s(o, display);
    s(o, r#""}]},"subject":{"reference":"Patient/pt-"#);
    u(o, c.i as u64);
    s(o, r#""},"encounter":{"reference":"Encounter/enc-"#);
    u(o, c.i as u64);
    s(o, "-");
    u(o, (c.k % c.n_enc) as u64);
    s(o, r#""},"effectiveDateTime":""#);
    instant(o, c.upd - r.i64(0..86_400));
    s(o, r#"","valueQuantity":{"value":"#);
    let tenths = r.u64(lo * 10..hi * 10);
    u(o, tenths / 10);
    s(o, ".");
    u(o, tenths % 10);
    s(o, r#","unit":""#);
    s(o, unit);
    s(o, r#"","system":"http://unitsofmeasure.org","code":""#);
    s(o, unit);
    s(o, "\"}}\n");
}

pub(super) fn condition(o: &mut Vec<u8>, c: &Ctx, r: &mut fastrand::Rng) {
    head(o, "Condition", "cond-", c.i, Some(c.k), c.upd);
    let (code, display) = SNOMED[r.usize(0..SNOMED.len())];
    let onset = c.upd / 86_400 - r.i64(0..3_000);
    s(
        o,
        r#","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}]},"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item"}]}],"code":{"coding":[{"system":"http://snomed.info/sct","code":""#,
    );
    s(o, code);
    s(o, r#"","display":""#);
    s(o, display);
    s(o, r#""}]},"subject":{"reference":"Patient/pt-"#);
    u(o, c.i as u64);
    s(o, r#""},"onsetDateTime":""#);
    date(o, onset);
    s(o, r#"","recordedDate":""#);
    date(o, onset + r.i64(0..60));
    s(o, "\"}\n");
}

pub(super) fn organization(o: &mut Vec<u8>, n: u32, upd: i64) {
    head(o, "Organization", "org-", n, None, upd);
    let payer = n <= N_PAYERS;
    s(
        o,
        r#","active":true,"type":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/organization-type","code":""#,
    );
    s(o, if payer { "pay" } else { "prov" });
    s(o, r#""}]}],"name":""#);
    s(o, ORG_NAMES[(n - 1) as usize % ORG_NAMES.len()]);
    s(o, "\"}\n");
}

pub(super) fn practitioner(o: &mut Vec<u8>, n: u32, upd: i64, r: &mut fastrand::Rng) {
    head(o, "Practitioner", "pr-", n, None, upd);
    s(o, r#","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"1"#);
    pad(o, 100_000_000 + n as u64 * 7_919, 9);
    s(o, r#""}],"active":true,"name":[{"family":""#);
    s(o, pick(r, FAMILY));
    s(o, r#"","given":[""#);
    s(o, pick(r, GIVEN_F));
    s(o, "\"],\"prefix\":[\"Dr.\"]}]}\n");
}

/// `{"resourceType":"T","id":"prefixI[-K]","meta":{"lastUpdated":"…"}` — without the closing brace.
pub(super) fn head(o: &mut Vec<u8>, t: &str, prefix: &str, i: u32, k: Option<u32>, upd: i64) {
    s(o, r#"{"resourceType":""#);
    s(o, t);
    s(o, r#"","id":""#);
    s(o, prefix);
    u(o, i as u64);
    if let Some(k) = k {
        s(o, "-");
        u(o, k as u64);
    }
    s(o, r#"","meta":{"lastUpdated":""#);
    instant(o, upd);
    s(o, "\"}");
}

/// A per-resource RNG: SplitMix64 over (patient, type, ordinal) so seeds never collide.
pub(super) fn rng(i: u32, t: u32, k: u32) -> fastrand::Rng {
    let mut z = ((i as u64) << 32 | (t as u64) << 24 | k as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    fastrand::Rng::with_seed(z ^ (z >> 31))
}

pub(super) fn pick(r: &mut fastrand::Rng, from: &[&'static str]) -> &'static str {
    from[r.usize(0..from.len())]
}

pub(super) fn s(o: &mut Vec<u8>, text: &str) {
    o.extend_from_slice(text.as_bytes());
}

pub(super) fn u(o: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    o.extend_from_slice(&digits[at..]);
}

pub(super) fn pad(o: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = Vec::with_capacity(20);
    u(&mut digits, n);
    o.extend(std::iter::repeat_n(b'0', width.saturating_sub(digits.len())));
    o.extend_from_slice(&digits);
}

pub(super) fn money(o: &mut Vec<u8>, cents: u64) {
    u(o, cents / 100);
    s(o, ".");
    pad(o, cents % 100, 2);
}

/// Days since 1970-01-01 → `YYYY-MM-DD` (Howard Hinnant's civil_from_days).
pub(crate) fn date(o: &mut Vec<u8>, days: i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    pad(o, y as u64, 4);
    s(o, "-");
    pad(o, m as u64, 2);
    s(o, "-");
    pad(o, d as u64, 2);
}

/// Unix seconds → `YYYY-MM-DDThh:mm:ssZ`.
pub(crate) fn instant(o: &mut Vec<u8>, secs: i64) {
    date(o, secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400) as u64;
    s(o, "T");
    pad(o, t / 3_600, 2);
    s(o, ":");
    pad(o, t / 60 % 60, 2);
    s(o, ":");
    pad(o, t % 60, 2);
    s(o, "Z");
}
