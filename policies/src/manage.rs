//! Management rules: who may change what principals may do.
//!
//! [`authorize`] decides what a principal may do to a resource. This module
//! decides who may change that: granting and revoking bindings
//! ([`may_grant`], [`may_revoke`]), writing and deleting custom roles
//! ([`may_apply_role`], [`may_delete_role`]), acting for another principal
//! — disabling it, creating, listing or revoking its tokens
//! ([`may_act_for`]) — and which principals a caller may learn of at all
//! ([`visible_to`]). Like `authorize` these are pure functions over data the
//! caller loaded (no I/O, no clock). Each answers [`Sanction`] or a
//! [`ManageDenial`] whose reason is safe to show the caller and which says
//! whether it must be presented as "not found".
//!
//! The server still runs each operation's own permission through
//! `authorize` in its pipeline (so it is audited like any request); these
//! functions repeat that check and add the rules below.
//!
//! # Vocabulary
//!
//! A principal's **powers** are what `authorize` allows it: the set of
//! (action, resource, MFA) triples it is allowed.
//!
//! A role bound at scope `X` **confers**, at a resource inside `X`, what its
//! allow rules whose condition holds allow minus what its own deny rules
//! whose condition holds deny (and `sys.seal` only at `/`).
//!
//! An actor **holds what a role bound at `X` confers** when, for each MFA
//! value `m` in {false, true}, the actor evaluated as if its session had
//! MFA = `m` is allowed every action the role confers under `m`, at `X` and at
//! every scope inside `X` where one of the actor's own bindings carries deny
//! rules, in every environment mode a resource there can have (none at the
//! root, an organization or a project, whose resources below may have any
//! mode; one of the three at an environment or service, whose mode is not
//! known here, so all three are checked). Those scopes are enough: every
//! resource below `X` sees the same deny-carrying bindings of the actor as
//! the deepest of them above it, and the actor's other bindings only add.
//! Checking both MFA values, whatever the actor's session, is what stops
//! laundering: a power the actor holds only with MFA cannot be passed on
//! without the condition (to a service account whose tokens never carry
//! MFA).
//!
//! An actor **could grant** a binding when `authorize` lets it perform the
//! grant action at the binding's scope in its current session
//! (`ownership.transfer` for the built-in `owner` role, `member.manage` for
//! any other) and it holds what the binding's role confers there.
//!
//! # Manages
//!
//! **Actor `A` manages principal `S` at scope `X`** when `A` is `S`, or `A`
//! could grant every binding of `S` that
//!
//! 1. overlaps `X` (its scope contains `X` or lies inside `X`), and
//! 2. `A` can see: it is at `/`, or inside an organization where `A` holds
//!    a binding (a binding at `/` counts as one in every organization).
//!
//! Why this definition:
//!
//! - Any change aimed at `S` at `X` (a binding with deny rules, a revoked
//!   binding, an edited role `S` holds at `X`) changes `S`'s powers only at
//!   resources inside `X`, and the bindings of `S` that decide there are
//!   exactly those that overlap `X`. If `A` could grant them all, `A` holds,
//!   under both MFA values, everything `S` may do there: `S` never loses a
//!   power that `A` lacks, and lifting a deny on `S` gives `S` back only
//!   powers `A` already has.
//! - Bindings above `X` count, so an Admin of `acme` (no
//!   `ownership.transfer`) never manages an Owner of `acme` at any scope
//!   inside it: an Admin can never restrict an Owner at or above the scope.
//! - Bindings at `/` always count, so an organization's Admin never manages
//!   `user:root`, nor any principal with powers at `/`, even one homed in its
//!   organization.
//! - Bindings in organizations where `A` holds no binding do not count:
//!   `A` cannot see them, so they must neither decide nor appear in an
//!   answer. For grants and revokes this changes nothing (the actor must have
//!   authority at `X`, so every binding overlapping `X` is at `/` or in `X`'s
//!   organization). For acting for a principal it means an organization can
//!   always disable its own members, whatever another tenant granted them.
//!   The trust this implies is deliberate: a binding granted to another
//!   organization's principal trusts that organization's admins, who control
//!   the principal's credentials.
//! - A principal manages itself: giving up one's own powers harms nobody
//!   else. Lifting a deny one is under is the exception, refused by the
//!   rules below.
//!
//! # Rules
//!
//! - **Grant** binding `b` to `S`: `S` is visible to the actor; the actor
//!   could grant `b`; if `b`'s role has deny rules, granting it restricts `S`,
//!   so the actor must manage `S` at `b`'s scope, and the binding may not be
//!   at `/` (custom roles never are; this keeps every root binding free of
//!   deny rules, so org-level bindings are the only ones that can restrict a
//!   root principal, and they cannot touch its authority at `/`).
//! - **Revoke** `b` from `S`: the grant action at `b`'s scope, the actor
//!   holds what `b`'s role confers ("you can only revoke what you could
//!   grant"), and manages `S` at `b`'s scope; a binding with deny rules is
//!   never revoked by the principal it restricts.
//! - **Apply a role** (old version to new) or **delete** it (old version to
//!   nothing): `role.manage` at its organization; the actor holds what the old
//!   and the new version confer; if the change takes anything away from a
//!   holder (an allowed (action, mode, MFA) no longer allowed, or a new
//!   deny), or weakens a deny (an (action, mode, MFA) the old version denies
//!   that the new one does not), the actor must manage every holder at each
//!   binding of the role it holds; and a deny is never weakened by a
//!   principal it restricts (one holding a binding of the role).
//! - **Act for** `S` (its tokens, disabling it): `S` lives where the actor
//!   holds a binding (its home organization, or `/` for a principal homed at
//!   the root), the actor has `member.manage` there, and could grant every
//!   binding of `S` it can see (as in "manages", without the overlap
//!   condition: a token or a disabled account carries every power).
//! - **Visibility**: a principal is visible to an actor that holds a binding
//!   at `/`, or in its home organization, or in an organization where the
//!   principal holds a binding (whose listing already names it). Every
//!   refusal about a principal that is not visible, or about a scope in an
//!   organization where the actor holds no binding, uses exactly the words
//!   of a name that does not exist ([`ManageDenial::principal_not_found`])
//!   and depends on nothing outside the actor's organizations.
//! - **Break-glass**: a principal holding the built-in `owner` role bound at
//!   `/` ([`is_root_owner`]) may revoke any binding the rules refuse, when it
//!   asks to; the answer is [`Sanction::ByBreakGlass`], which the server
//!   audits as such. Since no deny rule can be bound at `/`, a root Owner's
//!   authority at `/` is never restricted, and break-glass removes any
//!   org-level deny it is under: a root Owner always keeps a way back to full
//!   control.
//! - **Org-level bindings and `/`**: decisions at a root-scope resource
//!   (`authorize` at `/`, the grant action at `/`, break-glass) read only
//!   bindings at `/`. An operation on a binding at `/` also changes powers
//!   inside organizations; there, and only there, the actor's org-level deny
//!   rules still bind it (otherwise a root Admin under a deny in `acme` could
//!   grant a puppet account a root binding and read what it may not). A
//!   refusal for that reason names the organization's scope.
//!
//! Choices on the safe side: the grant action at an environment or service
//! must be allowed in all three modes (the scope's mode is not passed in);
//! a role change counts as restricting when it does so in any mode, even one
//! the role's bindings never meet.

use crate::{Action, Binding, Decision, Explanation, Principal, Resource, Role, Scope, authorize};
use std::fmt;
use warden_types::{EnvMode, ScopeKind, ScopePath};

/// A principal an actor wants to manage, as storage holds it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Stable identifier, e.g. `user:alice` or `sa:ci`.
    pub id: String,
    /// The organization the principal belongs to, or `None` for one homed
    /// at the root (such as `user:root`).
    pub home: Option<String>,
    /// Every binding the principal holds, wherever it is.
    pub bindings: Vec<Binding>,
}

/// How an operation was allowed.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sanction {
    /// By the rules of this module.
    ByRules,
    /// Refused by the rules, allowed because a root Owner asked for
    /// break-glass ([`may_revoke`] only). The server must audit it as a
    /// break-glass revocation.
    ByBreakGlass,
}

/// Why a management operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManageDenial {
    /// What to tell the caller. It names only the caller's own bindings,
    /// what the caller asked about (the principal, binding or role), and
    /// principals' powers at `/` or in the caller's organizations (never a
    /// binding, scope or principal seen only elsewhere).
    pub reason: String,
    /// Present the refusal as "not found" (HTTP 404) with `reason` as the
    /// message: the caller asked about a principal or scope outside its
    /// organizations, and `reason` then has exactly the words used for one
    /// that does not exist. Otherwise it is a "forbidden" (403).
    pub not_found: bool,
    /// The scope where the refusing check looked, if any (for audit
    /// records). A refusal that only the caller's organization-level
    /// bindings cause names a scope inside that organization, never `/`.
    pub scope: Option<Scope>,
    /// The caller's own rule that decided, when a deny rule of one of its
    /// bindings did.
    pub rule: Option<Box<Explanation>>,
}

impl ManageDenial {
    /// The refusal for a principal that does not exist, or that the caller
    /// may not know of: `principal ID not found`. The server answers a
    /// missing principal with this too, so that both read the same.
    pub fn principal_not_found(id: &str) -> Self {
        Self {
            reason: format!("principal {id} not found"),
            not_found: true,
            scope: None,
            rule: None,
        }
    }

    /// The refusal for a scope in an organization the caller has no part
    /// in: `KIND PATH not found`, as the request pipeline words it.
    fn scope_not_found(path: &ScopePath) -> Self {
        Self {
            reason: format!("{} {path} not found", path.kind().as_str()),
            not_found: true,
            scope: Some(Scope::Path(path.clone())),
            rule: None,
        }
    }

    fn forbidden(reason: String, scope: Option<Scope>) -> Self {
        Self {
            reason,
            not_found: false,
            scope,
            rule: None,
        }
    }

    /// Puts `context` before the reason of a "forbidden"; a "not found" keeps
    /// its exact words.
    fn within(mut self, context: impl FnOnce() -> String) -> Self {
        if !self.not_found {
            self.reason = format!("{}: {}", context(), self.reason);
        }
        self
    }
}

impl fmt::Display for ManageDenial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ManageDenial {}

/// Whether `bindings` include the built-in `owner` role bound at `/`: the
/// holder may use break-glass ([`may_revoke`]), and the installation must
/// keep one enabled ([`keeps_a_root_owner`]).
pub fn is_root_owner(bindings: &[Binding]) -> bool {
    bindings
        .iter()
        .any(|b| b.scope == Scope::Root && is_builtin_owner(&b.role))
}

/// Whether, with `leaving` losing its `owner` binding at `/` (or being
/// disabled), some other principal among `enabled` still holds one.
///
/// `enabled` is every enabled principal. Storage must make the same check
/// inside the transaction that makes the change (two owners removing each
/// other concurrently must not both succeed); this is the rule's statement
/// for callers that hold a consistent snapshot.
pub fn keeps_a_root_owner<'a>(
    enabled: impl IntoIterator<Item = &'a Member>,
    leaving: &str,
) -> bool {
    enabled
        .into_iter()
        .any(|m| m.id != leaving && is_root_owner(&m.bindings))
}

/// Whether `actor` may learn that `subject` exists: it holds a binding at
/// `/`, or in `subject`'s home organization, or in an organization where
/// `subject` holds a binding (that organization's listings name it). Every
/// principal sees itself. Depends on nothing about `subject` outside the
/// actor's organizations.
pub fn visible_to(actor: &Principal, subject: &Member) -> bool {
    actor.id == subject.id
        || holds_root_binding(actor)
        || subject
            .home
            .as_deref()
            .is_some_and(|org| actor.has_binding_in_org(org))
        || subject.bindings.iter().any(|b| {
            b.scope
                .org()
                .is_some_and(|org| actor.has_binding_in_org(org))
        })
}

/// Whether `actor` may grant `binding` to `subject`.
///
/// Needs the grant action at the binding's scope (`ownership.transfer` for
/// the built-in `owner` role, `member.manage` otherwise) in the actor's
/// session; that the actor holds what the role confers there under both MFA
/// values; and, when the role has deny rules, that the actor manages
/// `subject` at that scope (a deny restricts its holder) and the scope is
/// not `/`. See the module documentation.
pub fn may_grant(
    actor: &Principal,
    subject: &Member,
    binding: &Binding,
) -> Result<Sanction, ManageDenial> {
    let role = &binding.role;
    let at = &binding.scope;
    check_grant_authority(actor, role, at, "granting")?;
    if !visible_to(actor, subject) {
        return Err(ManageDenial::principal_not_found(&subject.id));
    }
    if role.has_deny_rules() && *at == Scope::Root {
        return Err(ManageDenial::forbidden(
            format!(
                "role `{}` has deny rules, which cannot be bound at /: authority at the root stays whole",
                role.name()
            ),
            Some(Scope::Root),
        ));
    }
    if let Some(gap) = gap(actor, role, at) {
        return Err(gap.denial(
            actor,
            format!(
                "role `{}` allows {}, which you do not hold there",
                role.name(),
                gap.what()
            ),
            "; you can only grant what you hold",
        ));
    }
    if role.has_deny_rules() {
        check_manages(actor, subject, at).map_err(|e| {
            e.within(|| {
                format!(
                    "role `{}` has deny rules, so granting it restricts {} at {at}, which needs managing {} there",
                    role.name(),
                    subject.id,
                    subject.id
                )
            })
        })?;
    }
    Ok(Sanction::ByRules)
}

/// Whether `actor` may revoke `binding` (one of `subject`'s bindings).
///
/// By the rules: the grant action at the binding's scope; the actor holds
/// what the role confers there; the actor manages `subject` at that scope;
/// and, when the role has deny rules, the actor is not `subject` (a deny is
/// never lifted by the principal it restricts).
///
/// When the rules refuse and `break_glass` is asked for by a root Owner
/// ([`is_root_owner`]), the answer is [`Sanction::ByBreakGlass`]: a root
/// Owner can always remove a binding, including a deny it is under. The
/// last enabled root Owner rule is storage's (see [`keeps_a_root_owner`]) and
/// applies to break-glass too.
pub fn may_revoke(
    actor: &Principal,
    subject: &Member,
    binding: &Binding,
    break_glass: bool,
) -> Result<Sanction, ManageDenial> {
    match revoke_by_rules(actor, subject, binding) {
        Ok(allowed) => Ok(allowed),
        Err(_) if break_glass && is_root_owner(&actor.bindings) => Ok(Sanction::ByBreakGlass),
        Err(mut denial) => {
            if break_glass && !denial.not_found {
                denial.reason.push_str(
                    "; break-glass revocation is reserved to holders of the built-in owner role at /",
                );
            }
            Err(denial)
        }
    }
}

fn revoke_by_rules(
    actor: &Principal,
    subject: &Member,
    binding: &Binding,
) -> Result<Sanction, ManageDenial> {
    let role = &binding.role;
    let at = &binding.scope;
    check_grant_authority(actor, role, at, "revoking")?;
    if !visible_to(actor, subject) {
        return Err(ManageDenial::principal_not_found(&subject.id));
    }
    if actor.id == subject.id && role.has_deny_rules() {
        return Err(ManageDenial::forbidden(
            format!(
                "role `{}` at {at} has deny rules that restrict you, and a deny is never lifted \
                 by the principal it restricts; someone who manages you must revoke it",
                role.name()
            ),
            Some(at.clone()),
        ));
    }
    if let Some(gap) = gap(actor, role, at) {
        return Err(gap.denial(
            actor,
            format!(
                "role `{}` allows {}, which you do not hold there",
                role.name(),
                gap.what()
            ),
            "; you can only revoke what you could grant",
        ));
    }
    check_manages(actor, subject, at).map_err(|e| {
        e.within(|| {
            format!(
                "revoking a binding of {} at {at} needs managing {} there",
                subject.id, subject.id
            )
        })
    })?;
    Ok(Sanction::ByRules)
}

/// Whether `actor` may write custom role `new` in organization `org`,
/// replacing `old` (`None` when the role is new).
///
/// `holders` are the principals holding a binding of the role (by name,
/// inside `org`), each with all its bindings. Needs `role.manage` at `org`;
/// that the actor holds what the old and the new version confer at `org`;
/// and, when the change takes anything away from holders or weakens a deny,
/// that the actor manages every holder at each of its bindings of the role
/// and (for a weakened deny) holds no binding of the role itself.
pub fn may_apply_role(
    actor: &Principal,
    org: &ScopePath,
    old: Option<&Role>,
    new: &Role,
    holders: &[Member],
) -> Result<Sanction, ManageDenial> {
    let at = org_scope(actor, org)?;
    if old.is_some_and(|o| o.name() != new.name()) {
        return Err(ManageDenial::forbidden(
            format!(
                "role `{}` cannot replace a role with another name",
                new.name()
            ),
            Some(at),
        ));
    }
    if let Some(gap) = gap(actor, new, &at) {
        return Err(gap.denial(
            actor,
            format!(
                "role `{}` would allow {}, which you do not hold there",
                new.name(),
                gap.what()
            ),
            "; you can only write roles that allow what you hold",
        ));
    }
    check_role_change(actor, org, &at, new.name(), old, Some(new), holders)?;
    Ok(Sanction::ByRules)
}

/// Whether `actor` may delete custom role `role` of organization `org`.
///
/// `holders` are the principals still holding a binding of it (storage
/// refuses to delete a bound role; this rule does not rely on that).
/// Deleting is changing the role to nothing: `role.manage` at `org`, the
/// actor holds what the role confers, and, if anyone holds it, the actor
/// manages every holder at each of its bindings of the role and, when the
/// role has deny rules, holds no binding of it itself.
pub fn may_delete_role(
    actor: &Principal,
    org: &ScopePath,
    role: &Role,
    holders: &[Member],
) -> Result<Sanction, ManageDenial> {
    let at = org_scope(actor, org)?;
    check_role_change(actor, org, &at, role.name(), Some(role), None, holders)?;
    Ok(Sanction::ByRules)
}

/// Whether `actor` may act for `subject` in ways that restrict or inspect
/// it: disable it, list or revoke its tokens. (Taking on its powers, by
/// minting it a token, is [`may_act_as`].)
///
/// Always allowed for oneself. Otherwise `subject` must live where the
/// actor holds a binding (its home organization, or `/` for a principal
/// homed at the root), else the answer is "not found"; the actor needs
/// `member.manage` there, and must be able to grant every binding of
/// `subject` at `/` or in an organization where the actor holds a binding.
/// Bindings elsewhere neither count nor show.
pub fn may_act_for(actor: &Principal, subject: &Member) -> Result<Sanction, ManageDenial> {
    if actor.id == subject.id {
        return Ok(Sanction::ByRules);
    }
    let hidden = || ManageDenial::principal_not_found(&subject.id);
    let home = match subject.home.as_deref() {
        Some(org) if actor.has_binding_in_org(org) => {
            Scope::Path(ScopePath::parse(org).map_err(|_| hidden())?)
        }
        None if holds_root_binding(actor) => Scope::Root,
        _ => return Err(hidden()),
    };
    check_authority(actor, Action::MemberManage, &home).map_err(|e| {
        e.within(|| {
            format!(
                "acting for {} needs member.manage where it lives",
                subject.id
            )
        })
    })?;
    for b in subject.bindings.iter().filter(|b| sees(actor, b)) {
        could_grant(actor, subject, b).map_err(|e| {
            e.within(|| format!("acting for {} is acting with all its powers", subject.id))
        })?;
    }
    Ok(Sanction::ByRules)
}

/// Whether `actor` may take on `subject`'s powers (mint it a token): what
/// [`may_act_for`] asks, and moreover `subject` holds no binding the actor
/// cannot see. A power another tenant granted the subject would otherwise
/// pass to the actor; the refusal says so without naming the binding, the
/// tenant or the scope.
pub fn may_act_as(actor: &Principal, subject: &Member) -> Result<Sanction, ManageDenial> {
    let _ = may_act_for(actor, subject)?;
    if actor.id != subject.id && !subject.bindings.iter().all(|b| sees(actor, b)) {
        return Err(ManageDenial {
            reason: format!(
                "{} holds powers granted outside your organizations; only those who can \
                 grant all of them may act as it",
                subject.id
            ),
            not_found: false,
            scope: None,
            rule: None,
        });
    }
    Ok(Sanction::ByRules)
}

/// Whether `actor` may issue a workload token for the service at `at`,
/// whose holder gets `workload` (the built-in workload role) there.
///
/// Issuing one hands the role's powers to a process, as granting it
/// would: the actor must hold everything it confers at `at` under both
/// MFA values, net of the actor's deny rules (else a principal denied a
/// read, or allowed it only with MFA, would read through a token it
/// minted). The issue action itself is the pipeline's check.
pub fn may_issue_workload(
    actor: &Principal,
    workload: &Role,
    at: &Scope,
) -> Result<Sanction, ManageDenial> {
    if let Some(gap) = gap(actor, workload, at) {
        return Err(gap.denial(
            actor,
            format!(
                "a workload token for {at} can use {}, which you do not hold there",
                gap.what()
            ),
            "; you can only issue what you hold",
        ));
    }
    Ok(Sanction::ByRules)
}

// ---------------------------------------------------------------------------
// The checks.

/// `ownership.transfer` for the built-in `owner` role (or anything named
/// like it), `member.manage` for every other role.
fn grant_action(role: &Role) -> Action {
    if role.name() == "owner" {
        Action::OwnershipTransfer
    } else {
        Action::MemberManage
    }
}

fn is_builtin_owner(role: &Role) -> bool {
    crate::builtin_role("owner")
        .is_some_and(|owner| owner.name() == role.name() && owner.source() == role.source())
}

fn holds_root_binding(actor: &Principal) -> bool {
    actor.bindings.iter().any(|b| b.scope == Scope::Root)
}

/// Whether `actor` can see binding `b` of someone else: at `/`, or inside an
/// organization where the actor holds a binding.
fn sees(actor: &Principal, b: &Binding) -> bool {
    match &b.scope {
        Scope::Root => true,
        Scope::Path(p) => actor.has_binding_in_org(p.org()),
    }
}

fn overlaps(a: &Scope, b: &Scope) -> bool {
    a.contains(b) || b.contains(a)
}

const NO_MODE: [Option<EnvMode>; 1] = [None];
const ENV_MODES: [Option<EnvMode>; 3] = [
    Some(EnvMode::Development),
    Some(EnvMode::Staging),
    Some(EnvMode::Production),
];
const ANY_MODE: [Option<EnvMode>; 4] = [
    None,
    Some(EnvMode::Development),
    Some(EnvMode::Staging),
    Some(EnvMode::Production),
];

fn in_environment(scope: &Scope) -> bool {
    matches!(scope, Scope::Path(p) if matches!(p.kind(), ScopeKind::Environment | ScopeKind::Service))
}

/// The modes a resource at `scope` itself may have.
fn modes_at(scope: &Scope) -> &'static [Option<EnvMode>] {
    if in_environment(scope) {
        &ENV_MODES
    } else {
        &NO_MODE
    }
}

/// The modes a resource at or below `scope` may have.
fn modes_below(scope: &Scope) -> &'static [Option<EnvMode>] {
    if in_environment(scope) {
        &ENV_MODES
    } else {
        &ANY_MODE
    }
}

const ROOT_ONLY: u32 = Action::SysSeal.bit() | Action::ClusterManage.bit();

/// Root-only actions are allowed nowhere but at `/`.
fn confine(mask: u32, scope: &Scope) -> u32 {
    if *scope == Scope::Root {
        mask
    } else {
        mask & !ROOT_ONLY
    }
}

/// Every action `authorize` allows `bindings` on a resource at `scope` of
/// `mode` with `mfa`, as a mask.
fn powers(bindings: &[Binding], scope: &Scope, mode: Option<EnvMode>, mfa: bool) -> u32 {
    let (mut allow, mut deny) = (0, 0);
    for b in bindings.iter().filter(|b| b.scope.contains(scope)) {
        let (a, d) = b.role.masks_for(mode, mfa);
        allow |= a;
        deny |= d;
    }
    confine(allow & !deny, scope)
}

/// What `role`, bound at or above `scope`, confers there.
fn confers(role: &Role, scope: &Scope, mode: Option<EnvMode>, mfa: bool) -> u32 {
    let (allow, deny) = role.masks_for(mode, mfa);
    confine(allow & !deny, scope)
}

/// The actor with its session's MFA state replaced.
fn with_mfa(actor: &Principal, mfa: bool) -> Principal {
    Principal {
        id: actor.id.clone(),
        bindings: actor.bindings.clone(),
        mfa,
    }
}

/// `authorize` for `action` at `scope`, in every mode a resource there can
/// have, in the actor's session. A refusal at a scope in an organization
/// where the actor has no binding reads as "not found".
fn check_authority(actor: &Principal, action: Action, scope: &Scope) -> Result<(), ManageDenial> {
    for &mode in modes_at(scope) {
        let resource = Resource {
            scope: scope.clone(),
            mode,
        };
        if let Decision::Deny(denial) = authorize(actor, action, &resource) {
            if let Scope::Path(p) = scope
                && !actor.has_binding_in_org(p.org())
            {
                return Err(ManageDenial::scope_not_found(p));
            }
            let mut reason = denial.reason;
            if let Some(m) = mode {
                reason.push_str(" (where env_mode is ");
                reason.push_str(m.as_str());
                reason.push(')');
            }
            return Err(ManageDenial {
                reason,
                not_found: false,
                scope: Some(scope.clone()),
                rule: denial.explicit.map(Box::new),
            });
        }
    }
    Ok(())
}

/// The grant action for `role` at `at`, with the operation named in a
/// "forbidden".
fn check_grant_authority(
    actor: &Principal,
    role: &Role,
    at: &Scope,
    verb: &str,
) -> Result<(), ManageDenial> {
    let action = grant_action(role);
    check_authority(actor, action, at).map_err(|e| {
        e.within(|| format!("{verb} role `{}` at {at} needs {action} there", role.name()))
    })
}

/// A permission a role confers that the actor does not hold.
struct Gap {
    action: Action,
    scope: Scope,
    mode: Option<EnvMode>,
    mfa: bool,
}

impl Gap {
    /// `secret.read at acme/shop where env_mode is production, outside an
    /// MFA session`.
    fn what(&self) -> String {
        let mut out = format!("{} at {}", self.action, self.scope);
        if let Some(m) = self.mode {
            out.push_str(" where env_mode is ");
            out.push_str(m.as_str());
            out.push(',');
        }
        out.push_str(if self.mfa {
            " in an MFA session"
        } else {
            " outside an MFA session"
        });
        out
    }

    /// The refusal: `head`, why the actor lacks the permission in
    /// `authorize`'s words (which name only the actor's own bindings), then
    /// `tail`.
    fn denial(&self, actor: &Principal, head: String, tail: &str) -> ManageDenial {
        let resource = Resource {
            scope: self.scope.clone(),
            mode: self.mode,
        };
        let (why, rule) = match authorize(&with_mfa(actor, self.mfa), self.action, &resource) {
            Decision::Deny(d) => (d.reason, d.explicit.map(Box::new)),
            // `powers` and `authorize` agree (tested); should they ever not,
            // the refusal stands and says less.
            Decision::Allow(_) => (String::new(), None),
        };
        let mut reason = head;
        if !why.is_empty() {
            reason.push_str(" (");
            reason.push_str(&why);
            reason.push(')');
        }
        reason.push_str(tail);
        ManageDenial {
            reason,
            not_found: false,
            scope: Some(self.scope.clone()),
            rule,
        }
    }
}

/// The first permission `role`, bound at `at`, confers that the actor does
/// not hold, under either MFA value, at `at` or at a scope inside it where
/// one of the actor's bindings carries deny rules.
fn gap(actor: &Principal, role: &Role, at: &Scope) -> Option<Gap> {
    let inner = actor
        .bindings
        .iter()
        .filter(|b| b.role.has_deny_rules() && b.scope != *at && at.contains(&b.scope))
        .map(|b| &b.scope);
    for scope in std::iter::once(at).chain(inner) {
        for &mode in modes_below(scope) {
            for mfa in [false, true] {
                let missing =
                    confers(role, scope, mode, mfa) & !powers(&actor.bindings, scope, mode, mfa);
                if let Some(action) = Action::ALL.into_iter().find(|a| missing & a.bit() != 0) {
                    return Some(Gap {
                        action,
                        scope: scope.clone(),
                        mode,
                        mfa,
                    });
                }
            }
        }
    }
    None
}

/// Whether the actor could grant `b` (a binding of `subject`, visible to
/// the actor).
fn could_grant(actor: &Principal, subject: &Member, b: &Binding) -> Result<(), ManageDenial> {
    check_authority(actor, grant_action(&b.role), &b.scope).map_err(|e| {
        e.within(|| {
            format!(
                "{} holds a binding at {} that you could not grant",
                subject.id, b.scope
            )
        })
    })?;
    if let Some(gap) = gap(actor, &b.role, &b.scope) {
        return Err(gap.denial(
            actor,
            format!(
                "{} holds {}, which you do not hold there",
                subject.id,
                gap.what()
            ),
            "",
        ));
    }
    Ok(())
}

/// "`actor` manages `subject` at `at`" (module documentation).
fn check_manages(actor: &Principal, subject: &Member, at: &Scope) -> Result<(), ManageDenial> {
    if actor.id == subject.id {
        return Ok(());
    }
    for b in subject
        .bindings
        .iter()
        .filter(|b| overlaps(&b.scope, at) && sees(actor, b))
    {
        could_grant(actor, subject, b)?;
    }
    Ok(())
}

/// The organization's scope, after `role.manage` there.
fn org_scope(actor: &Principal, org: &ScopePath) -> Result<Scope, ManageDenial> {
    let at = Scope::Path(org.clone());
    check_authority(actor, Action::RoleManage, &at)
        .map_err(|e| e.within(|| format!("managing the roles of {org} needs role.manage there")))?;
    if org.kind() != ScopeKind::Organization {
        return Err(ManageDenial::forbidden(
            format!(
                "custom roles belong to an organization, and {org} is a {}",
                org.kind().as_str()
            ),
            Some(at),
        ));
    }
    Ok(at)
}

/// Whether `b` is a binding of custom role `name` of organization `org`.
fn binds_role(b: &Binding, org: &ScopePath, name: &str) -> bool {
    b.role.name() == name && b.scope.org() == Some(org.org())
}

/// Whether changing a role from `old` to `new` (`None`: no role, which
/// grants nothing) takes anything away from its holders, and whether it
/// weakens a deny.
fn change_effects(old: Option<&Role>, new: Option<&Role>) -> (bool, bool) {
    let masks = |r: Option<&Role>, mode, mfa| r.map_or((0, 0), |r| r.masks_for(mode, mfa));
    let (mut restricts, mut weakens) = (false, false);
    for mode in ANY_MODE {
        for mfa in [false, true] {
            let (old_allow, old_deny) = masks(old, mode, mfa);
            let (new_allow, new_deny) = masks(new, mode, mfa);
            let (old_net, new_net) = (old_allow & !old_deny, new_allow & !new_deny);
            restricts |= old_net & !new_net != 0 || new_deny & !old_deny != 0;
            weakens |= old_deny & !new_deny != 0;
        }
    }
    (restricts, weakens)
}

/// The checks shared by applying and deleting a role: the actor holds what
/// the old version confers, and a change that takes anything away or lifts
/// a deny needs managing every holder and not being restricted by it.
fn check_role_change(
    actor: &Principal,
    org: &ScopePath,
    at: &Scope,
    name: &str,
    old: Option<&Role>,
    new: Option<&Role>,
    holders: &[Member],
) -> Result<(), ManageDenial> {
    if let Some(old) = old
        && let Some(gap) = gap(actor, old, at)
    {
        return Err(gap.denial(
            actor,
            format!(
                "role `{name}` now allows {}, which you do not hold there",
                gap.what()
            ),
            "; you can only change roles that allow only what you hold",
        ));
    }
    let (restricts, weakens) = change_effects(old, new);
    let verb = if new.is_some() {
        "changing"
    } else {
        "deleting"
    };
    if weakens {
        let own = actor
            .bindings
            .iter()
            .find(|b| binds_role(b, org, name))
            .map(|b| b.scope.clone())
            .or_else(|| holders.iter().any(|h| h.id == actor.id).then(|| at.clone()));
        if let Some(scope) = own {
            return Err(ManageDenial::forbidden(
                format!(
                    "{verb} role `{name}` lifts deny rules that restrict you (you hold it at {scope}); \
                     a deny is never lifted by a principal it restricts"
                ),
                Some(scope),
            ));
        }
    }
    if restricts || weakens {
        for h in holders {
            for b in h.bindings.iter().filter(|b| binds_role(b, org, name)) {
                check_manages(actor, h, &b.scope).map_err(|e| {
                    e.within(|| {
                        format!(
                            "{verb} role `{name}` changes what {} may do at {}, which needs managing {} there",
                            h.id, b.scope, h.id
                        )
                    })
                })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
