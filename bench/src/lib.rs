//! What the harnesses in `bench/src/bin/` share: running helper commands
//! and holding the processes they start.

use std::process::{Child, Command};

use anyhow::{Context, Result, ensure};

/// Runs `cmd` to its end; its standard output, or an error with its
/// standard error if it failed.
pub fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Kills a child process when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (at most 60 s) until `warden whoami` answers from the `warden dev`
/// just started, then creates `acme/shop/dev` (development) and `service`
/// in it. `warden` makes a `warden` command with the dev server's client
/// configuration.
pub fn dev_with_service(warden: impl Fn() -> Command, service: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while warden()
        .arg("whoami")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        ensure!(
            std::time::Instant::now() < deadline,
            "warden dev did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for args in [
        &["org", "create", "acme"][..],
        &["project", "create", "acme/shop"],
        &["env", "create", "acme/shop/dev", "--mode", "development"],
        &["service", "create", service],
    ] {
        run_ok(warden().args(args))?;
    }
    Ok(())
}
