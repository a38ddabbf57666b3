//! The `warden-injector` binary; everything is in the library.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(warden_injector::main(std::env::args_os()))
}
