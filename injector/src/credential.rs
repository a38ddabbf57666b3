//! The workload credential: where it comes from, and reading it into a
//! zeroize-on-drop buffer. It is never given to the command: the variables
//! that name or hold it are removed from the command's environment, and an
//! inherited descriptor is closed once read.

use std::io::Read;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::Error;

/// Environment variable that may hold the credential itself.
pub const CREDENTIAL_ENV: &str = "WARDEN_CREDENTIAL";
/// Environment variable that may name a file holding the credential (the
/// local runtime sets it for every pod: a tmpfs file, mode 0400).
pub const CREDENTIAL_FILE_ENV: &str = "WARDEN_CREDENTIAL_FILE";
/// Environment variable that may name a file holding the pod's projected
/// Kubernetes service-account token, to exchange for a workload token (the
/// admission webhook sets it).
pub const K8S_TOKEN_FILE_ENV: &str = "WARDEN_K8S_TOKEN_FILE";
/// Environment variable naming the Kubernetes cluster the pod runs on.
pub const CLUSTER_ENV: &str = "WARDEN_CLUSTER";
/// Longest credential accepted, in bytes (a workload JWT is well under 1 KiB;
/// the server takes service-account tokens of at most 16 KiB).
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// Where the credential comes from, in order of precedence: a flag, then
/// `$WARDEN_CREDENTIAL`, then `$WARDEN_CREDENTIAL_FILE`, then
/// `$WARDEN_K8S_TOKEN_FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--credential-file PATH`.
    File(PathBuf),
    /// `--credential-fd N`, an inherited descriptor.
    Fd(RawFd),
    /// `$WARDEN_CREDENTIAL`.
    Env,
    /// `$WARDEN_CREDENTIAL_FILE`.
    EnvFile(PathBuf),
    /// A projected Kubernetes service-account token (`--k8s-token-file` or
    /// `$WARDEN_K8S_TOKEN_FILE`), exchanged at the server for a workload
    /// token of the service as cluster `cluster`'s pod.
    Kubernetes {
        /// The token's file (the kubelet refreshes it in place).
        token_file: PathBuf,
        /// The cluster (`--cluster` or `$WARDEN_CLUSTER`).
        cluster: String,
    },
}

impl Source {
    /// The source the flags and the environment designate. `cluster` is
    /// `--cluster` (or `$WARDEN_CLUSTER`), which a service-account token
    /// needs.
    pub fn choose(
        file: Option<PathBuf>,
        fd: Option<RawFd>,
        k8s_token_file: Option<PathBuf>,
        cluster: Option<String>,
    ) -> Result<Self, Error> {
        let kubernetes = |token_file: PathBuf| -> Result<Self, Error> {
            let cluster = cluster.clone().ok_or_else(|| {
                Error::Usage(format!(
                    "a service-account token needs its cluster: pass --cluster or set {CLUSTER_ENV}"
                ))
            })?;
            if !is_cluster_name(&cluster) {
                return Err(Error::Usage(format!(
                    "--cluster {cluster:?}: cluster names are 1-63 lowercase letters, digits and \
                     inner hyphens"
                )));
            }
            Ok(Source::Kubernetes {
                token_file,
                cluster,
            })
        };
        match (file, fd, k8s_token_file) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                Err(Error::Usage(
                    "give at most one of --credential-file, --credential-fd and --k8s-token-file"
                        .into(),
                ))
            }
            (Some(p), None, None) => Ok(Source::File(p)),
            (None, Some(n), None) => Ok(Source::Fd(n)),
            (None, None, Some(p)) => kubernetes(p),
            (None, None, None) if std::env::var_os(CREDENTIAL_ENV).is_some() => Ok(Source::Env),
            (None, None, None) => match (
                std::env::var_os(CREDENTIAL_FILE_ENV),
                std::env::var_os(K8S_TOKEN_FILE_ENV),
            ) {
                (Some(p), _) if !p.is_empty() => Ok(Source::EnvFile(PathBuf::from(p))),
                (_, Some(p)) if !p.is_empty() => kubernetes(PathBuf::from(p)),
                _ => Err(Error::Config(format!(
                    "no credential: pass --credential-file, --credential-fd or \
                     --k8s-token-file, or set {CREDENTIAL_ENV}, {CREDENTIAL_FILE_ENV} or \
                     {K8S_TOKEN_FILE_ENV}"
                ))),
            },
        }
    }
}

/// Whether `s` is a cluster's name (a DNS label).
fn is_cluster_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A bearer credential (a workload JWT or an API token), wiped on drop.
pub struct Credential(Zeroizing<String>);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential([REDACTED])")
    }
}

impl Credential {
    /// Reads the credential from `source`.
    pub fn read(source: &Source) -> Result<Self, Error> {
        let raw = match source {
            Source::File(p) | Source::EnvFile(p) | Source::Kubernetes { token_file: p, .. } => {
                read_file(p)?
            }
            Source::Fd(n) => {
                let fd = crate::sys::take_inherited_fd(*n)
                    .map_err(|e| Error::Config(format!("--credential-fd {n}: {e}")))?;
                // Dropping the file closes the descriptor: the command does
                // not inherit it.
                read_limited(std::fs::File::from(fd), &format!("--credential-fd {n}"))?
            }
            Source::Env => {
                let v = std::env::var_os(CREDENTIAL_ENV).unwrap_or_default();
                Zeroizing::new(v.into_encoded_bytes())
            }
        };
        Self::parse(&raw, &describe(source))
    }

    /// Checks and copies a credential out of `raw` (surrounding whitespace,
    /// such as a file's final newline, is dropped).
    pub(crate) fn parse(raw: &[u8], origin: &str) -> Result<Self, Error> {
        let token = raw.trim_ascii();
        if token.is_empty() {
            return Err(Error::Config(format!(
                "the credential in {origin} is empty"
            )));
        }
        if token.len() > MAX_CREDENTIAL_BYTES {
            return Err(Error::Config(format!(
                "the credential in {origin} is longer than {MAX_CREDENTIAL_BYTES} bytes"
            )));
        }
        // It travels in an HTTP header: visible ASCII only.
        if !token.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(Error::Config(format!(
                "the credential in {origin} is not a token (it has spaces, control or \
                 non-ASCII characters)"
            )));
        }
        let mut s = Zeroizing::new(String::with_capacity(token.len()));
        for b in token {
            s.push(char::from(*b));
        }
        Ok(Self(s))
    }

    /// The credential, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn describe(source: &Source) -> String {
    match source {
        Source::File(p) => format!("--credential-file {}", p.display()),
        Source::Fd(n) => format!("--credential-fd {n}"),
        Source::Env => format!("${CREDENTIAL_ENV}"),
        Source::EnvFile(p) => format!("${CREDENTIAL_FILE_ENV} ({})", p.display()),
        Source::Kubernetes { token_file, .. } => {
            format!("the service-account token file {}", token_file.display())
        }
    }
}

fn read_file(p: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    let f = std::fs::File::open(p)
        .map_err(|e| Error::Config(format!("cannot read the credential {}: {e}", p.display())))?;
    read_limited(f, &p.display().to_string())
}

/// Reads at most one byte more than the limit into a buffer allocated once
/// (no reallocation leaves a copy behind in freed memory).
fn read_limited(r: impl Read, origin: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    let cap = MAX_CREDENTIAL_BYTES + 64;
    let mut buf = Zeroizing::new(Vec::with_capacity(cap + 1));
    r.take(cap as u64)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Config(format!("cannot read the credential {origin}: {e}")))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_final_newline_is_dropped_and_debug_redacts() {
        let c = Credential::parse(b"  eyJabc.def-ghi_\n", "t").unwrap();
        assert_eq!(c.expose(), "eyJabc.def-ghi_");
        assert_eq!(format!("{c:?}"), "Credential([REDACTED])");
    }

    #[test]
    fn bad_credentials_are_refused_without_echoing_them() {
        for raw in [&b""[..], b" \n", b"two words", b"caf\xc3\xa9", b"a\x01b"] {
            let err = Credential::parse(raw, "t").unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{raw:?}");
            let msg = err.to_string();
            assert!(!msg.contains("words") && !msg.contains("caf"), "{msg}");
        }
        let long = vec![b'a'; MAX_CREDENTIAL_BYTES + 1];
        assert!(Credential::parse(&long, "t").is_err());
    }
}
