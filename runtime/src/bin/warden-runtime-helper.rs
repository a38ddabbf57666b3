//! The local runtime's helper processes for this crate's own tests and
//! benchmark. The `warden` binary dispatches the same roles itself (before
//! starting tokio); see `warden_runtime::helper_main`.

fn main() {
    warden_runtime::helper_main(std::env::args_os().skip(1).collect())
}
