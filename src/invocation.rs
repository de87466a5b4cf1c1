//! How a person runs this program again from where they are, so every "what to type next" line (the
//! error hints, the Ctrl-C hint, the demo's `next:` lines) starts with the same words.
//!
//! The binary finds out once, at start ([`detect`]): `oneup-bulk` when that is on `PATH`, the `cargo
//! run` form under `cargo run`, else the binary's path relative to the working folder. The library used
//! on its own (tests, other programs) says `oneup-bulk`. [`program_text`] is the pure decision; it
//! imports nothing from the rest of the crate, so any module may use it.

use std::path::Path;
use std::sync::OnceLock;

/// What [`program`] says when the binary did not [`detect`] itself.
pub const DEFAULT: &str = "oneup-bulk";

static PROGRAM: OnceLock<String> = OnceLock::new();

/// The program text for the hints: what [`detect`] found, else [`DEFAULT`].
pub fn program() -> &'static str {
    PROGRAM.get().map(String::as_str).unwrap_or(DEFAULT)
}

/// Looks at this process (its binary, `PATH`, `CARGO`, the working folder) once, so that [`program`]
/// says how it was started. Called by the binary before it runs a command.
pub fn detect() {
    PROGRAM.get_or_init(|| {
        let Ok(exe) = std::env::current_exe() else { return DEFAULT.into() };
        let exe = exe.canonicalize().unwrap_or(exe);
        let on_path = std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|d| d.join(DEFAULT).canonicalize().is_ok_and(|p| p == exe))
        });
        let cwd = std::env::current_dir().ok().and_then(|d| d.canonicalize().ok());
        program_text(&exe, on_path, std::env::var_os("CARGO").is_some(), cwd.as_deref())
    });
}

/// How to run the binary at `exe` (canonical): `oneup-bulk` when `on_path`; `cargo run --locked
/// [--release] --` when `under_cargo` (cargo sets `CARGO` for what it runs) and the binary sits in
/// `target/debug` or `target/release`; else its path, relative (`./…`) when it is under `cwd`.
pub fn program_text(exe: &Path, on_path: bool, under_cargo: bool, cwd: Option<&Path>) -> String {
    if on_path {
        return DEFAULT.into();
    }
    let profile = exe.parent().and_then(|d| d.file_name()).and_then(|n| n.to_str()).unwrap_or("");
    let in_target = exe.parent().and_then(Path::parent).and_then(|d| d.file_name()).is_some_and(|n| n == "target");
    if under_cargo && in_target {
        match profile {
            "release" => return "cargo run --locked --release --".into(),
            "debug" => return "cargo run --locked --".into(),
            _ => {}
        }
    }
    match cwd.and_then(|d| exe.strip_prefix(d).ok()) {
        Some(rel) => format!("./{}", rel.display()),
        None => exe.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_path_under_cargo_or_by_path() {
        let exe = Path::new("/src/proj/target/release/oneup-bulk");
        let cwd = Some(Path::new("/src/proj"));
        assert_eq!(program_text(exe, true, true, cwd), "oneup-bulk");
        assert_eq!(program_text(exe, false, true, cwd), "cargo run --locked --release --");
        let debug = Path::new("/src/proj/target/debug/oneup-bulk");
        assert_eq!(program_text(debug, false, true, cwd), "cargo run --locked --");
        // Not under cargo: the path as typed from here.
        assert_eq!(program_text(exe, false, false, cwd), "./target/release/oneup-bulk");
        assert_eq!(program_text(exe, false, false, Some(Path::new("/elsewhere"))), exe.display().to_string());
        assert_eq!(program_text(Path::new("/opt/bin/oneup-bulk"), false, true, None), "/opt/bin/oneup-bulk");
    }
}
