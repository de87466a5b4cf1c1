//! `oneup-bulk`: parse the command line, set up logging, run the command, exit with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match oneup_bulk::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() && json_requested() => {
            // `--log-format json` promises JSON on stderr, usage errors included.
            eprintln!("{}", oneup_bulk::commands::json_error_line(&e.render().to_string(), 2));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    oneup_bulk::commands::init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            let e = oneup_bulk::Error::Failed(format!("cannot start the async runtime: {e}"));
            return ExitCode::from(oneup_bulk::commands::report_error(&e));
        }
    };
    ExitCode::from(runtime.block_on(oneup_bulk::commands::main(cli)))
}

/// `--log-format json` or `--log-format=json` among arguments that did not parse.
fn json_requested() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--log-format=json") || args.windows(2).any(|w| w[0] == "--log-format" && w[1] == "json")
}
