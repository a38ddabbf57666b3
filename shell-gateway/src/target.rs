//! What a user asks to shell into, parsed at the edge: `ORG/PROJECT/ENV/SERVICE`
//! (the service's first ready pod) or `ORG/PROJECT/ENV/SERVICE/POD`, and for
//! SSH, where the target and the command share one string, the split
//! between them.

use std::fmt;

use warden_pipeline::Error;
use warden_runtime::{PodName, ServiceRef};
use warden_types::{ScopeKind, ScopePath};

/// Longest target accepted (four scope segments and a pod name).
pub const MAX_TARGET_BYTES: usize = 512;

/// A service, and optionally one of its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellTarget {
    /// The service (authorization is decided on it).
    pub service: ServiceRef,
    /// The pod the user named, if any.
    pub pod: Option<PodName>,
}

impl ShellTarget {
    /// Parses `ORG/PROJECT/ENV/SERVICE[/POD]`. Every segment is checked by
    /// the scope and pod name rules, so `..`, empty segments, uppercase,
    /// percent-encoding and control bytes are refused.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::invalid(
                "a shell target is ORG/PROJECT/ENV/SERVICE or ORG/PROJECT/ENV/SERVICE/POD \
                 (lowercase letters, digits and '-')",
            )
            .field("target")
        };
        if s.len() > MAX_TARGET_BYTES {
            return Err(bad());
        }
        let (service, pod) = match s.split('/').count() {
            4 => (s, None),
            5 => s
                .rsplit_once('/')
                .map(|(svc, pod)| (svc, Some(pod)))
                .ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        let path = ScopePath::parse_kind(service, ScopeKind::Service).map_err(|_| bad())?;
        let service = ServiceRef::from_path(path).map_err(|_| bad())?;
        let pod = pod.map(PodName::parse).transpose().map_err(|_| bad())?;
        Ok(Self { service, pod })
    }
}

impl fmt::Display for ShellTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pod {
            Some(pod) => write!(f, "{}/{}", self.service.as_str(), pod.as_str()),
            None => f.write_str(self.service.as_str()),
        }
    }
}

/// Splits an SSH exec request's command (`TARGET`, `TARGET CMD...` or
/// `TARGET -- CMD...`, as `ssh host TARGET -- cmd` sends it) into the
/// target and the command line, which runs under `sh -c` as OpenSSH runs
/// it under the user's shell. An empty command means an interactive shell.
pub fn split_command(command: &str) -> (&str, Option<&str>) {
    let command = command.trim_start();
    let (target, rest) = match command.split_once(char::is_whitespace) {
        Some((t, rest)) => (t, rest.trim_start()),
        None => (command, ""),
    };
    let rest = match rest.strip_prefix("--") {
        Some(after) if after.is_empty() || after.starts_with(char::is_whitespace) => {
            after.trim_start()
        }
        _ => rest,
    };
    (target, (!rest.trim().is_empty()).then_some(rest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn targets_parse_and_refuse_bad_paths() {
        let t = ShellTarget::parse("acme/shop/staging/api").unwrap();
        assert_eq!(t.service.as_str(), "acme/shop/staging/api");
        assert!(t.pod.is_none());
        let t = ShellTarget::parse("acme/shop/staging/api/api-7f3k2").unwrap();
        assert_eq!(t.pod.unwrap().as_str(), "api-7f3k2");
        for bad in [
            "",
            "acme/shop/staging",
            "acme/shop/../api",
            "acme/shop/staging/..",
            "acme/shop/staging/api/..",
            "acme//staging/api",
            "ACME/shop/staging/api",
            "acme/shop/staging/api/pod/x",
            "acme/shop/staging/api%2f",
            "acme/shop/staging/a\u{0}pi",
            "acme/shop/staging/api/",
            &"a".repeat(600),
        ] {
            let e = ShellTarget::parse(bad).unwrap_err();
            assert_eq!(e.field_name(), Some("target"), "{bad:?}");
        }
    }

    #[test]
    fn ssh_commands_split_into_target_and_command() {
        assert_eq!(split_command("acme/s/e/api"), ("acme/s/e/api", None));
        assert_eq!(split_command("acme/s/e/api  "), ("acme/s/e/api", None));
        assert_eq!(
            split_command("acme/s/e/api -- ls -la /"),
            ("acme/s/e/api", Some("ls -la /"))
        );
        assert_eq!(
            split_command("acme/s/e/api echo 'a  b'"),
            ("acme/s/e/api", Some("echo 'a  b'"))
        );
        assert_eq!(split_command("acme/s/e/api --"), ("acme/s/e/api", None));
        assert_eq!(
            split_command("acme/s/e/api --version"),
            ("acme/s/e/api", Some("--version"))
        );
        assert_eq!(split_command(""), ("", None));
    }
}
