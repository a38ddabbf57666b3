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

/// Writes the configuration with mode 0600 (also when the file existed with
/// looser permissions: it holds a token).
pub fn save(config: &ClientConfig) -> anyhow::Result<PathBuf> {
    let p = path().context("cannot locate the client configuration: set WARDEN_CONFIG or HOME")?;
    save_to(&p, config)?;
    Ok(p)
}

fn save_to(p: &Path, config: &ClientConfig) -> anyhow::Result<()> {
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = toml::to_string(config).context("encoding the client configuration")?;
    write_private(p, text.as_bytes())
}

/// Writes `bytes` to `p`, readable by its owner only (0600, also when the
/// file existed with a wider mode).
pub fn write_private(p: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(p)
        .with_context(|| format!("writing {}", p.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {} to mode 0600", p.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", p.display()))
}

/// Reads a CA file.
pub fn read_ca(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading CA certificate {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn saving_tightens_an_existing_file_to_0600() {
        let dir = std::env::temp_dir().join(format!("warden-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config.toml");
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = ClientConfig {
            server: Some("https://127.0.0.1:8443".into()),
            ca_cert: None,
            token: Some("session".into()),
        };
        save_to(&p, &config).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back: ClientConfig = toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(back.token.as_deref(), Some("session"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
