//! The CLI's client configuration: `$WARDEN_CONFIG`, else
//! `$XDG_CONFIG_HOME/warden/config.toml`, else `~/.config/warden/config.toml`.
//! `warden dev` writes it (mode 0600) so later commands need no flags.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Saved connection settings.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `https://HOST:PORT`.
    pub server: Option<String>,
    /// CA certificate path.
    pub ca_cert: Option<PathBuf>,
    /// API token.
    pub token: Option<String>,
}

/// Where the client configuration lives.
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WARDEN_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("warden").join("config.toml"))
}

/// Reads the configuration, or the empty one if there is none.
pub fn load() -> anyhow::Result<ClientConfig> {
    let Some(p) = path() else {
        return Ok(ClientConfig::default());
    };
    match std::fs::read_to_string(&p) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// Writes the configuration with mode 0600.
pub fn save(config: &ClientConfig) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let p = path().context("cannot locate the client configuration: set WARDEN_CONFIG or HOME")?;
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = toml::to_string(config).context("encoding the client configuration")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&p)
        .with_context(|| format!("writing {}", p.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(p)
}

/// Reads a CA file.
pub fn read_ca(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading CA certificate {}", path.display()))
}
