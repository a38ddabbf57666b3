//! Property tests of the management rules (`warden_policies::manage`).
//!
//! A world is three organizations with a fixed tree of projects,
//! environments (one per mode) and a service; the built-in roles and random
//! custom roles of each organization (allow and deny rules, `env_mode` and
//! `mfa` conditions); `user:root` holding `owner` at `/`; and a few random
//! principals homed at the root or in an organization, with random bindings
//! (including deny bindings on owners and on root, as a store written
//! before these rules could hold). Random actors, in sessions with or
//! without MFA, attempt random sequences of grants, revokes (sometimes
//! asking for break-glass), role applies and role deletes; only what the
//! rules allow is applied (and, like storage, the last `owner` at `/` is
//! kept). Powers are read with `authorize` over every resource of the tree
//! with its real mode, every action and both MFA values.
//!
//! Properties:
//!
//! - (a) an operation allowed by the rules that takes a power (action,
//!   resource, MFA) from a principal was made by an actor who held, at that
//!   resource and under both MFA values, everything that principal held
//!   there (it could manage it); break-glass is only ever used by a root
//!   Owner;
//! - (b) an operation allowed by the rules never gives a principal a power
//!   (action, resource, MFA) that its actor did not hold itself before;
//! - (c) after every step, every root Owner may break-glass revoke every
//!   binding, and doing so for its own deny bindings gives it every power;
//!   some root Owner always remains;
//! - (d) a principal's organization-level bindings never change a decision
//!   at a root-scope resource (`authorize` at `/`, break-glass); in an
//!   operation on a binding at `/` or acting for a principal homed at `/`,
//!   they change the outcome only through a check inside their
//!   organization, which the refusal names;
//! - (e) decisions about a subject (visibility, acting for it, granting to
//!   it, revoking its bindings) never depend on its bindings or home in
//!   organizations where the actor holds no binding: the answers are equal,
//!   word for word.

// Helpers outside #[test] functions fail the way tests do: by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::sync::Arc;
use warden_policies::{
    Action, Binding, ManageDenial, Member, Principal, Resource, Role, Sanction, Scope, authorize,
    builtin_role, is_root_owner, keeps_a_root_owner, may_act_for, may_apply_role, may_delete_role,
    may_grant, may_revoke, visible_to,
};
use warden_types::{EnvMode, ScopePath};

// ---------------------------------------------------------------------------
// The resource tree.

const ORGS: [&str; 3] = ["a", "b", "c"];
/// Below each organization: the path and the mode of its environment.
const BELOW: [(&str, Option<EnvMode>); 6] = [
    ("p", None),
    ("q", None),
    ("p/prod", Some(EnvMode::Production)),
    ("p/dev", Some(EnvMode::Development)),
    ("q/stg", Some(EnvMode::Staging)),
    ("p/prod/api", Some(EnvMode::Production)),
];
const PER_ORG: usize = 1 + BELOW.len();
const RESOURCES: usize = 1 + ORGS.len() * PER_ORG;

/// Resource 0 is `/`; organization `o`'s resources are
/// `1 + o * PER_ORG ..` (the organization itself first).
fn resources() -> Vec<Resource> {
    let mut out = vec![Resource::root()];
    for o in ORGS {
        out.push(Resource::at(ScopePath::parse(o).unwrap(), None));
        for (below, mode) in BELOW {
            out.push(Resource::at(
                ScopePath::parse(&format!("{o}/{below}")).unwrap(),
                mode,
            ));
        }
    }
    assert_eq!(out.len(), RESOURCES);
    out
}

fn in_org(org: usize, k: usize) -> usize {
    1 + org * PER_ORG + k
}

/// The organization of resource `i`, `None` for `/`.
fn org_of(i: usize) -> Option<usize> {
    (i > 0).then(|| (i - 1) / PER_ORG)
}

fn bit(a: Action) -> u32 {
    1 << (a as u32)
}

// ---------------------------------------------------------------------------
// Roles.

const BUILTINS: [&str; 4] = ["owner", "admin", "developer", "viewer"];

#[derive(Debug, Clone)]
struct RuleSpec {
    deny: bool,
    perms: Vec<&'static str>,
    modes: Option<Vec<EnvMode>>,
    mfa: Option<bool>,
}

#[derive(Debug, Clone)]
struct RoleSpec {
    rules: Vec<RuleSpec>,
}

fn yaml(name: &str, spec: &RoleSpec) -> String {
    let mut s = format!("name: {name}\nrules:\n");
    for r in &spec.rules {
        let list: Vec<String> = r.perms.iter().map(|p| format!("'{p}'")).collect();
        let key = if r.deny { "deny" } else { "allow" };
        s.push_str(&format!("  - {key}: [{}]\n", list.join(", ")));
        if r.modes.is_some() || r.mfa.is_some() {
            s.push_str("    when:\n");
            if let Some(modes) = &r.modes {
                let names: Vec<&str> = modes.iter().map(|m| m.as_str()).collect();
                s.push_str(&format!("      env_mode: [{}]\n", names.join(", ")));
            }
            if let Some(mfa) = r.mfa {
                s.push_str(&format!("      mfa: {mfa}\n"));
            }
        }
    }
    s
}

fn compile(name: &str, spec: &RoleSpec) -> Arc<Role> {
    let text = yaml(name, spec);
    Arc::new(Role::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}")))
}

/// Permissions, weighted towards the ones management turns on.
fn perm() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        3 => Just("member.manage"),
        2 => Just("role.manage"),
        1 => Just("ownership.transfer"),
        2 => Just("secret.read"),
        1 => Just("secret.list"),
        1 => Just("env.read"),
        1 => Just("deploy.run"),
        1 => Just("secret.*"),
        1 => Just("member.*"),
        1 => Just("*"),
    ]
}

fn rule(deny_weight: f64) -> impl Strategy<Value = RuleSpec> {
    let modes = vec![EnvMode::Development, EnvMode::Staging, EnvMode::Production];
    (
        prop::bool::weighted(deny_weight),
        prop::collection::vec(perm(), 1..4),
        prop::option::weighted(0.45, prop::sample::subsequence(modes, 1..=3)),
        prop::option::weighted(0.35, any::<bool>()),
    )
        .prop_map(|(deny, perms, modes, mfa)| RuleSpec {
            deny,
            perms,
            modes,
            mfa,
        })
}

fn role_spec() -> impl Strategy<Value = RoleSpec> {
    prop_oneof![
        4 => prop::collection::vec(rule(0.3), 1..4),
        1 => prop::collection::vec(rule(1.0), 1..3),
    ]
    .prop_map(|rules| RoleSpec { rules })
}

// ---------------------------------------------------------------------------
// The world.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoleId {
    Builtin(usize),
    Custom(usize),
}

#[derive(Debug, Clone)]
struct Custom {
    org: usize,
    name: String,
    spec: RoleSpec,
    role: Arc<Role>,
}

#[derive(Debug, Clone)]
struct Who {
    id: String,
    home: Option<usize>,
    /// (role, resource index of the scope)
    bindings: Vec<(RoleId, usize)>,
}

#[derive(Debug, Clone)]
struct World {
    customs: Vec<Option<Custom>>,
    who: Vec<Who>,
}

impl World {
    fn role(&self, id: RoleId) -> Option<Arc<Role>> {
        match id {
            RoleId::Builtin(i) => builtin_role(BUILTINS[i]),
            RoleId::Custom(i) => self.customs[i].as_ref().map(|c| Arc::clone(&c.role)),
        }
    }

    fn binding(&self, (role, at): (RoleId, usize), res: &[Resource]) -> Option<Binding> {
        Some(Binding {
            role: self.role(role)?,
            scope: res[at].scope.clone(),
        })
    }

    fn bindings(&self, i: usize, res: &[Resource]) -> Vec<Binding> {
        self.who[i]
            .bindings
            .iter()
            .filter_map(|b| self.binding(*b, res))
            .collect()
    }

    fn member(&self, i: usize, res: &[Resource]) -> Member {
        Member {
            id: self.who[i].id.clone(),
            home: self.who[i].home.map(|o| ORGS[o].to_owned()),
            bindings: self.bindings(i, res),
        }
    }

    fn principal(&self, i: usize, mfa: bool, res: &[Resource]) -> Principal {
        Principal {
            id: self.who[i].id.clone(),
            bindings: self.bindings(i, res),
            mfa,
        }
    }

    fn holders(&self, role: usize, res: &[Resource]) -> Vec<Member> {
        (0..self.who.len())
            .filter(|&i| {
                self.who[i]
                    .bindings
                    .iter()
                    .any(|(r, _)| *r == RoleId::Custom(role))
            })
            .map(|i| self.member(i, res))
            .collect()
    }

    fn members(&self, res: &[Resource]) -> Vec<Member> {
        (0..self.who.len()).map(|i| self.member(i, res)).collect()
    }
}

/// Powers: `[principal][resource][mfa]` as action masks, read with
/// `authorize`.
type Table = Vec<Vec<[u32; 2]>>;

fn powers_of(bindings: &[Binding], res: &[Resource]) -> Vec<[u32; 2]> {
    res.iter()
        .map(|r| {
            let mut out = [0u32; 2];
            for (m, slot) in out.iter_mut().enumerate() {
                let p = Principal {
                    id: "user:probe".into(),
                    bindings: bindings.to_vec(),
                    mfa: m == 1,
                };
                for a in Action::ALL {
                    if authorize(&p, a, r).is_allow() {
                        *slot |= bit(a);
                    }
                }
            }
            out
        })
        .collect()
}

fn table(w: &World, res: &[Resource]) -> Table {
    (0..w.who.len())
        .map(|i| powers_of(&w.bindings(i, res), res))
        .collect()
}

#[derive(Debug, Clone)]
struct WhoSpec {
    home: Option<usize>,
    /// (builtin?, role pick, scope pick)
    bindings: Vec<(bool, prop::sample::Index, prop::sample::Index)>,
}

fn who_spec() -> impl Strategy<Value = WhoSpec> {
    (
        prop::option::weighted(0.8, 0..ORGS.len()),
        prop::collection::vec(
            (
                prop::bool::weighted(0.6),
                any::<prop::sample::Index>(),
                any::<prop::sample::Index>(),
            ),
            0..4,
        ),
    )
        .prop_map(|(home, bindings)| WhoSpec { home, bindings })
}

#[derive(Debug, Clone)]
struct WorldSpec {
    customs: Vec<(usize, RoleSpec)>,
    who: Vec<WhoSpec>,
    /// Bindings given to `user:root` besides `owner` at `/`.
    root_extra: Vec<(prop::sample::Index, prop::sample::Index)>,
}

fn world_spec() -> impl Strategy<Value = WorldSpec> {
    (
        prop::collection::vec((0..ORGS.len(), role_spec()), 2..6),
        prop::collection::vec(who_spec(), 3..6),
        prop::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
            0..3,
        ),
    )
        .prop_map(|(customs, who, root_extra)| WorldSpec {
            customs,
            who,
            root_extra,
        })
}

/// A built-in role, weighted towards the ones that manage.
fn pick_builtin(i: prop::sample::Index) -> usize {
    // owner 2, admin 3, developer 2, viewer 2
    [0, 0, 1, 1, 1, 2, 2, 3, 3][i.index(9)]
}

/// A binding: a built-in role anywhere (rarely at `/`), a custom role
/// inside its organization.
fn pick_binding(
    w: &World,
    builtin: bool,
    role: prop::sample::Index,
    scope: prop::sample::Index,
) -> Option<(RoleId, usize)> {
    if builtin || w.customs.is_empty() {
        let r = pick_builtin(role);
        let s = scope.index(RESOURCES * 4);
        // `/` one time in 16 or so; otherwise anywhere below.
        let at = if s < 5 { 0 } else { 1 + s % (RESOURCES - 1) };
        Some((RoleId::Builtin(r), at))
    } else {
        let i = role.index(w.customs.len());
        let c = w.customs[i].as_ref()?;
        Some((RoleId::Custom(i), in_org(c.org, scope.index(PER_ORG))))
    }
}

fn build(spec: &WorldSpec) -> World {
    let customs = spec
        .customs
        .iter()
        .enumerate()
        .map(|(i, (org, s))| {
            let name = format!("r{i}");
            Some(Custom {
                org: *org,
                role: compile(&name, s),
                name,
                spec: s.clone(),
            })
        })
        .collect();
    let mut w = World {
        customs,
        who: vec![Who {
            id: "user:root".into(),
            home: None,
            bindings: vec![(RoleId::Builtin(0), 0)],
        }],
    };
    // A store written before these rules: deny bindings on `user:root`.
    let denying: Vec<usize> = (0..w.customs.len())
        .filter(|&i| {
            w.customs[i]
                .as_ref()
                .is_some_and(|c| c.role.has_deny_rules())
        })
        .collect();
    for (role, scope) in &spec.root_extra {
        let Some(&i) = denying.get(role.index(denying.len().max(1))) else {
            break;
        };
        let org = w.customs[i].as_ref().map_or(0, |c| c.org);
        let b = (RoleId::Custom(i), in_org(org, scope.index(PER_ORG)));
        if !w.who[0].bindings.contains(&b) {
            w.who[0].bindings.push(b);
        }
    }
    for (n, s) in spec.who.iter().enumerate() {
        let mut who = Who {
            id: format!("user:u{n}"),
            home: s.home,
            bindings: vec![],
        };
        for (builtin, role, scope) in &s.bindings {
            if let Some(b) = pick_binding(&w, *builtin, *role, *scope)
                && !who.bindings.contains(&b)
            {
                who.bindings.push(b);
            }
        }
        w.who.push(who);
    }
    w
}

// ---------------------------------------------------------------------------
// Operations.

#[derive(Debug, Clone)]
enum Edit {
    Replace(RoleSpec),
    DropRule(prop::sample::Index),
    AddRule(RuleSpec),
}

#[derive(Debug, Clone)]
enum Op {
    Grant {
        builtin: bool,
        role: prop::sample::Index,
        scope: prop::sample::Index,
        subject: prop::sample::Index,
    },
    Revoke {
        subject: prop::sample::Index,
        binding: prop::sample::Index,
        break_glass: bool,
    },
    Apply {
        role: prop::sample::Index,
        edit: Edit,
    },
    /// Apply a new role (no previous version) in an organization.
    Create {
        org: usize,
        spec: RoleSpec,
    },
    Delete {
        role: prop::sample::Index,
    },
}

#[derive(Debug, Clone)]
struct Attempt {
    /// `None`: `user:root`, which acts often.
    actor: Option<prop::sample::Index>,
    mfa: bool,
    op: Op,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => role_spec().prop_map(Edit::Replace),
        2 => any::<prop::sample::Index>().prop_map(Edit::DropRule),
        2 => rule(0.5).prop_map(Edit::AddRule),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let idx = any::<prop::sample::Index>;
    prop_oneof![
        5 => (any::<bool>(), idx(), idx(), idx()).prop_map(|(builtin, role, scope, subject)| Op::Grant { builtin, role, scope, subject }),
        4 => (idx(), idx(), prop::bool::weighted(0.5)).prop_map(|(subject, binding, break_glass)| Op::Revoke { subject, binding, break_glass }),
        3 => (idx(), edit()).prop_map(|(role, edit)| Op::Apply { role, edit }),
        1 => (0..ORGS.len(), role_spec()).prop_map(|(org, spec)| Op::Create { org, spec }),
        1 => idx().prop_map(|role| Op::Delete { role }),
    ]
}

fn attempt() -> impl Strategy<Value = Attempt> {
    (
        prop::option::weighted(0.75, any::<prop::sample::Index>()),
        any::<bool>(),
        op(),
    )
        .prop_map(|(actor, mfa, op)| Attempt { actor, mfa, op })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Grant,
    Revoke,
    Apply,
    Delete,
}

/// How often each thing happened, to show the properties were exercised.
#[derive(Debug, Default, Clone)]
struct Stats {
    allowed: [usize; 4],
    forbidden: [usize; 4],
    not_found: [usize; 4],
    break_glass: usize,
    deny_lifted_by_rules: usize,
    deny_granted_by_rules: usize,
    powers_taken: usize,
    powers_given: usize,
    last_owner_kept: usize,
    break_glass_applied: usize,
}

impl Stats {
    fn count(&mut self, kind: Kind, r: &Result<Sanction, ManageDenial>) {
        let k = kind as usize;
        match r {
            Ok(Sanction::ByRules) => self.allowed[k] += 1,
            Ok(Sanction::ByBreakGlass) => self.break_glass += 1,
            Err(d) if d.not_found => self.not_found[k] += 1,
            Err(_) => self.forbidden[k] += 1,
        }
    }
}

/// What an allowed attempt did, for the checks.
struct Done {
    actor: usize,
    allowed: Sanction,
    /// Whether the actor held `owner` at `/` before the operation.
    was_root_owner: bool,
}

fn role_with_edit(c: &Custom, edit: &Edit) -> RoleSpec {
    let mut spec = c.spec.clone();
    match edit {
        Edit::Replace(s) => spec = s.clone(),
        Edit::DropRule(i) if spec.rules.len() > 1 => {
            spec.rules.remove(i.index(spec.rules.len()));
        }
        Edit::DropRule(_) => {}
        Edit::AddRule(r) => spec.rules.push(r.clone()),
    }
    spec
}

/// Attempts `a`; applies it when the rules allow it. `None` when the attempt
/// made no sense in this world (nothing to revoke, a duplicate binding).
fn attempt_once(w: &mut World, a: &Attempt, res: &[Resource], stats: &mut Stats) -> Option<Done> {
    let n = w.who.len();
    let ai = a.actor.map_or(0, |i| i.index(n));
    let actor = w.principal(ai, a.mfa, res);
    let was_root_owner = is_root_owner(&actor.bindings);
    let (kind, result) = match &a.op {
        Op::Grant {
            builtin,
            role,
            scope,
            subject,
        } => {
            let si = subject.index(n);
            let b = pick_binding(w, *builtin, *role, *scope)?;
            if w.who[si].bindings.contains(&b) {
                return None;
            }
            let binding = w.binding(b, res)?;
            let r = may_grant(&actor, &w.member(si, res), &binding);
            if r.is_ok() {
                if binding.role.has_deny_rules() {
                    stats.deny_granted_by_rules += 1;
                }
                w.who[si].bindings.push(b);
            }
            (Kind::Grant, r)
        }
        Op::Revoke {
            subject,
            binding,
            break_glass,
        } => {
            let si = subject.index(n);
            if w.who[si].bindings.is_empty() {
                return None;
            }
            let bi = binding.index(w.who[si].bindings.len());
            let b = w.who[si].bindings[bi];
            let bound = w.binding(b, res)?;
            let r = may_revoke(&actor, &w.member(si, res), &bound, *break_glass);
            if r.is_ok() {
                if b == (RoleId::Builtin(0), 0)
                    && !keeps_a_root_owner(&w.members(res), &w.who[si].id)
                {
                    // Storage refuses: the last Owner at `/` stays.
                    stats.last_owner_kept += 1;
                    return None;
                }
                if r == Ok(Sanction::ByRules) && bound.role.has_deny_rules() {
                    stats.deny_lifted_by_rules += 1;
                }
                w.who[si].bindings.remove(bi);
            }
            (Kind::Revoke, r)
        }
        Op::Apply { role, edit } => {
            if w.customs.is_empty() {
                return None;
            }
            let ri = role.index(w.customs.len());
            let c = w.customs[ri].clone()?;
            let spec = role_with_edit(&c, edit);
            let new = compile(&c.name, &spec);
            let org = ScopePath::parse(ORGS[c.org]).unwrap();
            let r = may_apply_role(&actor, &org, Some(&c.role), &new, &w.holders(ri, res));
            if r.is_ok() {
                w.customs[ri] = Some(Custom {
                    spec,
                    role: new,
                    ..c
                });
            }
            (Kind::Apply, r)
        }
        Op::Create { org, spec } => {
            let name = format!("r{}", w.customs.len());
            let new = compile(&name, spec);
            let path = ScopePath::parse(ORGS[*org]).unwrap();
            let r = may_apply_role(&actor, &path, None, &new, &[]);
            if r.is_ok() {
                w.customs.push(Some(Custom {
                    org: *org,
                    name,
                    spec: spec.clone(),
                    role: new,
                }));
            }
            (Kind::Apply, r)
        }
        Op::Delete { role } => {
            if w.customs.is_empty() {
                return None;
            }
            let ri = role.index(w.customs.len());
            let c = w.customs[ri].clone()?;
            let org = ScopePath::parse(ORGS[c.org]).unwrap();
            let r = may_delete_role(&actor, &org, &c.role, &w.holders(ri, res));
            if r.is_ok() {
                w.customs[ri] = None;
                for who in &mut w.who {
                    who.bindings.retain(|(r, _)| *r != RoleId::Custom(ri));
                }
            }
            (Kind::Delete, r)
        }
    };
    stats.count(kind, &result);
    result.ok().map(|allowed| Done {
        actor: ai,
        allowed,
        was_root_owner,
    })
}

/// (a) and (b) for one applied operation.
fn check_step(
    w: &World,
    done: &Done,
    before: &Table,
    after: &Table,
    stats: &mut Stats,
) -> Result<(), TestCaseError> {
    let a = done.actor;
    if done.allowed == Sanction::ByBreakGlass {
        // Break-glass is the documented exception to (a) and (b), and only
        // root Owners have it.
        prop_assert!(
            done.was_root_owner,
            "break-glass by {}, who is no root Owner",
            w.who[a].id
        );
        stats.break_glass_applied += 1;
        return Ok(());
    }
    for s in 0..before.len() {
        for r in 0..RESOURCES {
            for m in 0..2 {
                let lost = before[s][r][m] & !after[s][r][m];
                let gained = after[s][r][m] & !before[s][r][m];
                if lost != 0 {
                    stats.powers_taken += 1;
                    for (m2, (theirs, mine)) in before[s][r].iter().zip(&before[a][r]).enumerate() {
                        let beyond = theirs & !mine;
                        prop_assert_eq!(
                            beyond,
                            0,
                            "(a) {} took powers from {} at resource {} (mfa={}) without holding all of theirs there (mfa={}): {:#x}",
                            w.who[a].id,
                            w.who[s].id,
                            r,
                            m,
                            m2,
                            beyond
                        );
                    }
                }
                if gained != 0 {
                    stats.powers_given += 1;
                    let beyond = gained & !before[a][r][m];
                    prop_assert_eq!(
                        beyond,
                        0,
                        "(b) {} gave {} powers at resource {} (mfa={}) it did not hold: {:#x}",
                        w.who[a].id,
                        w.who[s].id,
                        r,
                        m,
                        beyond
                    );
                }
            }
        }
    }
    Ok(())
}

/// (c): every root Owner may break-glass revoke every binding, and doing so
/// for its own deny bindings leaves it holding every power.
fn check_root_owners(w: &World, res: &[Resource]) -> Result<(), TestCaseError> {
    let members = w.members(res);
    let owners: Vec<usize> = (0..w.who.len())
        .filter(|&i| is_root_owner(&members[i].bindings))
        .collect();
    prop_assert!(!owners.is_empty(), "(c) no root Owner left");
    for &o in &owners {
        for mfa in [false, true] {
            let actor = w.principal(o, mfa, res);
            for m in &members {
                for b in &m.bindings {
                    let r = may_revoke(&actor, m, b, true);
                    prop_assert!(
                        r.is_ok(),
                        "(c) root Owner {} cannot break glass on {}'s `{}` at {}: {:?}",
                        actor.id,
                        m.id,
                        b.role.name(),
                        b.scope,
                        r
                    );
                }
            }
        }
        let mut cleared = w.clone();
        cleared.who[o]
            .bindings
            .retain(|b| w.role(b.0).is_some_and(|r| !r.has_deny_rules()));
        let full = powers_of(&cleared.bindings(o, res), res);
        for (r, masks) in full.iter().enumerate() {
            for mask in masks {
                let expected = (1u32 << Action::ALL.len()) - 1;
                let expected = if r == 0 {
                    expected
                } else {
                    expected & !bit(Action::SysSeal) & !bit(Action::ClusterManage)
                };
                prop_assert_eq!(
                    *mask,
                    expected,
                    "(c) root Owner not whole after break-glass at {}",
                    r
                );
            }
        }
    }
    Ok(())
}

fn run(spec: &WorldSpec, attempts: &[Attempt], stats: &mut Stats) -> Result<(), TestCaseError> {
    let res = resources();
    let mut w = build(spec);
    check_root_owners(&w, &res)?;
    let mut before = table(&w, &res);
    for a in attempts {
        let Some(done) = attempt_once(&mut w, a, &res, stats) else {
            continue;
        };
        let after = table(&w, &res);
        check_step(&w, &done, &before, &after, stats)?;
        check_root_owners(&w, &res)?;
        before = after;
    }
    Ok(())
}

fn sequences() -> impl Strategy<Value = (WorldSpec, Vec<Attempt>)> {
    (world_spec(), prop::collection::vec(attempt(), 8..24))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// (a), (b) and (c) over random sequences.
    #[test]
    fn sequences_never_escalate_nor_restrict_the_unmanaged((spec, attempts) in sequences()) {
        run(&spec, &attempts, &mut Stats::default())?;
    }
}

/// The sequences above really take powers away, give them, lift denies,
/// break glass and refuse in both ways: run a fixed sample and count.
#[test]
fn the_sequences_exercise_every_rule() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = sequences();
    let mut stats = Stats::default();
    for _ in 0..64 {
        let (spec, attempts) = strategy.new_tree(&mut runner).unwrap().current();
        run(&spec, &attempts, &mut stats).unwrap();
    }
    println!("{stats:#?}");
    for k in [Kind::Grant, Kind::Revoke, Kind::Apply, Kind::Delete] {
        let i = k as usize;
        assert!(stats.allowed[i] >= 5, "{k:?} rarely allowed: {stats:?}");
        assert!(stats.forbidden[i] >= 5, "{k:?} rarely forbidden: {stats:?}");
    }
    assert!(stats.not_found.iter().sum::<usize>() >= 5, "{stats:?}");
    assert!(stats.break_glass >= 5, "{stats:?}");
    assert!(stats.deny_lifted_by_rules >= 2, "{stats:?}");
    assert!(stats.deny_granted_by_rules >= 5, "{stats:?}");
    assert!(stats.powers_taken >= 20, "{stats:?}");
    assert!(stats.powers_given >= 20, "{stats:?}");
}

// ---------------------------------------------------------------------------
// (d) Organization-level bindings and the root.

/// A binding of a built-in role (or a custom one) inside an organization.
fn org_binding(
    w: &World,
    builtin: bool,
    role: prop::sample::Index,
    scope: prop::sample::Index,
) -> Option<(RoleId, usize)> {
    let (r, at) = pick_binding(w, builtin, role, scope)?;
    Some((r, if at == 0 { 1 } else { at }))
}

type Extra = Vec<(bool, prop::sample::Index, prop::sample::Index)>;

fn extra() -> impl Strategy<Value = Extra> {
    prop::collection::vec(
        (
            any::<bool>(),
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
        ),
        0..4,
    )
}

/// Whether an operation came out differently for two actors that differ
/// only in organization-level bindings, and if so, that the refusal names a
/// scope inside an organization.
fn differs_only_inside_orgs(
    what: &str,
    x: &Result<Sanction, ManageDenial>,
    y: &Result<Sanction, ManageDenial>,
) -> Result<(), TestCaseError> {
    if x.is_ok() != y.is_ok() {
        let refusal = x.as_ref().err().or(y.as_ref().err()).unwrap();
        prop_assert!(
            matches!(refusal.scope, Some(Scope::Path(_))),
            "(d) {}: org-level bindings changed the outcome at `/`: {:?} vs {:?}",
            what,
            x,
            y
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn org_bindings_never_decide_at_the_root(
        spec in world_spec(),
        actor in any::<prop::sample::Index>(),
        subject in any::<prop::sample::Index>(),
        role in 0..BUILTINS.len(),
        mfa in any::<bool>(),
        extra in extra(),
    ) {
        let res = resources();
        let w = build(&spec);
        let ai = actor.index(w.who.len());
        let si = subject.index(w.who.len());
        // Three versions of the actor: as it is, without its org-level
        // bindings, and with more of them.
        let mut variants = [w.clone(), w.clone(), w.clone()];
        variants[1].who[ai].bindings.retain(|(_, at)| *at == 0);
        for (b, r, s) in &extra {
            if let Some(bd) = org_binding(&w, *b, *r, *s)
                && !variants[2].who[ai].bindings.contains(&bd)
            {
                variants[2].who[ai].bindings.push(bd);
            }
        }
        let subject = w.member(si, &res);
        let actors: Vec<Principal> = variants.iter().map(|v| v.principal(ai, mfa, &res)).collect();
        // (d1) authorize at `/`, for every principal of the world too.
        for m in [false, true] {
            for mode in [None, Some(EnvMode::Production), Some(EnvMode::Staging), Some(EnvMode::Development)] {
                let at = Resource { scope: Scope::Root, mode };
                for a in Action::ALL {
                    let mut p = actors[0].clone();
                    p.mfa = m;
                    let expected = authorize(&p, a, &at).is_allow();
                    for v in &actors[1..] {
                        let mut q = v.clone();
                        q.mfa = m;
                        prop_assert_eq!(authorize(&q, a, &at).is_allow(), expected);
                    }
                }
            }
        }
        // (d2) break-glass eligibility.
        for v in &actors[1..] {
            prop_assert_eq!(is_root_owner(&v.bindings), is_root_owner(&actors[0].bindings));
        }
        // (d3) operations on bindings at `/`, acting for root-homed principals.
        let at_root = Binding { role: builtin_role(BUILTINS[role]).unwrap(), scope: Scope::Root };
        let grant: Vec<_> = actors.iter().map(|a| may_grant(a, &subject, &at_root)).collect();
        let act: Vec<_> = actors.iter().map(|a| may_act_for(a, &subject)).collect();
        for i in 1..actors.len() {
            differs_only_inside_orgs("grant at /", &grant[0], &grant[i])?;
            if subject.home.is_none() {
                differs_only_inside_orgs("act for a root-homed principal", &act[0], &act[i])?;
            }
        }
        for b in subject.bindings.iter().filter(|b| b.scope == Scope::Root) {
            let rules: Vec<_> = actors.iter().map(|a| may_revoke(a, &subject, b, false)).collect();
            let glass: Vec<_> = actors.iter().map(|a| may_revoke(a, &subject, b, true)).collect();
            for i in 1..actors.len() {
                differs_only_inside_orgs("revoke at /", &rules[0], &rules[i])?;
                if is_root_owner(&actors[0].bindings) {
                    prop_assert!(glass[i].is_ok() && glass[0].is_ok());
                } else {
                    differs_only_inside_orgs("break-glass revoke at /", &glass[0], &glass[i])?;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// (e) Nothing outside the actor's organizations decides or shows.

/// Organizations where the actor holds no binding (none if it holds one at
/// `/`).
fn foreign_orgs(actor: &Principal) -> Vec<usize> {
    (0..ORGS.len())
        .filter(|&o| !actor.has_binding_in_org(ORGS[o]))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn other_tenants_never_decide_nor_show(
        spec in world_spec(),
        actor in any::<prop::sample::Index>(),
        subject in any::<prop::sample::Index>(),
        mfa in any::<bool>(),
        noise in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..4),
        new_home in any::<prop::sample::Index>(),
        grants in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..4),
    ) {
        let res = resources();
        let w = build(&spec);
        let ai = actor.index(w.who.len());
        let si = subject.index(w.who.len());
        prop_assume!(ai != si);
        let actor = w.principal(ai, mfa, &res);
        let foreign = foreign_orgs(&actor);
        prop_assume!(!foreign.is_empty());
        let is_foreign = |at: usize| org_of(at).is_some_and(|o| foreign.contains(&o));
        // The subject as it is, and with other bindings in foreign
        // organizations and possibly another foreign home.
        let mut other = w.clone();
        other.who[si].bindings.retain(|(_, at)| !is_foreign(*at));
        for (b, r, s, o) in &noise {
            let o = foreign[o.index(foreign.len())];
            let role = if *b || w.customs.is_empty() {
                Some(RoleId::Builtin(pick_builtin(*r)))
            } else {
                let i = r.index(w.customs.len());
                w.customs[i].as_ref().filter(|c| c.org == o).map(|_| RoleId::Custom(i))
            };
            if let Some(role) = role {
                let bd = (role, in_org(o, s.index(PER_ORG)));
                if !other.who[si].bindings.contains(&bd) {
                    other.who[si].bindings.push(bd);
                }
            }
        }
        let home_foreign = match w.who[si].home {
            Some(o) => foreign.contains(&o),
            None => !actor.bindings.iter().any(|b| b.scope == Scope::Root),
        };
        if home_foreign {
            // Another foreign home, or the root if that is foreign too.
            let mut homes: Vec<Option<usize>> = foreign.iter().map(|&o| Some(o)).collect();
            if !actor.bindings.iter().any(|b| b.scope == Scope::Root) {
                homes.push(None);
            }
            other.who[si].home = homes[new_home.index(homes.len())];
        }
        let s1 = w.member(si, &res);
        let s2 = other.member(si, &res);
        prop_assert_eq!(visible_to(&actor, &s1), visible_to(&actor, &s2));
        prop_assert_eq!(may_act_for(&actor, &s1), may_act_for(&actor, &s2));
        for (b, r, s) in &grants {
            if let Some(bd) = pick_binding(&w, *b, *r, *s).and_then(|bd| w.binding(bd, &res)) {
                prop_assert_eq!(may_grant(&actor, &s1, &bd), may_grant(&actor, &s2, &bd));
            }
        }
        for (i, bd) in w.who[si].bindings.iter().enumerate() {
            if is_foreign(bd.1) {
                continue;
            }
            let Some(bd) = w.binding(*bd, &res) else { continue };
            for glass in [false, true] {
                prop_assert_eq!(
                    may_revoke(&actor, &s1, &bd, glass),
                    may_revoke(&actor, &s2, &bd, glass),
                    "binding {}", i
                );
            }
        }
    }
}
