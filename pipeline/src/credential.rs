//! What a caller presents, whatever the transport: the credential and the
//! connection facts recorded in audit entries.

use zeroize::Zeroizing;

/// Longest bearer credential accepted (a workload JWT is about 450 bytes;
/// the identity crate refuses JWTs over 8 KiB).
pub const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;

/// The entry point a request came through (recorded in audit entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The HTTPS API.
    Http,
    /// The SSH gateway.
    Ssh,
    /// A WebSocket shell.
    WebSocket,
    /// The Kubernetes API surface (`kubectl exec`).
    KubernetesExec,
    /// An agent's link.
    Agent,
}

impl Transport {
    /// The spelling in audit entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Ssh => "ssh",
            Self::WebSocket => "websocket",
            Self::KubernetesExec => "kubernetes-exec",
            Self::Agent => "agent",
        }
    }
}

/// What the caller presented.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Nothing.
    None,
    /// A bearer token: an API or session token, or a workload JWT.
    Bearer(Zeroizing<String>),
    /// An SSH public key whose possession the transport has verified (the
    /// SSH handshake checked the signature); named by its `SHA256:`
    /// fingerprint.
    SshKey {
        /// `SHA256:...` as `ssh-keygen -l` prints it.
        fingerprint: String,
        /// The connection also passed the key owner's second factor (a TOTP
        /// code, by keyboard-interactive authentication).
        mfa: bool,
    },
    /// Something that is not a credential of any accepted form (audited as
    /// a failed login like any other), and what is wrong with it.
    Malformed(&'static str),
}

impl Credential {
    /// A bearer token as sent (`Bearer TOKEN` already stripped); empty or
    /// over-long tokens are [`Credential::Malformed`].
    pub fn bearer(token: &str) -> Self {
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_CREDENTIAL_BYTES {
            Self::Malformed("malformed bearer token")
        } else {
            Self::Bearer(Zeroizing::new(token.to_owned()))
        }
    }

    /// From an HTTP `Authorization` header value (or its absence).
    pub fn from_authorization(header: Option<&str>) -> Self {
        match header {
            None => Self::None,
            Some(h) => match h.strip_prefix("Bearer ").map(Self::bearer) {
                Some(Self::Bearer(t)) => Self::Bearer(t),
                _ => Self::Malformed("malformed Authorization header"),
            },
        }
    }
}

/// Everything the pipeline needs from a request besides the operation:
/// the credential and the facts about the connection.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// What the caller presented.
    pub credential: Credential,
    /// Peer address.
    pub source_ip: Option<String>,
    /// Client software, truncated to 128 characters.
    pub user_agent: Option<String>,
    /// The entry point.
    pub transport: Transport,
}

impl RequestMeta {
    /// Metadata for a request with `credential` from `source_ip`.
    pub fn new(credential: Credential, source_ip: Option<String>, transport: Transport) -> Self {
        Self {
            credential,
            source_ip,
            user_agent: None,
            transport,
        }
    }

    /// Records the client software (truncated to 128 characters).
    pub fn with_user_agent(mut self, agent: Option<&str>) -> Self {
        self.user_agent = agent.map(|u| u.chars().take(128).collect());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_headers_are_parsed_strictly() {
        assert!(matches!(
            Credential::from_authorization(None),
            Credential::None
        ));
        assert!(matches!(
            Credential::from_authorization(Some("Bearer wdn_x")),
            Credential::Bearer(t) if t.as_str() == "wdn_x"
        ));
        for bad in ["Basic abc", "Bearer ", "bearer wdn_x", "wdn_x"] {
            assert!(
                matches!(
                    Credential::from_authorization(Some(bad)),
                    Credential::Malformed("malformed Authorization header")
                ),
                "{bad}"
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_CREDENTIAL_BYTES + 1));
        assert!(matches!(
            Credential::from_authorization(Some(&long)),
            Credential::Malformed(_)
        ));
    }
}
