//! The shape of `src/`, checked like behaviour: no import circles between the library's files, and no
//! file longer than [`MAX_LINES`] unless the allow-list below says why.
//!
//! The graph is at file level. Every `crate::…`, `super::…` and `self::…` path in a file (in `use`
//! trees, and inline paths like `crate::instant::now()`), comments and string literals left out, is
//! an arrow to the file of the longest module prefix it names. A parent naming its own child
//! (`mod run;`, `run::worst`) is how Rust declares modules, not an import, and is not read. `src/main.rs`
//! and `src/bin/` are other crates (their `crate::` is not the library's) and are not in the graph;
//! their lengths are checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[path = "structure/reader.rs"]
mod reader;

use reader::{Module, code_only, paths_in};

const MAX_LINES: usize = 500;

/// Files allowed over [`MAX_LINES`], each with its reason. Keep it short.
const LONG_FILES: &[(&str, &str)] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module a file is, by Rust's file layout (`#[path]` files are found through their declaration).
fn module_of(rel: &Path) -> Module {
    let mut m = vec!["crate".to_string()];
    let parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 < parts.len() {
            m.push(part.clone());
        } else if part != "lib.rs" && part != "mod.rs" {
            m.push(part.trim_end_matches(".rs").to_string());
        }
    }
    m
}

struct Tree {
    /// Each library file's module, and back.
    files: BTreeMap<PathBuf, Module>,
    by_module: BTreeMap<Module, PathBuf>,
    /// Arrows between library files.
    arrows: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
}

fn read_tree(root: &Path) -> Tree {
    let mut all = Vec::new();
    rust_files(root, &mut all);
    all.sort();
    let rel = |p: &Path| p.strip_prefix(root).unwrap().to_path_buf();
    let in_library = |r: &Path| r != Path::new("main.rs") && !r.starts_with("bin");
    let mut files: BTreeMap<PathBuf, Module> =
        all.iter().map(|p| rel(p)).filter(|r| in_library(r)).map(|r| (r.clone(), module_of(&r))).collect();
    // `#[path = "x.rs"] mod name;`: that file is `name` inside the declaring module.
    for p in &all {
        let r = rel(p);
        let Some(here) = files.get(&r).cloned() else { continue };
        let text = std::fs::read_to_string(p).unwrap();
        let mut lines = text.lines().peekable();
        while let Some(l) = lines.next() {
            let Some(target) = l.trim().strip_prefix("#[path = \"").and_then(|t| t.strip_suffix("\"]")) else {
                continue;
            };
            let next = lines.peek().map(|n| n.trim()).unwrap_or("");
            let name = next.trim_start_matches("pub ").strip_prefix("mod ").and_then(|n| n.strip_suffix(';'));
            if let Some(name) = name {
                let file = r.parent().unwrap().join(target);
                let mut m = here.clone();
                m.push(name.to_string());
                files.insert(file, m);
            }
        }
    }
    let by_module: BTreeMap<Module, PathBuf> = files.iter().map(|(f, m)| (m.clone(), f.clone())).collect();
    let mut arrows: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (file, here) in &files {
        let code = code_only(&std::fs::read_to_string(root.join(file)).unwrap());
        let to = arrows.entry(file.clone()).or_default();
        for path in paths_in(&code, here) {
            // The longest prefix that is a file: `crate::export::poll::next_step` is export/poll.rs.
            let target = (1..=path.len()).rev().find_map(|n| by_module.get(&path[..n]));
            if let Some(t) = target.filter(|t| *t != file) {
                to.insert(t.clone());
            }
        }
    }
    Tree { files, by_module, arrows }
}

/// Every import circle, each once, as files in arrow order (the first file repeated at the end).
fn circles(arrows: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    // Tarjan's strongly connected components; a component of more than one file holds a circle.
    struct S<'a> {
        arrows: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on: BTreeSet<&'a PathBuf>,
        comps: Vec<Vec<&'a PathBuf>>,
    }
    fn visit<'a>(s: &mut S<'a>, v: &'a PathBuf) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.arrows.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            s.comps.push(comp);
        }
    }
    let mut s = S {
        arrows,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        comps: Vec::new(),
    };
    for v in arrows.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    // One concrete circle per component: the shortest way back from its first file (breadth first).
    let mut out = Vec::new();
    for comp in s.comps.into_iter().filter(|c| c.len() > 1) {
        let inside: BTreeSet<&PathBuf> = comp.iter().copied().collect();
        let start = *inside.iter().next().unwrap();
        let mut came_from: BTreeMap<&PathBuf, &PathBuf> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut found = None;
        while let Some(v) = queue.pop_front() {
            for w in arrows[v].iter().filter(|w| inside.contains(w)) {
                if w == start {
                    found = Some(v);
                    break;
                }
                if !came_from.contains_key(w) {
                    came_from.insert(w, v);
                    queue.push_back(w);
                }
            }
            if found.is_some() {
                break;
            }
        }
        let mut path = vec![start.clone()];
        let mut v = found.expect("a component of several files has a circle");
        while v != start {
            path.push(v.clone());
            v = came_from[v];
        }
        path.push(start.clone());
        let last = path.len() - 1;
        path[1..last].reverse();
        out.push(path);
    }
    out
}

fn show(circle: &[PathBuf]) -> String {
    circle.iter().map(|p| format!("src/{}", p.display())).collect::<Vec<_>>().join(" -> ")
}

#[test]
fn no_import_circles_in_src() {
    let tree = read_tree(&src());
    assert!(tree.files.len() > 50, "the walk found the library: {} files", tree.files.len());
    assert_eq!(tree.files.len(), tree.by_module.len(), "one file per module");
    let arrows: usize = tree.arrows.values().map(BTreeSet::len).sum();
    assert!(arrows > 100, "the imports were read: {arrows} arrows");
    let found = circles(&tree.arrows);
    let text: Vec<String> = found.iter().map(|c| show(c)).collect();
    assert!(found.is_empty(), "{} import circle(s) in src/:\n  {}", found.len(), text.join("\n  "));
}

#[test]
fn no_long_files_in_src() {
    let root = src();
    let mut all = Vec::new();
    rust_files(&root, &mut all);
    let mut long = Vec::new();
    for p in &all {
        let rel = p.strip_prefix(&root).unwrap().display().to_string();
        let lines = std::fs::read_to_string(p).unwrap().lines().count();
        let allowed = LONG_FILES.iter().any(|(f, _)| *f == rel);
        if lines > MAX_LINES && !allowed {
            long.push(format!("src/{rel}: {lines} lines"));
        }
    }
    for (f, why) in LONG_FILES {
        assert!(root.join(f).exists(), "the allow-list names src/{f}, which is gone ({why})");
        assert!(!why.trim().is_empty(), "src/{f} is allowed without a reason");
    }
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines (split it, or add it to LONG_FILES with a reason):\n  {}",
        long.join("\n  ")
    );
}

/// The reader on a small tree of its own: arrows from `use` trees, inline paths, `super` in a file
/// and in an inline test module; none from comments or strings; the circle printed in order.
#[test]
fn the_reader_finds_arrows_and_circles() {
    let d = tempfile::tempdir().unwrap();
    let w = |rel: &str, text: &str| {
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n");
    w("a.rs", "use crate::{b::X, d};\n//! crate::c::nope\n");
    w("b.rs", "pub struct X;\nfn f() { let _ = \"crate::d\"; crate::c::g(); }\n");
    w("c.rs", "mod inner;\npub fn g() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n");
    w("c/inner.rs", "use super::super::a;\n");
    w("d/mod.rs", "pub mod e;\nuse self::e::Y;\n");
    w("d/e.rs", "pub struct Y;\n");
    let tree = read_tree(d.path());
    let to = |f: &str| -> Vec<String> { tree.arrows[Path::new(f)].iter().map(|p| p.display().to_string()).collect() };
    assert_eq!(to("a.rs"), ["b.rs", "d/mod.rs"]);
    assert_eq!(to("b.rs"), ["c.rs"]);
    assert_eq!(to("c.rs"), Vec::<String>::new());
    assert_eq!(to("c/inner.rs"), ["a.rs"]);
    assert_eq!(to("d/mod.rs"), ["d/e.rs"]);
    assert!(circles(&tree.arrows).is_empty());
    // c/inner.rs -> a.rs -> b.rs -> c.rs, and now c.rs -> c/inner.rs.
    w("c.rs", "mod inner;\npub fn g() { inner::h(); crate::c::inner::h() }\n");
    let tree = read_tree(d.path());
    let found: Vec<String> = circles(&tree.arrows).iter().map(|c| show(c)).collect();
    assert_eq!(found, ["src/a.rs -> src/b.rs -> src/c.rs -> src/c/inner.rs -> src/a.rs"]);
}
