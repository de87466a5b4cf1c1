//! The `inspect` subcommand: its arguments as options, the report (or `--head`'s resources) on stdout,
//! the exit code. A stdout closed early (`oneup-bulk inspect … | head -1`) ends the output quietly:
//! nothing on stderr, and the exit code is still the verdict (the report is made before it is printed).

use std::io::{self, Write};

use super::{InspectOptions, inspect, print_head, render_json, render_problems, render_text};
use crate::error::{Error, Result, exit};

/// Exit 0 whole and valid, 1 not, 2 usage (or job folders only: their runs are listed).
pub fn run_command(a: crate::cli::InspectArgs) -> Result<u8> {
    let opts = InspectOptions {
        paths: a.paths,
        check_references: a.check_references,
        type_filter: a.resource_type,
        head: a.head,
        pretty: a.pretty,
        invalid: a.invalid,
        threads: a.threads,
        ..Default::default()
    };
    let mut out = Closable { inner: io::stdout().lock(), closed: false };
    if opts.head.is_some() || opts.type_filter.is_some() {
        let printed = print_head(&opts, &mut out).and_then(|()| out.flush().map_err(|e| Error::io("stdout", e)));
        return match printed {
            Err(_) if out.closed => Ok(exit::OK),
            r => r.map(|()| exit::OK),
        };
    }
    let report = inspect(&opts)?;
    let written = if a.json {
        render_json(&report, &mut out)
    } else if let Some(n) = opts.invalid {
        render_problems(&report, n, &mut out)
    } else {
        render_text(&report, &mut out)
    };
    match written.and_then(|()| out.flush()) {
        Err(e) if !out.closed => Err(Error::io("stdout", e)),
        _ => Ok(report.exit_code()),
    }
}

/// A writer that notes when the reader went away, so that is not reported as an error.
struct Closable<W> {
    inner: W,
    closed: bool,
}

impl<W: Write> Closable<W> {
    fn seen<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if r.as_ref().is_err_and(|e| e.kind() == io::ErrorKind::BrokenPipe) {
            self.closed = true;
        }
        r
    }
}

impl<W: Write> Write for Closable<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.seen(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.seen(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Gone;

    impl Write for Gone {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_reader_is_noted_and_other_errors_are_not() {
        let mut w = Closable { inner: Gone, closed: false };
        assert!(w.write_all(b"x").is_err());
        assert!(w.closed);
        let mut w = Closable { inner: io::Cursor::new([0u8; 1]), closed: false };
        assert!(w.write_all(b"xy").is_err(), "a full buffer fails");
        assert!(!w.closed);
    }
}
