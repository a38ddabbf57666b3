//! Actions (the `resource.verb` permissions) and the permission patterns
//! role files use to name them.

use std::fmt;
use std::str::FromStr;

/// A permission: `resource.verb`, as written in role files.
///
/// The discriminants are the positions in [`Action::ALL`]; each action is one
/// bit of a `u32` mask in compiled roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// `secret.read`: read a secret value.
    SecretRead = 0,
    /// `secret.list`: list secret names and metadata (never values).
    SecretList = 1,
    /// `secret.write`: create a new secret version.
    SecretWrite = 2,
    /// `secret.delete`: soft-delete or undelete versions.
    SecretDelete = 3,
    /// `secret.destroy`: erase the ciphertext of versions for good.
    SecretDestroy = 4,
    /// `shell.exec`: open a shell in a running service.
    ShellExec = 5,
    /// `deploy.run`: deploy a service.
    DeployRun = 6,
    /// `deploy.rollback`: roll a service back to an earlier deployment.
    DeployRollback = 7,
    /// `audit.read`: read audit log entries.
    AuditRead = 8,
    /// `audit.export`: export a verifiable audit bundle.
    AuditExport = 9,
    /// `env.read`: see organizations, projects, environments and services.
    EnvRead = 10,
    /// `env.manage`: create, change or remove organizations, projects,
    /// environments and services.
    EnvManage = 11,
    /// `member.manage`: add and remove members and their role bindings.
    MemberManage = 12,
    /// `role.manage`: create, change and remove custom roles.
    RoleManage = 13,
    /// `key.rotate`: rotate and rewrap an organization's keys, read key status.
    KeyRotate = 14,
    /// `workload.issue`: issue workload tokens for services.
    WorkloadIssue = 15,
    /// `ownership.transfer`: hand ownership of a scope to another member.
    OwnershipTransfer = 16,
    /// `sys.seal`: seal the vault. Acts only at the root scope.
    SysSeal = 17,
    /// `pod.logs`: read a service's pod logs (which can hold whatever the
    /// workload prints, secret values included).
    PodLogs = 18,
    /// `cluster.manage`: create join tokens for clusters, list and remove
    /// clusters (whose agents run every organization's pods). Acts only at
    /// the root scope.
    ClusterManage = 19,
    /// `session.manage`: end other people's shell sessions in a service
    /// (`warden session kill`).
    SessionManage = 20,
    /// `session.watch`: replay the recordings of a service's shell
    /// sessions (`warden session play|export`), which show whatever the
    /// session's user saw.
    SessionWatch = 21,
}

impl Action {
    /// Every action, in the order of documentation tables.
    pub const ALL: [Action; 22] = [
        Self::SecretRead,
        Self::SecretList,
        Self::SecretWrite,
        Self::SecretDelete,
        Self::SecretDestroy,
        Self::ShellExec,
        Self::DeployRun,
        Self::DeployRollback,
        Self::AuditRead,
        Self::AuditExport,
        Self::EnvRead,
        Self::EnvManage,
        Self::MemberManage,
        Self::RoleManage,
        Self::KeyRotate,
        Self::WorkloadIssue,
        Self::OwnershipTransfer,
        Self::SysSeal,
        Self::PodLogs,
        Self::ClusterManage,
        Self::SessionManage,
        Self::SessionWatch,
    ];

    /// The `resource.verb` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretRead => "secret.read",
            Self::SecretList => "secret.list",
            Self::SecretWrite => "secret.write",
            Self::SecretDelete => "secret.delete",
            Self::SecretDestroy => "secret.destroy",
            Self::ShellExec => "shell.exec",
            Self::DeployRun => "deploy.run",
            Self::DeployRollback => "deploy.rollback",
            Self::AuditRead => "audit.read",
            Self::AuditExport => "audit.export",
            Self::EnvRead => "env.read",
            Self::EnvManage => "env.manage",
            Self::MemberManage => "member.manage",
            Self::RoleManage => "role.manage",
            Self::KeyRotate => "key.rotate",
            Self::WorkloadIssue => "workload.issue",
            Self::OwnershipTransfer => "ownership.transfer",
            Self::SysSeal => "sys.seal",
            Self::PodLogs => "pod.logs",
            Self::ClusterManage => "cluster.manage",
            Self::SessionManage => "session.manage",
            Self::SessionWatch => "session.watch",
        }
    }

    /// The resource part (`secret` for `secret.read`).
    pub fn resource(self) -> &'static str {
        let s = self.as_str();
        s.split_once('.').map_or(s, |(r, _)| r)
    }

    /// Whether the action only acts on the root scope (`/`): it is denied on
    /// any other resource whatever the bindings say: `sys.seal` and
    /// `cluster.manage`.
    pub fn root_only(self) -> bool {
        matches!(self, Self::SysSeal | Self::ClusterManage)
    }

    /// This action's bit in a compiled permission mask.
    pub(crate) const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown permission name. The message names it (at most its first 64
/// characters) and lists the known ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseActionError {
    /// The rejected text, truncated to 64 characters.
    pub input: String,
    /// Whether wildcard patterns were acceptable where it was found (role
    /// files), which changes the hint.
    wildcards: bool,
}

impl ParseActionError {
    pub(crate) fn new(input: &str, wildcards: bool) -> Self {
        Self {
            input: input.chars().take(64).collect(),
            wildcards,
        }
    }
}

impl fmt::Display for ParseActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown permission `{}` (known: ", self.input)?;
        for (i, a) in Action::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(a.as_str())?;
        }
        if self.wildcards {
            f.write_str("; or `RESOURCE.*` such as `secret.*`, or `*`")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for ParseActionError {}

impl FromStr for Action {
    type Err = ParseActionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| ParseActionError::new(s, false))
    }
}

/// The mask with every action's bit set.
pub(crate) const ALL_MASK: u32 = (1 << Action::ALL.len()) - 1;

/// A permission pattern from a role file: an exact name (`secret.read`), a
/// resource wildcard (`secret.*`) or `*`, compiled to the mask of the actions
/// it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    pub(crate) text: String,
    pub(crate) mask: u32,
}

impl Pattern {
    pub(crate) fn parse(s: &str) -> Result<Self, ParseActionError> {
        let mask = if s == "*" {
            ALL_MASK
        } else if let Some(resource) = s.strip_suffix(".*") {
            Action::ALL
                .iter()
                .filter(|a| a.resource() == resource)
                .fold(0, |m, a| m | a.bit())
        } else {
            Action::from_str(s).map_or(0, Action::bit)
        };
        if mask == 0 {
            return Err(ParseActionError::new(s, true));
        }
        Ok(Self {
            text: s.to_owned(),
            mask,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_bits_are_distinct() {
        let mut seen = 0u32;
        for (i, a) in Action::ALL.into_iter().enumerate() {
            assert_eq!(a as usize, i);
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
            assert_eq!(a.to_string(), a.as_str());
            assert_eq!(seen & a.bit(), 0);
            seen |= a.bit();
        }
        assert_eq!(seen, ALL_MASK);
    }

    #[test]
    fn unknown_permissions_are_named() {
        let err = "secret.reed".parse::<Action>().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("unknown permission `secret.reed` (known: secret.read, "),
            "{msg}"
        );
        assert!(msg.contains("sys.seal"), "{msg}");
        let long = "x".repeat(500);
        assert_eq!(long.parse::<Action>().unwrap_err().input.len(), 64);
    }

    #[test]
    fn patterns_compile_to_masks() {
        assert_eq!(Pattern::parse("*").unwrap().mask, ALL_MASK);
        let secret = Pattern::parse("secret.*").unwrap().mask;
        assert_eq!(secret.count_ones(), 5);
        assert_ne!(secret & Action::SecretDestroy.bit(), 0);
        assert_eq!(secret & Action::ShellExec.bit(), 0);
        assert_eq!(
            Pattern::parse("sys.seal").unwrap().mask,
            Action::SysSeal.bit()
        );
        for bad in [
            "",
            ".*",
            "secrets.*",
            "secret.",
            "secret.**",
            "Secret.read",
            "**",
            "*.read",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
