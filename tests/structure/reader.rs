//! Reading one Rust file for the structure test: its code without comments and literals, and the
//! module paths it names from `crate`, `super` or `self`.

/// A module path: `["crate", "export", "poll"]`.
pub type Module = Vec<String>;

/// The text with comments and string/char literals blanked (newlines kept), so doc links and
/// messages that mention `crate::x` are not arrows.
pub fn code_only(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let blank = |out: &mut String, c: u8| out.push(if c == b'\n' { '\n' } else { ' ' });
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        out.push_str("  ");
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        out.push_str("  ");
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        blank(&mut out, b[i]);
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#')) && (i == 0 || !is_ident(b[i - 1])) => {
                // A raw string: r"…", r#"…"#.
                let start = i;
                i += 1;
                let mut hashes = 0;
                while b.get(i) == Some(&b'#') {
                    hashes += 1;
                    i += 1;
                }
                if b.get(i) != Some(&b'"') {
                    out.push_str(&s[start..i]);
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let end = s[i + 1..].find(&close).map_or(b.len(), |e| i + 1 + e + close.len());
                for &c in &b[start..end] {
                    blank(&mut out, c);
                }
                i = end;
            }
            b'"' => {
                blank(&mut out, b[i]);
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        blank(&mut out, b[i]);
                        i += 1;
                    }
                    if i < b.len() {
                        blank(&mut out, b[i]);
                        i += 1;
                    }
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            // A char literal ('x', '\n', '"'), not a lifetime ('a).
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                let len = if b.get(i + 1) == Some(&b'\\') { s[i + 2..].find('\'').map_or(2, |e| e + 3) } else { 3 };
                for _ in 0..len {
                    out.push(' ');
                }
                i += len;
            }
            _ => {
                // Whole characters, so the output stays valid UTF-8.
                let ch = s[i..].chars().next().unwrap();
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every path a file names that starts at `crate`, `super` or `self`, as module paths from `crate`.
/// `here` is the file's module; inline `mod x { … }` blocks move `super`/`self` as Rust does.
pub fn paths_in(code: &str, here: &Module) -> Vec<Module> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    // Inline modules open at a brace depth: (depth, module).
    let mut inline: Vec<(usize, Module)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'{' {
            depth += 1;
            i += 1;
            continue;
        }
        if c == b'}' {
            depth = depth.saturating_sub(1);
            if inline.last().is_some_and(|(d, _)| *d > depth) {
                inline.pop();
            }
            i += 1;
            continue;
        }
        if !is_ident(c) || (i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let word_end = (i..b.len()).find(|&j| !is_ident(b[j])).unwrap_or(b.len());
        let word = &code[i..word_end];
        let current = inline.last().map_or(here, |(_, m)| m).clone();
        if word == "mod" {
            // `mod name {` opens an inline module.
            let rest = code[word_end..].trim_start();
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && rest[name.len()..].trim_start().starts_with('{') {
                let mut m = current.clone();
                m.push(name);
                inline.push((depth + 1, m));
            }
            i = word_end;
            continue;
        }
        if matches!(word, "crate" | "super" | "self") && code[word_end..].starts_with("::") {
            let (items, end) = use_tree(code, i);
            for segs in items {
                if let Some(m) = absolute(&segs, &current) {
                    out.push(m);
                }
            }
            i = end;
            continue;
        }
        i = word_end;
    }
    out
}

/// The paths of one path or `use` tree starting at `i` (`crate::a::{b, c::{d, e}}`), and where it ends.
fn use_tree(code: &str, mut i: usize) -> (Vec<Vec<String>>, usize) {
    let b = code.as_bytes();
    let mut prefix = Vec::new();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) == Some(&b'{') {
            let mut items = Vec::new();
            i += 1;
            loop {
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return (items, i + 1);
                }
                let (sub, end) = use_tree(code, i);
                items.extend(sub.into_iter().map(|s| prefix.iter().cloned().chain(s).collect()));
                i = end.max(i + 1);
            }
        }
        let end = (i..b.len()).find(|&j| !is_ident(b[j])).unwrap_or(b.len());
        if end == i {
            return (vec![prefix], i);
        }
        prefix.push(code[i..end].to_string());
        i = end;
        if code[i..].starts_with("::") {
            i += 2;
        } else {
            return (vec![prefix], i);
        }
    }
}

/// `segs` (which may start with `super`/`self`) from `crate`, or `None` if it climbs above it.
fn absolute(segs: &[String], here: &Module) -> Option<Module> {
    let mut m: Module = match segs.first().map(String::as_str) {
        Some("crate") => vec!["crate".into()],
        _ => here.clone(),
    };
    let mut rest = segs;
    if segs.first().is_some_and(|s| s == "crate") {
        rest = &segs[1..];
    }
    for s in rest {
        match s.as_str() {
            "super" => {
                m.pop();
                if m.is_empty() {
                    return None;
                }
            }
            "self" => {}
            _ => m.push(s.clone()),
        }
    }
    Some(m)
}
