//! Authorization: who may do what, where.
//!
//! [`authorize`] is a pure function over data: it takes a [`Principal`] (with
//! the role bindings the caller resolved for it), an [`Action`] and a
//! [`Resource`], and returns a [`Decision`]. An allow carries a [`Permit`],
//! the proof value that vault and key operations require as an argument, so an
//! unauthorized call does not type-check. A `Permit` can only be built here.
//!
//! Architecture invariant: no I/O, no async, no clock. Decisions are made per
//! request from the data passed in; nothing is cached across calls.
//!
//! Today the engine knows one built-in role, `owner`, which the bootstrap
//! principal holds at the root scope; the identity issue adds the other
//! built-in roles, custom roles and bindings loaded from `policies/*.yaml`
//! through this same function.

use std::fmt;
use warden_types::ScopePath;

/// A permission: `resource.verb`, as written in role files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read a secret value.
    SecretRead,
    /// List secret names and metadata (never values).
    SecretList,
    /// Create a new secret version.
    SecretWrite,
    /// Soft-delete or undelete versions.
    SecretDelete,
    /// Erase the ciphertext of versions for good.
    SecretDestroy,
    /// Create or list organizations, projects, environments and services.
    EnvManage,
    /// Rotate and rewrap an organization's keys, read key status.
    KeyRotate,
    /// Seal the vault.
    SysSeal,
}

impl Action {
    /// Every action, for tables and tests.
    pub const ALL: [Action; 8] = [
        Self::SecretRead,
        Self::SecretList,
        Self::SecretWrite,
        Self::SecretDelete,
        Self::SecretDestroy,
        Self::EnvManage,
        Self::KeyRotate,
        Self::SysSeal,
    ];

    /// The `resource.verb` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretRead => "secret.read",
            Self::SecretList => "secret.list",
            Self::SecretWrite => "secret.write",
            Self::SecretDelete => "secret.delete",
            Self::SecretDestroy => "secret.destroy",
            Self::EnvManage => "env.manage",
            Self::KeyRotate => "key.rotate",
            Self::SysSeal => "sys.seal",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an action is applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// The whole installation (creating organizations, sealing).
    Root,
    /// An organization, project, environment or service and what it holds.
    Scope(ScopePath),
}

impl Resource {
    fn within(&self, binding: &Resource) -> bool {
        match (binding, self) {
            (Resource::Root, _) => true,
            (Resource::Scope(b), Resource::Scope(r)) => b.contains(r),
            (Resource::Scope(_), Resource::Root) => false,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root => f.write_str("/"),
            Self::Scope(p) => f.write_str(p.as_str()),
        }
    }
}

/// A built-in role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything, everywhere below the binding.
    Owner,
}

impl Role {
    fn grants(self, _action: Action) -> bool {
        match self {
            Self::Owner => true,
        }
    }

    /// The role's name in role files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
        }
    }
}

/// A role bound to a principal at a scope (and everything below it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The role granted.
    pub role: Role,
    /// Where it applies.
    pub scope: Resource,
}

/// An authenticated caller, with the bindings that apply to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable identifier, e.g. `user:bootstrap`.
    pub id: String,
    /// The role bindings held.
    pub bindings: Vec<Binding>,
}

/// Proof that `principal` may perform `action` on `resource`. Only
/// [`authorize`] constructs one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    principal: String,
    action: Action,
    resource: Resource,
    rule: String,
}

impl Permit {
    /// The rule that allowed it, e.g. `owner@/`.
    pub fn rule(&self) -> &str {
        &self.rule
    }
    /// Whether this permit covers `action` on `resource` (the operation's
    /// own check that it was handed the right proof).
    pub fn covers(&self, action: Action, resource: &Resource) -> bool {
        self.action == action && resource.within(&self.resource)
    }
}

/// Why a request was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Human-readable reason, safe to show the caller.
    pub reason: String,
}

/// The outcome of [`authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, with the proof.
    Allow(Permit),
    /// Denied (default deny), with the reason.
    Deny(Denial),
}

/// Decides whether `principal` may perform `action` on `resource`.
///
/// Default deny: an action is allowed only if some binding at or above the
/// resource grants it. The first binding that grants it is the deciding rule.
pub fn authorize(principal: &Principal, action: Action, resource: &Resource) -> Decision {
    for b in &principal.bindings {
        if resource.within(&b.scope) && b.role.grants(action) {
            return Decision::Allow(Permit {
                principal: principal.id.clone(),
                action,
                resource: resource.clone(),
                rule: format!("{}@{}", b.role.as_str(), b.scope),
            });
        }
    }
    Decision::Deny(Denial {
        reason: format!(
            "no role binding grants {action} on {resource} to {}",
            principal.id
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> Resource {
        Resource::Scope(ScopePath::parse(s).unwrap())
    }

    #[test]
    fn default_is_deny() {
        let nobody = Principal {
            id: "user:nobody".into(),
            bindings: vec![],
        };
        for a in Action::ALL {
            assert!(matches!(
                authorize(&nobody, a, &scope("acme")),
                Decision::Deny(_)
            ));
        }
    }

    #[test]
    fn owner_binding_applies_below_its_scope_only() {
        let p = Principal {
            id: "user:a".into(),
            bindings: vec![Binding {
                role: Role::Owner,
                scope: scope("acme/shop"),
            }],
        };
        let Decision::Allow(permit) = authorize(&p, Action::SecretRead, &scope("acme/shop/prod"))
        else {
            panic!("owner of acme/shop must read acme/shop/prod");
        };
        assert_eq!(permit.rule(), "owner@acme/shop");
        assert!(permit.covers(Action::SecretRead, &scope("acme/shop/prod/api")));
        assert!(!permit.covers(Action::SecretRead, &scope("acme/shop")));
        assert!(!permit.covers(Action::SecretWrite, &scope("acme/shop/prod")));
        for r in [
            scope("acme"),
            scope("acme/shopx"),
            scope("other"),
            Resource::Root,
        ] {
            assert!(
                matches!(authorize(&p, Action::SecretRead, &r), Decision::Deny(_)),
                "{r}"
            );
        }
    }
}
