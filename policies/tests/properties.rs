//! Property tests: random role sets, bindings and requests checked against a
//! direct reading of the rules, and `Role::parse` never panicking.

// Helpers outside #[test] functions fail the way tests do: by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use std::sync::Arc;
use warden_policies::{
    Action, Binding, Decision, Effect, Principal, Resource, Role, Scope, authorize,
};
use warden_types::{EnvMode, ScopePath};

const MODES: [EnvMode; 3] = [EnvMode::Production, EnvMode::Staging, EnvMode::Development];
const RESOURCES: [&str; 11] = [
    "secret",
    "shell",
    "deploy",
    "audit",
    "env",
    "member",
    "role",
    "key",
    "workload",
    "ownership",
    "sys",
];

#[derive(Debug, Clone)]
struct RuleSpec {
    allow: bool,
    patterns: Vec<String>,
    env_modes: Option<Vec<EnvMode>>,
    mfa: Option<bool>,
}

impl RuleSpec {
    fn matches(&self, action: Action) -> bool {
        self.patterns.iter().any(|p| pattern_matches(p, action))
    }

    fn holds(&self, mode: Option<EnvMode>, mfa: bool) -> bool {
        let mode_ok = match &self.env_modes {
            None => true,
            Some(list) => mode.is_some_and(|m| list.contains(&m)),
        };
        mode_ok && self.mfa.is_none_or(|want| want == mfa)
    }
}

fn pattern_matches(pattern: &str, action: Action) -> bool {
    pattern == "*"
        || pattern == action.as_str()
        || pattern
            .strip_suffix(".*")
            .is_some_and(|r| r == action.resource())
}

#[derive(Debug, Clone)]
struct RoleSpec {
    rules: Vec<RuleSpec>,
}

fn yaml(name: &str, spec: &RoleSpec) -> String {
    let mut s = format!("name: {name}\ndescription: generated\nrules:\n");
    for r in &spec.rules {
        let list: Vec<String> = r.patterns.iter().map(|p| format!("'{p}'")).collect();
        let key = if r.allow { "allow" } else { "deny" };
        s.push_str(&format!("  - {key}: [{}]\n", list.join(", ")));
        if r.env_modes.is_some() || r.mfa.is_some() {
            s.push_str("    when:\n");
            if let Some(modes) = &r.env_modes {
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

fn compile(specs: &[RoleSpec]) -> Vec<Arc<Role>> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let text = yaml(&format!("r{i}"), spec);
            Arc::new(Role::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}")))
        })
        .collect()
}

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(Action::ALL.to_vec()).prop_map(|a| a.as_str().to_owned()),
        2 => prop::sample::select(RESOURCES.to_vec()).prop_map(|r| format!("{r}.*")),
        1 => Just("*".to_owned()),
    ]
}

fn rule(allow_weight: u32) -> impl Strategy<Value = RuleSpec> {
    (
        prop::bool::weighted(f64::from(allow_weight) / 10.0),
        prop::collection::vec(pattern(), 1..4),
        prop::option::of(prop::sample::subsequence(MODES.to_vec(), 1..=3)),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(allow, patterns, env_modes, mfa)| RuleSpec {
            allow,
            patterns,
            env_modes,
            mfa,
        })
}

fn role_spec() -> impl Strategy<Value = RoleSpec> {
    prop::collection::vec(rule(7), 1..5).prop_map(|rules| RoleSpec { rules })
}

/// A scope from a small alphabet, so that bindings and requests overlap.
fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        1 => Just(Scope::Root),
        8 => (
            1usize..=4,
            prop::sample::select(vec!["a", "b"]),
            prop::sample::select(vec!["p", "q"]),
            prop::sample::select(vec!["e", "f"]),
            prop::sample::select(vec!["s", "t"]),
        )
            .prop_map(|(depth, o, p, e, s)| {
                let path = [o, p, e, s][..depth].join("/");
                Scope::Path(ScopePath::parse(&path).unwrap())
            }),
    ]
}

#[derive(Debug, Clone)]
struct Request {
    action: Action,
    resource: Resource,
    mfa: bool,
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::sample::select(Action::ALL.to_vec()),
        scope(),
        prop::option::of(prop::sample::select(MODES.to_vec())),
        any::<bool>(),
    )
        .prop_map(|(action, scope, mode, mfa)| Request {
            action,
            resource: Resource { scope, mode },
            mfa,
        })
}

#[derive(Debug, Clone)]
struct World {
    roles: Vec<RoleSpec>,
    /// (role index, scope)
    bindings: Vec<(usize, Scope)>,
    requests: Vec<Request>,
}

fn world() -> impl Strategy<Value = World> {
    prop::collection::vec(role_spec(), 1..5).prop_flat_map(|roles| {
        let n = roles.len();
        (
            Just(roles),
            prop::collection::vec((0..n, scope()), 0..7),
            prop::collection::vec(request(), 1..12),
        )
            .prop_map(|(roles, bindings, requests)| World {
                roles,
                bindings,
                requests,
            })
    })
}

fn principal(compiled: &[Arc<Role>], bindings: &[(usize, Scope)], mfa: bool) -> Principal {
    Principal {
        id: "user:prop".into(),
        bindings: bindings
            .iter()
            .map(|(i, s)| Binding {
                role: Arc::clone(&compiled[*i]),
                scope: s.clone(),
            })
            .collect(),
        mfa,
    }
}

/// Whether some applicable binding has a matching rule of the given effect
/// whose condition holds.
fn any_rule(w: &World, bindings: &[(usize, Scope)], req: &Request, allow: bool) -> bool {
    bindings.iter().any(|(i, s)| {
        s.contains(&req.resource.scope)
            && w.roles[*i].rules.iter().any(|r| {
                r.allow == allow && r.matches(req.action) && r.holds(req.resource.mode, req.mfa)
            })
    })
}

fn expected_allow(w: &World, bindings: &[(usize, Scope)], req: &Request) -> bool {
    let root_ok = !req.action.root_only() || req.resource.scope == Scope::Root;
    root_ok && !any_rule(w, bindings, req, false) && any_rule(w, bindings, req, true)
}

fn decide(compiled: &[Arc<Role>], bindings: &[(usize, Scope)], req: &Request) -> Decision {
    authorize(
        &principal(compiled, bindings, req.mfa),
        req.action,
        &req.resource,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// (a) an allow names an applicable binding whose role has a matching
    /// allow rule whose condition holds; (b) a matching deny always denies,
    /// and an explicit denial names such a deny rule. The decision equals the
    /// direct reading of the rules.
    #[test]
    fn decisions_follow_the_rules(w in world()) {
        let compiled = compile(&w.roles);
        for req in &w.requests {
            let decision = decide(&compiled, &w.bindings, req);
            prop_assert_eq!(decision.is_allow(), expected_allow(&w, &w.bindings, req), "{:?} {:?}", req, decision);
            match &decision {
                Decision::Allow(permit) => {
                    let e = permit.explanation();
                    prop_assert_eq!(e.effect, Effect::Allow);
                    prop_assert_eq!(permit.action(), req.action);
                    prop_assert_eq!(permit.scope(), &req.resource.scope);
                    let named = w.bindings.iter().any(|(i, s)| {
                        let rules = &w.roles[*i].rules;
                        format!("r{i}") == *e.role
                            && *s == e.binding
                            && s.contains(&req.resource.scope)
                            && e.rule >= 1
                            && e.rule <= rules.len()
                            && {
                                let r = &rules[e.rule - 1];
                                r.allow
                                    && r.patterns.contains(&e.permission)
                                    && pattern_matches(&e.permission, req.action)
                                    && r.holds(req.resource.mode, req.mfa)
                            }
                    });
                    prop_assert!(named, "explanation {} names no matching allow rule", e);
                    prop_assert!(!any_rule(&w, &w.bindings, req, false));
                }
                Decision::Deny(d) => {
                    if let Some(e) = &d.explicit {
                        prop_assert_eq!(e.effect, Effect::Deny);
                        let named = w.bindings.iter().any(|(i, s)| {
                            let rules = &w.roles[*i].rules;
                            format!("r{i}") == *e.role
                                && *s == e.binding
                                && s.contains(&req.resource.scope)
                                && e.rule >= 1
                                && e.rule <= rules.len()
                                && {
                                    let r = &rules[e.rule - 1];
                                    !r.allow
                                        && r.patterns.contains(&e.permission)
                                        && pattern_matches(&e.permission, req.action)
                                        && r.holds(req.resource.mode, req.mfa)
                                }
                        });
                        prop_assert!(named, "explanation {} names no matching deny rule", e);
                    } else {
                        prop_assert!(!any_rule(&w, &w.bindings, req, false) || (req.action.root_only() && req.resource.scope != Scope::Root));
                    }
                    prop_assert!(!d.reason.is_empty());
                }
            }
            if any_rule(&w, &w.bindings, req, false) {
                prop_assert!(!decision.is_allow());
            }
        }
    }

    /// (c) adding a deny rule to a role, or binding a deny-only role, never
    /// turns a deny into an allow.
    #[test]
    fn more_denies_never_allow_more(
        w in world(),
        target in any::<prop::sample::Index>(),
        extra in rule(0),
        deny_only in prop::collection::vec(rule(0), 1..4),
        at in scope(),
    ) {
        let compiled = compile(&w.roles);
        let mut with_rule = w.clone();
        let t = target.index(w.roles.len());
        with_rule.roles[t].rules.push(extra);
        let compiled_with_rule = compile(&with_rule.roles);

        let mut with_binding = w.clone();
        with_binding.roles.push(RoleSpec { rules: deny_only });
        with_binding.bindings.push((w.roles.len(), at));
        let compiled_with_binding = compile(&with_binding.roles);

        for req in &w.requests {
            if !decide(&compiled, &w.bindings, req).is_allow() {
                prop_assert!(!decide(&compiled_with_rule, &with_rule.bindings, req).is_allow());
                prop_assert!(!decide(&compiled_with_binding, &with_binding.bindings, req).is_allow());
            }
        }
    }

    /// (d) removing a binding never turns a deny into an allow, unless the
    /// removed binding carried the deny: a default deny (nothing grants it)
    /// stays a deny after removing any binding, and any deny stays a deny
    /// after removing a binding whose role has no deny rule.
    #[test]
    fn fewer_bindings_never_allow_more(w in world(), victim in any::<prop::sample::Index>()) {
        prop_assume!(!w.bindings.is_empty());
        let compiled = compile(&w.roles);
        let mut fewer = w.bindings.clone();
        let (removed, _) = fewer.remove(victim.index(w.bindings.len()));
        let removed_allow_only = w.roles[removed].rules.iter().all(|r| r.allow);
        for req in &w.requests {
            if let Decision::Deny(d) = decide(&compiled, &w.bindings, req)
                && (d.explicit.is_none() || removed_allow_only)
            {
                prop_assert!(!decide(&compiled, &fewer, req).is_allow());
            }
        }
    }

    /// Decisions do not depend on the order of bindings.
    #[test]
    fn binding_order_does_not_change_the_effect(w in world()) {
        let compiled = compile(&w.roles);
        let mut reversed = w.bindings.clone();
        reversed.reverse();
        for req in &w.requests {
            prop_assert_eq!(
                decide(&compiled, &w.bindings, req).is_allow(),
                decide(&compiled, &reversed, req).is_allow()
            );
        }
    }
}

const VALID: &str = "\
name: developer
description: Builds and runs services.
rules:
  - allow: [secret.list, env.read, deploy.*]
  - allow: [secret.read, shell.exec]
    when:
      env_mode: [development, staging]
      mfa: true
  - deny: ['*']
    when: {mfa: false}
";

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_arbitrary_strings(s in any::<String>()) {
        let _ = Role::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_yaml_like_text(s in "[a-z_.:*&!|>'\"{}\\[\\], \n\t#%@`?-]{0,300}") {
        let _ = Role::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_mutated_role_files(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>(), 0u8..3), 1..6)
    ) {
        let mut s: Vec<char> = VALID.chars().collect();
        for (at, c, op) in edits {
            let i = at.index(s.len() + 1);
            match op {
                0 => s.insert(i, c),
                1 if i < s.len() => { s.remove(i); }
                _ if i < s.len() => s[i] = c,
                _ => s.push(c),
            }
        }
        let text: String = s.into_iter().collect();
        if let Err(e) = Role::parse(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn the_mutation_base_is_valid() {
    let r = Role::parse(VALID).unwrap();
    assert_eq!(r.rules().len(), 3);
}
