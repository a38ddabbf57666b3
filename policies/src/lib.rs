//! Warden's authorization engine: who may do what, where.
//!
//! This crate owns:
//!
//! - the permissions ([`Action`], spelled `resource.verb`),
//! - the role file format (YAML, [`Role::parse`]) and the built-in roles
//!   shipped in `policies/roles/` ([`builtin_roles`], [`workload_role`]),
//! - role bindings at scopes ([`Binding`], [`Scope`]) and the [`Principal`]
//!   that holds them,
//! - the decision function [`authorize`] and what an allow carries
//!   ([`Allowed`]: the deciding rule),
//! - the management rules (module [`manage`]): who may grant and revoke
//!   bindings, write and delete custom roles, act for another principal,
//!   and learn that a principal exists ([`may_grant`], [`may_revoke`],
//!   [`may_apply_role`], [`may_delete_role`], [`may_act_for`],
//!   [`visible_to`]), so that nobody escalates past what they hold or
//!   restricts a principal they do not manage.
//!
//! [`authorize`] is a pure function over data: it takes a [`Principal`] with
//! the bindings the caller resolved for it, an [`Action`] and a [`Resource`],
//! and returns a [`Decision`]. Default deny; an explicit deny from any
//! applicable binding beats every allow; a binding applies to its scope and
//! everything below it. The decision names the rule that decided it
//! ([`Explanation`]). An [`Allowed`] is a decision, not a proof: the proof
//! operations require (`warden_pipeline::Permit`) is minted only by the
//! request pipeline, for the authenticated caller, once the intent is
//! audited, so calling [`authorize`] by hand yields nothing a vault, gateway
//! or deploy operation accepts. The management rules are pure functions
//! over the same data, answering a [`Sanction`] or a [`ManageDenial`].
//!
//! Architecture invariant: this crate does no I/O, no async and reads no
//! clock; it keeps no mutable global state (the only global is the lazily
//! parsed, immutable set of built-in roles compiled into the binary). It must
//! not depend on the storage, vault, audit, API or server crates: they depend
//! on it. Roles and bindings are loaded by the caller and passed in.

mod action;
mod builtin;
pub mod manage;
mod role;

pub use action::{Action, ParseActionError};
pub use builtin::{
    WORKLOAD_ROLE, builtin_role, builtin_roles, is_reserved_role_name, workload_role,
};
pub use manage::{
    ManageDenial, Member, Sanction, is_root_owner, keeps_a_root_owner, may_act_as, may_act_for,
    may_apply_role, may_delete_role, may_grant, may_issue_workload, may_revoke, visible_to,
};
pub use role::{
    Condition, Effect, MAX_DESCRIPTION_BYTES, MAX_PERMISSIONS_PER_RULE, MAX_ROLE_SOURCE_BYTES,
    MAX_RULES, Role, RoleError, Rule, SessionPolicy, valid_role_name,
};

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use warden_types::{EnvMode, NameError, ScopePath};

/// Where a binding applies, or what a request acts on: the whole
/// installation, or an organization, project, environment or service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The whole installation (`/`): creating organizations, sealing.
    Root,
    /// An organization, project, environment or service.
    Path(ScopePath),
}

impl Scope {
    /// Whether `other` is this scope or below it. [`Scope::Root`] contains
    /// everything; a path contains itself and the paths below it (by whole
    /// segments: `acme/shop` does not contain `acme/shopx`).
    #[inline]
    pub fn contains(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::Root, _) => true,
            (Scope::Path(a), Scope::Path(b)) => a.contains(b),
            (Scope::Path(_), Scope::Root) => false,
        }
    }

    /// The organization, or `None` for the root.
    pub fn org(&self) -> Option<&str> {
        match self {
            Scope::Root => None,
            Scope::Path(p) => Some(p.org()),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Root => f.write_str("/"),
            Scope::Path(p) => f.write_str(p.as_str()),
        }
    }
}

impl From<ScopePath> for Scope {
    fn from(p: ScopePath) -> Self {
        Scope::Path(p)
    }
}

/// `/` is the root; anything else must be a valid scope path.
impl FromStr for Scope {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "/" {
            Ok(Scope::Root)
        } else {
            ScopePath::parse(s).map(Scope::Path)
        }
    }
}

/// What a request acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    /// The scope acted on.
    pub scope: Scope,
    /// The environment's mode when `scope` is an environment or a service,
    /// else `None`. Rules with an `env_mode` condition never apply when it is
    /// `None`.
    pub mode: Option<EnvMode>,
}

impl Resource {
    /// The whole installation.
    pub fn root() -> Self {
        Self {
            scope: Scope::Root,
            mode: None,
        }
    }

    /// A path, with its environment's mode if it has one.
    pub fn at(path: ScopePath, mode: Option<EnvMode>) -> Self {
        Self {
            scope: Scope::Path(path),
            mode,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.scope.fmt(f)
    }
}

/// A role bound to a principal at a scope (and everything below it).
#[derive(Debug, Clone)]
pub struct Binding {
    /// The role granted.
    pub role: Arc<Role>,
    /// Where it applies.
    pub scope: Scope,
}

/// An authenticated caller, with the bindings that apply to it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Stable identifier, e.g. `user:alice`.
    pub id: String,
    /// The role bindings held.
    pub bindings: Vec<Binding>,
    /// Whether the session was established with multi-factor authentication.
    pub mfa: bool,
}

impl Principal {
    /// Whether any binding is at the root or inside organization `org`. The
    /// server answers a denied request with 404 rather than 403 when this is
    /// false, so that it reveals nothing about organizations the caller has
    /// no part in.
    pub fn has_binding_in_org(&self, org: &str) -> bool {
        self.bindings.iter().any(|b| match &b.scope {
            Scope::Root => true,
            Scope::Path(p) => p.org() == org,
        })
    }
}

/// The rule that decided a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Whether the rule allows or denies.
    pub effect: Effect,
    /// The role's name.
    pub role: Arc<str>,
    /// The scope the role is bound at.
    pub binding: Scope,
    /// The 1-based index of the rule in the role file.
    pub rule: usize,
    /// The permission pattern of the rule that matched, e.g. `secret.*`.
    pub permission: String,
    /// The rule's condition (always holds when it has none).
    pub when: Condition,
    /// How sessions run: in an [`Allowed`], the combination
    /// ([`SessionPolicy::and`]) of every role with a rule allowing the
    /// action on the resource, so which binding is listed first has no
    /// say; in a deny, the deny rule's role's `session:`.
    pub session: SessionPolicy,
}

/// For example:
///
/// ```text
/// allow by rule 2 of role `developer` bound at acme/shop (secret.*, when env_mode in [development, staging])
/// ```
impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Explanation {
    /// Writes the `Display` form with `write_str` only (cheap into a
    /// `String` on the request path).
    fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        w.write_str(self.effect.as_str())?;
        w.write_str(" by rule ")?;
        write_decimal(w, self.rule)?;
        w.write_str(" of role `")?;
        w.write_str(&self.role)?;
        w.write_str("` bound at ")?;
        write_scope(w, &self.binding)?;
        w.write_str(" (")?;
        w.write_str(&self.permission)?;
        if !self.when.is_always() {
            w.write_str(", when ")?;
            self.when.write_to(w)?;
        }
        w.write_str(")")
    }
}

fn write_decimal<W: fmt::Write>(w: &mut W, mut n: usize) -> fmt::Result {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        w.write_char(char::from(d))?;
    }
    Ok(())
}

fn write_scope<W: fmt::Write>(w: &mut W, scope: &Scope) -> fmt::Result {
    match scope {
        Scope::Root => w.write_str("/"),
        Scope::Path(p) => w.write_str(p.as_str()),
    }
}

/// An allow decision: who, what, where, and the rule that allowed it. Only
/// [`authorize`] constructs one. It is not a proof operations accept (see
/// the crate documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    principal: String,
    action: Action,
    scope: Scope,
    explanation: Explanation,
}

impl Allowed {
    /// The principal's id.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The action allowed.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The scope of the resource the decision is about.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The rule that allowed it.
    pub fn explanation(&self) -> &Explanation {
        &self.explanation
    }

    /// A short one-line form of the deciding rule, for audit entries:
    /// `developer@acme/shop rule 2 (secret.*)`.
    pub fn rule(&self) -> String {
        let e = &self.explanation;
        format!(
            "{}@{} rule {} ({})",
            e.role, e.binding, e.rule, e.permission
        )
    }
}

/// Why a request was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The deny rule that decided, or `None` for a default deny.
    pub explicit: Option<Explanation>,
    /// Human-readable reason, safe to show the caller: it names only the
    /// caller's own bindings and the resource the caller asked for.
    pub reason: String,
}

/// The outcome of [`authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, with the proof.
    Allow(Allowed),
    /// Denied, with the reason.
    Deny(Denial),
}

impl Decision {
    /// Whether the decision is an allow.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// At most this many "allows it only when ..." hints in a deny reason.
const MAX_HINTS: usize = 3;

fn explain(binding: &Binding, index: usize, rule: &Rule, action: Action) -> Explanation {
    Explanation {
        effect: rule.effect,
        role: Arc::clone(binding.role.name_arc()),
        binding: binding.scope.clone(),
        rule: index + 1,
        permission: rule.pattern_for(action).to_owned(),
        when: rule.when,
        session: binding.role.session_policy(),
    }
}

/// Decides whether `principal` may perform `action` on `resource`.
///
/// - A binding applies when its scope contains the resource's scope.
/// - A rule matches when it names the action and its condition holds for the
///   resource's mode and the principal's MFA state.
/// - If any matching deny rule of any applicable binding exists, the request
///   is denied by it (the first one, in binding then rule order).
/// - Otherwise it is allowed by the first matching allow rule, and denied by
///   default when there is none. The allow's session settings combine those
///   of every binding with a matching allow rule (the smallest limits, input
///   recorded if any asks): a limiting role bound beside a broader one
///   applies whatever the roles are called.
/// - Root-only actions (`sys.seal`) are denied on anything but the root.
pub fn authorize(principal: &Principal, action: Action, resource: &Resource) -> Decision {
    if action.root_only() && resource.scope != Scope::Root {
        return Decision::Deny(Denial {
            explicit: None,
            reason: format!(
                "{action} acts only on the root scope `/`, not on {}",
                resource.scope
            ),
        });
    }
    let bit = action.bit();
    let mode = resource.mode;
    let mfa = principal.mfa;
    let mut allow: Option<(&Binding, usize)> = None;
    let mut session = SessionPolicy::default();
    for binding in &principal.bindings {
        let role = &*binding.role;
        if (role.allow_mask | role.deny_mask) & bit == 0 || !binding.scope.contains(&resource.scope)
        {
            continue;
        }
        let rules = role.rules();
        if role.deny_mask & bit != 0
            && let Some(i) = rules.iter().position(|r| {
                r.effect == Effect::Deny && r.mask & bit != 0 && r.when.holds(mode, mfa)
            })
        {
            let explanation = explain(binding, i, &rules[i], action);
            let mut reason = String::with_capacity(160);
            reason.push_str(action.as_str());
            reason.push_str(" on ");
            push_scope(&mut reason, &resource.scope);
            reason.push_str(": ");
            // Writing into a String cannot fail.
            let _ = explanation.write_to(&mut reason);
            return Decision::Deny(Denial {
                reason,
                explicit: Some(explanation),
            });
        }
        if role.allow_mask & bit != 0
            && let Some(i) = rules.iter().position(|r| {
                r.effect == Effect::Allow && r.mask & bit != 0 && r.when.holds(mode, mfa)
            })
        {
            session = session.and(role.session_policy());
            if allow.is_none() {
                allow = Some((binding, i));
            }
        }
    }
    match allow {
        Some((binding, i)) => Decision::Allow(Allowed {
            principal: principal.id.clone(),
            action,
            scope: resource.scope.clone(),
            explanation: Explanation {
                session,
                ..explain(binding, i, &binding.role.rules()[i], action)
            },
        }),
        None => Decision::Deny(default_denial(principal, action, resource)),
    }
}

fn push_scope(out: &mut String, scope: &Scope) {
    // Writing into a String cannot fail.
    let _ = write_scope(out, scope);
}

/// The reason for a default deny, with hints about allow rules that name the
/// action but whose condition did not hold. Built with `push_str` only: this
/// runs on every denied request.
fn default_denial(principal: &Principal, action: Action, resource: &Resource) -> Denial {
    let mut reason = String::with_capacity(192);
    reason.push_str("no role binding grants ");
    reason.push_str(action.as_str());
    reason.push_str(" on ");
    push_scope(&mut reason, &resource.scope);
    let mut seen: [Option<(&str, &Scope, Condition)>; MAX_HINTS] = [None; MAX_HINTS];
    let mut hints = 0;
    'bindings: for binding in &principal.bindings {
        let role = &*binding.role;
        if role.allow_mask & action.bit() == 0 || !binding.scope.contains(&resource.scope) {
            continue;
        }
        for rule in role.rules() {
            if rule.effect != Effect::Allow || !rule.matches(action) {
                continue;
            }
            let key = Some((role.name(), &binding.scope, rule.when));
            if seen[..hints].contains(&key) {
                continue;
            }
            if hints == MAX_HINTS {
                break 'bindings;
            }
            seen[hints] = key;
            hints += 1;
            reason.push_str("; role `");
            reason.push_str(role.name());
            reason.push_str("` at ");
            push_scope(&mut reason, &binding.scope);
            reason.push_str(" allows it ");
            rule.when.push_requirement(&mut reason);
        }
    }
    Denial {
        explicit: None,
        reason,
    }
}

#[cfg(test)]
mod tests;
