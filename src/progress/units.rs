//! The units people read, shared by the bars, the plain log lines and the summaries, so the same
//! quantity always reads the same: bytes in binary units, durations in a short human form, counts with
//! thousands separators, and server text made safe to print on a terminal.

use std::time::Duration;

const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];

/// `217 B`, `14.0 KiB`, `118.2 KiB`, `1.0 GiB`.
pub fn bytes(n: u64) -> String {
    let (v, unit) = scaled(n, n);
    match unit {
        None => format!("{n} B"),
        Some(u) => format!("{v:.1} {u}"),
    }
}

/// Two sizes in the larger one's unit: `12.3/40.1 MiB`, `0.2/3.0 KiB`, `120/4000 B`.
pub fn pair(done: u64, total: u64) -> String {
    let big = done.max(total);
    let (t, unit) = scaled(total, big);
    let (d, _) = scaled(done, big);
    match unit {
        None => format!("{done}/{total} B"),
        Some(u) => format!("{d:.1}/{t:.1} {u}"),
    }
}

/// `5.2 MiB/s`.
pub fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", bytes(bytes_per_sec.max(0.0) as u64))
}

/// `n` in the unit that suits `reference` (so two numbers can share one unit).
fn scaled(n: u64, reference: u64) -> (f64, Option<&'static str>) {
    if reference < 1024 {
        return (n as f64, None);
    }
    let mut v = n as f64 / 1024.0;
    let mut r = reference as f64 / 1024.0;
    let mut i = 0;
    while r >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        r /= 1024.0;
        i += 1;
    }
    (v, Some(UNITS[i]))
}

/// Elapsed time: `0s`, `12s`, `1m 03s`, `2h 05m`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A wait ahead: `now`, `0.4s`, `2.5s`, `12s`, `1m 30s`. Sub-second waits keep their tenths, so a
/// 400 ms poll interval reads `0.4s`, not `0s`.
pub fn wait(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "now".into(),
        1..10_000 => {
            let tenths = ms.div_ceil(100);
            if tenths.is_multiple_of(10) {
                format!("{}s", tenths / 10)
            } else {
                format!("{}.{}s", tenths / 10, tenths % 10)
            }
        }
        _ => clock(Duration::from_secs(d.as_secs_f64().round() as u64)),
    }
}

/// `121,087`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Text from a server or the network (X-Progress, error reasons) made safe for a terminal: control
/// characters (escape sequences, newlines) become spaces, so a hostile header cannot move the cursor.
pub fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// At most `max` characters of `s`, cut with `…` when longer.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The width of `s` on a terminal, counting one column per character (every character the tool
/// prints itself is one column wide; server text is cut to fit anyway).
pub fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(217), "217 B");
        assert_eq!(bytes(14_306), "14.0 KiB");
        assert_eq!(bytes(121_087), "118.2 KiB");
        assert_eq!(bytes(1 << 30), "1.0 GiB");
        assert_eq!(pair(12_900_000, 42_000_000), "12.3/40.1 MiB");
        assert_eq!(pair(120, 4000), "0.1/3.9 KiB");
        assert_eq!(pair(120, 400), "120/400 B");
        assert_eq!(rate(5.5 * 1024.0 * 1024.0), "5.5 MiB/s");
    }

    #[test]
    fn durations() {
        assert_eq!(clock(Duration::from_millis(400)), "0s");
        assert_eq!(clock(Duration::from_secs(63)), "1m 03s");
        assert_eq!(clock(Duration::from_secs(7500)), "2h 05m");
        assert_eq!(wait(Duration::ZERO), "now");
        assert_eq!(wait(Duration::from_millis(400)), "0.4s");
        assert_eq!(wait(Duration::from_millis(10)), "0.1s");
        assert_eq!(wait(Duration::from_millis(2000)), "2s");
        assert_eq!(wait(Duration::from_millis(2500)), "2.5s");
        assert_eq!(wait(Duration::from_secs(90)), "1m 30s");
    }

    #[test]
    fn counts_and_text() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(121_087), "121,087");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(clean("50%\x1b[2J\ndone"), "50% [2J done");
        assert_eq!(cut("ExplanationOfBenefit.ndjson", 12), "Explanation…");
        assert_eq!(cut("short", 12), "short");
    }
}
