//! `tenantry`: the command-line interface to a Tenantry host.
//!
//! Exit codes: 0 success, 1 operational failure (a plugin or database misbehaved),
//! 2 usage error (bad flags or input).

#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
