//! `warden server` configuration: a TOML file, each key overridable by a
//! `WARDEN_<KEY>` environment variable (e.g. `WARDEN_DATABASE_URL`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("{path}: {reason}")]
    Parse {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// A key is missing or invalid.
    #[error("configuration key `{key}`: {reason}")]
    Key {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    agent_listen: Option<String>,
    agent_advertise: Option<String>,
    ssh_listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    node_id: Option<String>,
    log_format: Option<String>,
    request_timeout_secs: Option<u64>,
    max_token_ttl_secs: Option<u64>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address (default `127.0.0.1:8443`).
    pub listen: SocketAddr,
    /// Where agents dial in (mutual TLS); default: not listening.
    pub agent_listen: Option<SocketAddr>,
    /// The `host:port` agents reach it at (default: `agent_listen` unless
    /// it is `0.0.0.0`).
    pub agent_advertise: Option<String>,
    /// Where the SSH gateway listens; default: not listening.
    pub ssh_listen: Option<SocketAddr>,
    /// Data directory (default `/var/lib/warden`).
    pub data_dir: PathBuf,
    /// Database URL (default `sqlite://DATA_DIR/warden.db`).
    pub database_url: String,
    /// Server certificate chain (PEM). Required.
    pub tls_cert: PathBuf,
    /// Server private key (PEM). Required.
    pub tls_key: PathBuf,
    /// Node name in audit entries (default: `warden`).
    pub node_id: String,
    /// JSON logs.
    pub log_json: bool,
    /// Per-request time limit (default 30 s).
    pub request_timeout: Duration,
    /// Longest API token lifetime (default 90 days, at most 366).
    pub max_token_ttl: Duration,
}

/// A number of seconds from `WARDEN_<KEY>` or the file, `default` when
/// neither gives one, within `range`.
fn seconds(
    env: &impl Fn(&str) -> Option<String>,
    key: &'static str,
    from_file: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let value = match env(&format!("WARDEN_{}", key.to_uppercase())) {
        Some(s) => s.parse().map_err(|_| ConfigError::Key {
            key,
            reason: format!("{s:?} is not a number of seconds"),
        })?,
        None => from_file.unwrap_or(default),
    };
    if !range.contains(&value) {
        return Err(ConfigError::Key {
            key,
            reason: format!("between {} and {}", range.start(), range.end()),
        });
    }
    Ok(value)
}

impl Config {
    /// Reads `path` (if any) and applies environment overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        let pick = |key: &str, from_file: Option<String>| env(key).or(from_file);
        let listen =
            pick("WARDEN_LISTEN", file.listen).unwrap_or_else(|| "127.0.0.1:8443".to_owned());
        let listen = listen.parse().map_err(|_| ConfigError::Key {
            key: "listen",
            reason: format!("{listen:?} is not an IP:PORT address"),
        })?;
        let address = |key: &'static str, value: Option<String>| {
            value
                .map(|a| {
                    a.parse().map_err(|_| ConfigError::Key {
                        key,
                        reason: format!("{a:?} is not an IP:PORT address"),
                    })
                })
                .transpose()
        };
        let agent_listen = address(
            "agent_listen",
            pick("WARDEN_AGENT_LISTEN", file.agent_listen),
        )?;
        let ssh_listen = address("ssh_listen", pick("WARDEN_SSH_LISTEN", file.ssh_listen))?;
        let data_dir = pick(
            "WARDEN_DATA_DIR",
            file.data_dir.map(|p| p.display().to_string()),
        )
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/warden"));
        let database_url = pick("WARDEN_DATABASE_URL", file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("warden.db").display()));
        let required = |key: &'static str, env_key: &str, v: Option<PathBuf>| {
            pick(env_key, v.map(|p| p.display().to_string()))
                .map(PathBuf::from)
                .ok_or(ConfigError::Key {
                    key,
                    reason: "required: production serves only the certificate you give it".into(),
                })
        };
        let tls_cert = required("tls_cert", "WARDEN_TLS_CERT", file.tls_cert)?;
        let tls_key = required("tls_key", "WARDEN_TLS_KEY", file.tls_key)?;
        let log_json = match pick("WARDEN_LOG_FORMAT", file.log_format).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError::Key {
                    key: "log_format",
                    reason: format!("{other:?}: expected text or json"),
                });
            }
        };
        let timeout = seconds(
            &env,
            "request_timeout_secs",
            file.request_timeout_secs,
            30,
            1..=3600,
        )?;
        let max_token_ttl = seconds(
            &env,
            "max_token_ttl_secs",
            file.max_token_ttl_secs,
            crate::DEFAULT_MAX_TOKEN_TTL.as_secs(),
            60..=366 * 24 * 3600,
        )?;
        Ok(Self {
            listen,
            agent_listen,
            agent_advertise: pick("WARDEN_AGENT_ADVERTISE", file.agent_advertise),
            ssh_listen,
            data_dir,
            database_url,
            tls_cert,
            tls_key,
            node_id: pick("WARDEN_NODE_ID", file.node_id).unwrap_or_else(|| "warden".to_owned()),
            log_json,
            request_timeout: Duration::from_secs(timeout),
            max_token_ttl: Duration::from_secs(max_token_ttl),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file_and_errors_name_the_key() {
        let dir = std::env::temp_dir().join(format!("warden-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("warden.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), |k| {
            (k == "WARDEN_LISTEN").then(|| "127.0.0.1:7000".to_owned())
        })
        .unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.database_url, "sqlite:///var/lib/warden/warden.db");

        std::fs::write(
            &path,
            "listen = \"nope\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\n",
        )
        .unwrap();
        let e = Config::load(Some(&path), |_| None).unwrap_err().to_string();
        assert!(e.contains("`listen`"), "{e}");
        std::fs::write(&path, "bogus = 1\n").unwrap();
        let e = Config::load(Some(&path), |_| None).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = Config::load(None, |_| None).unwrap_err().to_string();
        assert!(e.contains("tls_cert"), "{e}");
    }

    #[test]
    fn the_token_lifetime_limit_has_a_default_and_bounds() {
        let env = |ttl: Option<&'static str>| {
            move |k: &str| match k {
                "WARDEN_TLS_CERT" | "WARDEN_TLS_KEY" => Some("/x.pem".to_owned()),
                "WARDEN_MAX_TOKEN_TTL_SECS" => ttl.map(str::to_owned),
                _ => None,
            }
        };
        let c = Config::load(None, env(None)).unwrap();
        assert_eq!(c.max_token_ttl, crate::DEFAULT_MAX_TOKEN_TTL);
        let c = Config::load(None, env(Some("3600"))).unwrap();
        assert_eq!(c.max_token_ttl.as_secs(), 3600);
        for bad in ["0", "40000000", "soon"] {
            let e = Config::load(None, env(Some(bad))).unwrap_err().to_string();
            assert!(e.contains("max_token_ttl_secs"), "{e}");
        }
    }
}
