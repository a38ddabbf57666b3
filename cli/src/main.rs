//! `warden`: the one binary. Runs the server (`dev`, `server`) and is the
//! client for everything else; client commands talk only to the HTTPS API.
//!
//! Exit codes: 0 ok, 1 error, 2 usage (including invalid names), 3 not found, 4 unauthenticated or
//! denied (including a `policy check` that answers deny), 5 sealed or unavailable, 6 conflict
//! (exists already, check-and-set mismatch). `warden audit verify` and `warden audit proof` exit 1
//! when what they check does not verify.
//!
//! Layout: `cli` holds the top-level grammar and dispatch; `serve` starts
//! servers and is the only module that uses the server crate; every other
//! command lives in the module of its resource (`operator`, `scopes`,
//! `secrets`, `keys`, `auth`, `users`, `tokens`, `ssh_keys`, `roles`,
//! `bindings`, `audit`). Command modules depend only on `ctx` (the API
//! client and output mode), `input` (argument parsers, prompts), `error`
//! (the one mapping to exit codes) and `output` (text rendering), never on
//! each other or on `cli`.

mod agent;
mod audit;
mod auth;
mod bindings;
mod cli;
mod client_config;
mod clusters;
mod ctx;
mod error;
mod gateway;
mod input;
mod keys;
mod operator;
mod output;
mod recording;
mod roles;
mod scopes;
mod secrets;
mod serve;
mod shell;
mod ssh_keys;
mod tokens;
mod users;
mod workload_identity;
mod workloads;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    // The local runtime re-executes this binary for its pod helpers
    // (`warden __runtime ROLE`): dispatched before any thread starts.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == serve::RUNTIME_HELPER_ARG) {
        serve::runtime_helper(args.collect());
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(cli::run(cli));
    // Nothing is left to finish but reads of stdin (`warden shell`), which
    // would hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A remote command's exit code is passed on, not reported.
            if e.downcast_ref::<error::RemoteExit>().is_none() {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(error::exit_code(&e))
        }
    }
}
