//! Where things are in a job file. yaml_serde's values carry no positions, so this reads the text the
//! way the job-file shape allows: block mappings by indentation, lists as `- item` lines or `[a, b]`
//! flow lists. It maps `export.types.2` to a line and column for messages; when it cannot place
//! something, messages fall back to the enclosing key.

use std::collections::HashMap;

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Default)]
pub struct Locator {
    /// `auth.client_id` → the key's position.
    keys: HashMap<String, Pos>,
    /// `auth.client_id` → the value's position (after the colon), or a list item's.
    values: HashMap<String, Pos>,
    /// Keys in the order they appear, with their section path, for the unknown-key sweep.
    pub order: Vec<(String, String, Pos)>,
    lines: Vec<String>,
}

impl Locator {
    pub fn new(text: &str) -> Self {
        let mut l = Locator { lines: text.lines().map(str::to_string).collect(), ..Default::default() };
        // (indent, path) of the open mappings.
        let mut stack: Vec<(usize, String)> = Vec::new();
        let mut list_index: HashMap<String, usize> = HashMap::new();
        let lines = l.lines.clone();
        for (i, raw) in lines.iter().enumerate() {
            let line_no = i + 1;
            let content = strip_comment(raw);
            if content.trim().is_empty() || content.trim_start().starts_with("---") {
                continue;
            }
            let indent = content.len() - content.trim_start().len();
            let rest = content.trim_start();
            while stack.last().is_some_and(|(ind, _)| *ind >= indent && !rest.starts_with("- ")) {
                stack.pop();
            }
            if let Some(item) = rest.strip_prefix("- ").or_else(|| (rest == "-").then_some("")) {
                // A block list item belongs to the innermost key opened at a smaller or equal indent.
                while stack.last().is_some_and(|(ind, _)| *ind > indent) {
                    stack.pop();
                }
                if let Some((_, parent)) = stack.last() {
                    let n = list_index.entry(parent.clone()).or_insert(0);
                    let col = indent + 3 + (item.len() - item.trim_start().len());
                    l.values.insert(format!("{parent}.{n}"), Pos { line: line_no, column: col });
                    *n += 1;
                }
                continue;
            }
            let Some((key, after)) = split_key(rest) else {
                continue;
            };
            let parent = stack.last().map(|(_, p)| p.clone()).unwrap_or_default();
            let path = if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") };
            let key_pos = Pos { line: line_no, column: indent + 1 };
            l.keys.insert(path.clone(), key_pos);
            l.order.push((parent.clone(), key.to_string(), key_pos));
            let value = after.trim_start();
            let value_col = indent + key.len() + 1 + (after.len() - value.len()) + 1;
            if value.is_empty() {
                stack.push((indent, path));
            } else {
                l.values.insert(path.clone(), Pos { line: line_no, column: value_col });
                if let Some(inner) = value.strip_prefix('[') {
                    // Flow list: place each item.
                    let mut offset = value_col + 1;
                    for (n, part) in inner.trim_end_matches(']').split(',').enumerate() {
                        let lead = part.len() - part.trim_start().len();
                        l.values.insert(format!("{path}.{n}"), Pos { line: line_no, column: offset + lead });
                        offset += part.len() + 1;
                    }
                }
            }
        }
        l
    }

    /// The value's position if known, else the key's, else the nearest enclosing key's.
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.values.get(path).or_else(|| self.keys.get(path)).copied().or_else(|| {
            let parent = path.rsplit_once('.')?.0;
            self.value(parent)
        })
    }

    pub fn key(&self, path: &str) -> Option<Pos> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }

    pub fn line(&self, n: usize) -> Option<&str> {
        self.lines.get(n.checked_sub(1)?).map(String::as_str)
    }
}

/// `key: rest` for a plain or quoted key.
fn split_key(s: &str) -> Option<(&str, &str)> {
    let (k, rest) = if let Some(q) = s.strip_prefix('"') {
        let end = q.find('"')?;
        (&q[..end], q[end + 1..].strip_prefix(':')?)
    } else {
        let i = s.find(':')?;
        let k = &s[..i];
        if k.contains(' ') && !k.trim().is_empty() && k.trim().contains(' ') {
            return None;
        }
        (k.trim_end(), &s[i + 1..])
    };
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None; // `http://…` inside a value, not a key
    }
    Some((k, rest))
}

/// The line without a trailing `# comment` (a `#` inside quotes or not after a space is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_single = false;
    let mut in_double = false;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !in_double => in_single = !in_single,
            '"' if !in_single => in_double = !in_double,
            '#' if !in_single && !in_double && (prev == ' ' || i == 0) => {
                return line[..i].trim_end();
            }
            _ => {}
        }
        prev = c;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name: x   # comment\nauth:\n  client_id: abc\n  token_url: https://a/b:c\nexport:\n  types: [Patient, Coverag]\n  patients:\n    - Patient/1\n    - Patient/2\npoll:\n  timeout: 24h\n";

    #[test]
    fn keys_values_and_list_items() {
        let l = Locator::new(TEXT);
        assert_eq!(l.key("auth.client_id"), Some(Pos { line: 3, column: 3 }));
        assert_eq!(l.value("auth.client_id"), Some(Pos { line: 3, column: 14 }));
        assert_eq!(l.value("auth.token_url"), Some(Pos { line: 4, column: 14 }));
        assert_eq!(l.value("export.types.0"), Some(Pos { line: 6, column: 11 }));
        assert_eq!(l.value("export.types.1"), Some(Pos { line: 6, column: 20 }));
        assert_eq!(l.value("export.patients.1"), Some(Pos { line: 9, column: 7 }));
        assert_eq!(l.value("poll.timeout"), Some(Pos { line: 11, column: 12 }));
        assert_eq!(l.value("name"), Some(Pos { line: 1, column: 7 }));
        // Unknown paths fall back to the enclosing key.
        assert_eq!(l.value("auth.scope"), Some(Pos { line: 2, column: 1 }));
    }

    #[test]
    fn comments_and_quotes() {
        assert_eq!(strip_comment("a: b # c"), "a: b");
        assert_eq!(strip_comment("a: \"b # c\""), "a: \"b # c\"");
        assert_eq!(strip_comment("a: b#c"), "a: b#c");
    }
}
