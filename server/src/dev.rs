//! `warden dev`: one command from nothing to a working, unsealed server on
//! embedded defaults.
//!
//! The data directory (0700) gets a SQLite database, a private CA and server
//! certificate, the unseal key in `dev-unseal.key` and the bootstrap token
//! in `dev-token`, every file 0600. A data directory other users can reach
//! is refused. Keeping the unseal key next to the data
//! defeats the purpose of sealing: this mode is for laptops only, and says so
//! loudly. A second start on the same directory reuses everything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::tls::{DevPki, TlsError, ensure_dev_pki, server_config, write_private};
use warden_pipeline::{Credential, RequestMeta, Transport};

use crate::{ApiError, Running, ServerOptions, StartError, start};

/// Why `warden dev` could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// Creating or reading the data directory failed.
    #[error("{path}: {reason}")]
    Io {
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Certificates.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Starting the server.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Initializing or unsealing.
    #[error("{0:?}")]
    Vault(ApiError),
}

/// A running dev server and how to reach it.
pub struct Dev {
    /// The server.
    pub running: Running,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Generated certificates.
    pub pki: DevPki,
    /// The bootstrap owner token.
    pub token: Zeroizing<String>,
    /// Whether this start created the data directory's vault.
    pub created: bool,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DevError + '_ {
    move |e| DevError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Creates `dir` 0700, or refuses one other users can reach (the message
/// says which `chmod` fixes it).
fn create_private_dir(dir: &Path) -> Result<(), DevError> {
    warden_store::files::ensure_private_dir(dir).map_err(|e| DevError::Start(e.into()))
}

/// Starts (and on first use creates) a dev server in `data_dir`.
/// With `ssh_listen`, the shell gateway serves SSH there too.
pub async fn start_dev(
    data_dir: &Path,
    listen: SocketAddr,
    ssh_listen: Option<SocketAddr>,
) -> Result<Dev, DevError> {
    create_private_dir(data_dir)?;
    let tls_dir = data_dir.join("tls");
    create_private_dir(&tls_dir)?;
    let key_file: PathBuf = data_dir.join("dev-unseal.key");
    let token_file: PathBuf = data_dir.join("dev-token");
    warden_store::files::refuse_shared_files(&[
        key_file.clone(),
        token_file.clone(),
        tls_dir.join("server-key.pem"),
        tls_dir.join("server.pem"),
        tls_dir.join("ca.pem"),
    ])
    .map_err(|e| DevError::Start(e.into()))?;
    let pki = ensure_dev_pki(&tls_dir)?;
    // Agents keep the link address they enrolled with: the first start
    // picks a free port and records it, later starts listen there again.
    let port_file = data_dir.join("agent-port");
    let agent_port = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or(0);
    let running = start(ServerOptions {
        listen,
        database_url: format!("sqlite://{}", data_dir.join("warden.db").display()),
        tls: server_config(&pki.cert, &pki.key)?,
        node_id: "dev".to_owned(),
        request_timeout: Duration::from_secs(30),
        max_token_ttl: crate::DEFAULT_MAX_TOKEN_TTL,
        // The unseal key sits next to the database: whoever can write the
        // one can read the other, so a dev directory from an older version
        // is simply adopted.
        adopt_unprotected_rows: true,
        // Agents on this machine may enroll (`warden cluster join-token`).
        agent_listen: Some(SocketAddr::new(listen.ip(), agent_port)),
        agent_advertise: None,
        ssh_listen,
    })
    .await?;
    if let Some(addr) = running.agent_addr
        && agent_port == 0
    {
        write_private(&port_file, addr.port().to_string().as_bytes())?;
    }
    let app = running.app.clone();
    let meta = RequestMeta::new(Credential::None, Some("local".to_owned()), Transport::Http);
    let status = app
        .vault
        .status()
        .await
        .map_err(|e| DevError::Vault(e.into()))?;
    let created = !status.initialized;
    let token = if created {
        let token = app
            .pipeline
            .run_public(&meta, "sys.init", None, async {
                let out = app
                    .vault
                    .init(warden_vault::unseal::InitMethod::DevKeyFile)
                    .await?;
                let key = out.dev_key.ok_or_else(ApiError::internal)?;
                write_private(&key_file, key.as_bytes()).map_err(|_| ApiError::internal())?;
                app.create_owner(crate::FIRST_OWNER).await
            })
            .await
            .map_err(DevError::Vault)?;
        write_private(&token_file, token.as_bytes())?;
        token
    } else {
        let key = Zeroizing::new(std::fs::read_to_string(&key_file).map_err(io(&key_file))?);
        app.pipeline
            .run_public(&meta, "sys.unseal", None, async {
                let key = warden_vault::unseal::decode_key(&key)?;
                Ok(app.vault.unseal_with_key(&key).await?)
            })
            .await
            .map_err(DevError::Vault)?;
        Zeroizing::new(
            std::fs::read_to_string(&token_file)
                .map_err(io(&token_file))?
                .trim()
                .to_owned(),
        )
    };
    let url = format!("https://{}", running.addr);
    Ok(Dev {
        running,
        url,
        pki,
        token,
        created,
    })
}
