//! The proof an operation requires.

use warden_policies::{Action, Allowed, Scope, SessionPolicy};

/// Proof that the pipeline authenticated a caller, authorized one action on
/// one resource for it, and recorded the intent in the audit log (durably,
/// or, for operations whose only effects are storage writes, ahead of
/// those writes in the same ordered queue). Vault, gateway and runtime
/// operations take a `&Permit`, so an unauthorized call does not
/// type-check; they check that it [covers](Permit::covers) what they do.
///
/// Only this crate mints one (its fields are private and it has no public
/// constructor); `warden_policies::authorize` alone yields a decision, not
/// a `Permit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    principal: String,
    action: Action,
    scope: Scope,
    op_id: String,
    rule: String,
    session: SessionPolicy,
}

impl Permit {
    pub(crate) fn mint(allowed: &Allowed, op_id: String) -> Self {
        Self {
            principal: allowed.principal().to_owned(),
            action: allowed.action(),
            scope: allowed.scope().clone(),
            op_id,
            rule: allowed.rule(),
            session: allowed.explanation().session,
        }
    }

    /// A break-glass permit (see `Pipeline::run_break_glass`).
    pub(crate) fn break_glass(
        principal: &str,
        action: Action,
        scope: Scope,
        op_id: String,
    ) -> Self {
        Self {
            principal: principal.to_owned(),
            action,
            scope,
            op_id,
            rule: "break-glass: owner@/".to_owned(),
            session: SessionPolicy::default(),
        }
    }

    /// The authenticated principal's id.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The action allowed.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The scope of the resource the permit was issued for.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The audit operation id of the intent recorded for it.
    pub fn op_id(&self) -> &str {
        &self.op_id
    }

    /// The rule that allowed it, in the audit entry's short form.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// How a session this permit allows runs: the `session:` settings of
    /// every role allowing it, combined (`SessionPolicy::and`).
    pub fn session_policy(&self) -> SessionPolicy {
        self.session
    }

    /// Whether this permit covers `action` on `scope`: the same action, on
    /// the permit's scope or below it (an operation's own check that it was
    /// handed the right proof).
    pub fn covers(&self, action: Action, scope: &Scope) -> bool {
        self.action == action && self.scope.contains(scope)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use warden_policies::{Binding, Decision, Principal, Resource, authorize, builtin_role};
    use warden_types::ScopePath;

    use super::*;

    fn scope(s: &str) -> Scope {
        Scope::Path(ScopePath::parse(s).unwrap())
    }

    fn permit_for(bound_at: Scope, action: Action, at: Scope) -> Permit {
        let p = Principal {
            id: "user:alice".into(),
            bindings: vec![Binding {
                role: Arc::clone(&builtin_role("owner").unwrap()),
                scope: bound_at,
            }],
            mfa: false,
        };
        match authorize(
            &p,
            action,
            &Resource {
                scope: at,
                mode: None,
            },
        ) {
            Decision::Allow(a) => Permit::mint(&a, "op-1".into()),
            Decision::Deny(d) => panic!("{}", d.reason),
        }
    }

    #[test]
    fn permits_cover_their_action_at_and_below_their_scope() {
        let permit = permit_for(
            scope("acme/shop"),
            Action::SecretRead,
            scope("acme/shop/prod"),
        );
        assert_eq!(permit.principal(), "user:alice");
        assert_eq!(permit.op_id(), "op-1");
        assert!(permit.covers(Action::SecretRead, &scope("acme/shop/prod")));
        assert!(permit.covers(Action::SecretRead, &scope("acme/shop/prod/api")));
        assert!(!permit.covers(Action::SecretRead, &scope("acme/shop")));
        assert!(!permit.covers(Action::SecretRead, &scope("acme/shop/prodx")));
        assert!(!permit.covers(Action::SecretRead, &Scope::Root));
        assert!(!permit.covers(Action::SecretWrite, &scope("acme/shop/prod")));

        let root = permit_for(Scope::Root, Action::SysSeal, Scope::Root);
        assert!(root.covers(Action::SysSeal, &Scope::Root));
        assert!(root.covers(Action::SysSeal, &scope("acme")));
        assert!(!root.covers(Action::KeyRotate, &Scope::Root));
    }
}
