//! Unit tests: decision semantics, explanations and role-file validation.

use super::*;

fn role(yaml: &str) -> Arc<Role> {
    Arc::new(Role::parse(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")))
}

fn builtin(name: &str) -> Arc<Role> {
    builtin_role(name).unwrap()
}

fn scope(s: &str) -> Scope {
    s.parse().unwrap()
}

fn bind(role: &Arc<Role>, at: &str) -> Binding {
    Binding {
        role: Arc::clone(role),
        scope: scope(at),
    }
}

fn principal(bindings: Vec<Binding>) -> Principal {
    Principal {
        id: "user:alice".into(),
        bindings,
        mfa: false,
    }
}

fn res(path: &str, mode: Option<EnvMode>) -> Resource {
    Resource::at(ScopePath::parse(path).unwrap(), mode)
}

fn api(mode: EnvMode) -> Resource {
    res("acme/shop/prod/api", Some(mode))
}

#[track_caller]
fn allowed(p: &Principal, a: Action, r: &Resource) -> Allowed {
    match authorize(p, a, r) {
        Decision::Allow(permit) => permit,
        Decision::Deny(d) => panic!("{a} on {r} should be allowed: {}", d.reason),
    }
}

#[track_caller]
fn denied(p: &Principal, a: Action, r: &Resource) -> Denial {
    match authorize(p, a, r) {
        Decision::Deny(d) => d,
        Decision::Allow(permit) => panic!(
            "{a} on {r} should be denied, allowed by {}",
            permit.explanation()
        ),
    }
}

const NO_DESTROY: &str = "\
name: no-destroy
description: Nobody destroys versions here.
rules:
  - deny: [secret.destroy, key.rotate]
";

// ---------------------------------------------------------------------------
// Decisions

#[test]
fn default_is_deny_and_says_what_was_not_granted() {
    let nobody = principal(vec![]);
    for a in Action::ALL {
        let d = denied(&nobody, a, &api(EnvMode::Staging));
        assert!(d.explicit.is_none());
    }
    let d = denied(&nobody, Action::SecretRead, &api(EnvMode::Staging));
    assert_eq!(
        d.reason,
        "no role binding grants secret.read on acme/shop/prod/api"
    );
    // A role that does not name the action grants nothing either.
    let viewer = principal(vec![bind(&builtin("viewer"), "acme")]);
    let d = denied(&viewer, Action::SecretRead, &api(EnvMode::Development));
    assert_eq!(
        d.reason,
        "no role binding grants secret.read on acme/shop/prod/api"
    );
}

#[test]
fn an_explicit_deny_beats_any_allow_from_any_binding() {
    let owner = builtin("owner");
    let no_destroy = role(NO_DESTROY);
    for bindings in [
        vec![bind(&owner, "acme/shop"), bind(&no_destroy, "acme")],
        vec![bind(&no_destroy, "acme"), bind(&owner, "acme/shop")],
        vec![bind(&owner, "/"), bind(&no_destroy, "acme/shop/prod/api")],
    ] {
        let p = principal(bindings);
        let d = denied(&p, Action::SecretDestroy, &api(EnvMode::Production));
        let e = d.explicit.as_ref().unwrap();
        assert_eq!(e.effect, Effect::Deny);
        assert_eq!(&*e.role, "no-destroy");
        assert_eq!(e.rule, 1);
        assert_eq!(e.permission, "secret.destroy");
        assert!(d.reason.starts_with("secret.destroy on acme/shop/prod/api: deny by rule 1 of role `no-destroy` bound at "), "{}", d.reason);
        // The deny is about its own permissions only.
        allowed(&p, Action::SecretRead, &api(EnvMode::Production));
    }
}

#[test]
fn a_deny_at_the_org_applies_to_everything_below() {
    let p = principal(vec![
        bind(&builtin("owner"), "/"),
        bind(&role(NO_DESTROY), "acme"),
    ]);
    for path in ["acme", "acme/shop", "acme/shop/prod", "acme/shop/prod/api"] {
        let d = denied(&p, Action::KeyRotate, &res(path, None));
        assert_eq!(d.explicit.unwrap().binding, scope("acme"));
    }
    // Not in a sibling organization, nor at the root.
    allowed(&p, Action::KeyRotate, &res("globex", None));
    allowed(&p, Action::KeyRotate, &res("acmex/shop", None));
    allowed(&p, Action::KeyRotate, &Resource::root());
}

#[test]
fn a_binding_applies_to_its_scope_and_below_only() {
    let p = principal(vec![bind(&builtin("viewer"), "acme/shop")]);
    for ok in ["acme/shop", "acme/shop/prod", "acme/shop/prod/api"] {
        allowed(&p, Action::SecretList, &res(ok, None));
    }
    for not in [
        "acme/shopx",
        "acme/shopx/prod",
        "acme",
        "acme/other",
        "globex/shop",
    ] {
        denied(&p, Action::SecretList, &res(not, None));
    }
    denied(&p, Action::SecretList, &Resource::root());
}

#[test]
fn env_mode_conditions_need_a_listed_mode() {
    let p = principal(vec![bind(&builtin("developer"), "acme/shop")]);
    for a in [
        Action::SecretRead,
        Action::SecretWrite,
        Action::SecretDelete,
        Action::ShellExec,
    ] {
        allowed(&p, a, &api(EnvMode::Development));
        allowed(&p, a, &api(EnvMode::Staging));
        let d = denied(&p, a, &api(EnvMode::Production));
        assert!(d.explicit.is_none());
        assert_eq!(
            d.reason,
            format!(
                "no role binding grants {a} on acme/shop/prod/api; role `developer` at acme/shop allows it only when env_mode is development or staging"
            )
        );
        // No mode (a project) never satisfies an env_mode condition.
        denied(&p, a, &res("acme/shop", None));
    }
    // Unconditioned rules apply in every mode and without one.
    for mode in [
        Some(EnvMode::Production),
        Some(EnvMode::Staging),
        Some(EnvMode::Development),
        None,
    ] {
        allowed(&p, Action::SecretList, &res("acme/shop/prod", mode));
        allowed(&p, Action::DeployRun, &res("acme/shop/prod", mode));
    }
}

#[test]
fn mfa_conditions() {
    let r = role(
        "\
name: mfa-gated
description: Shells need MFA; values are refused outside MFA sessions.
rules:
  - allow: [shell.exec, secret.read, secret.list]
    when:
      mfa: true
  - allow: [secret.list]
  - deny: [secret.read]
    when:
      mfa: false
",
    );
    let mut p = principal(vec![bind(&r, "acme")]);
    let d = denied(&p, Action::ShellExec, &api(EnvMode::Production));
    assert_eq!(
        d.reason,
        "no role binding grants shell.exec on acme/shop/prod/api; role `mfa-gated` at acme allows it only in an MFA session"
    );
    let d = denied(&p, Action::SecretRead, &api(EnvMode::Production));
    let e = d.explicit.unwrap();
    assert_eq!((e.rule, e.when.mfa()), (3, Some(false)));
    assert_eq!(
        e.to_string(),
        "deny by rule 3 of role `mfa-gated` bound at acme (secret.read, when mfa is false)"
    );
    let permit = allowed(&p, Action::SecretList, &api(EnvMode::Production));
    assert_eq!(permit.explanation().rule, 2);

    p.mfa = true;
    let permit = allowed(&p, Action::ShellExec, &api(EnvMode::Production));
    assert_eq!(permit.explanation().rule, 1);
    allowed(&p, Action::SecretRead, &api(EnvMode::Production));
    // The first matching allow rule is the one named.
    assert_eq!(
        allowed(&p, Action::SecretList, &api(EnvMode::Production))
            .explanation()
            .rule,
        1
    );
}

#[test]
fn combined_conditions_are_described_in_full() {
    let r = role(
        "\
name: prod-shell
rules:
  - allow: [shell.exec]
    when: {env_mode: [production], mfa: true}
",
    );
    let p = principal(vec![bind(&r, "acme/shop/prod")]);
    let d = denied(&p, Action::ShellExec, &api(EnvMode::Staging));
    assert!(
        d.reason.ends_with(
            "; role `prod-shell` at acme/shop/prod allows it only when env_mode is production and in an MFA session"
        ),
        "{}",
        d.reason
    );
    let mut p = p;
    p.mfa = true;
    let permit = allowed(&p, Action::ShellExec, &api(EnvMode::Production));
    assert_eq!(
        permit.explanation().to_string(),
        "allow by rule 1 of role `prod-shell` bound at acme/shop/prod (shell.exec, when env_mode in [production] and mfa is true)"
    );
}

#[test]
fn root_bindings_and_root_only_actions() {
    let owner = builtin("owner");
    let root = principal(vec![bind(&owner, "/")]);
    for a in Action::ALL {
        allowed(&root, a, &Resource::root());
        if !a.root_only() {
            allowed(&root, a, &api(EnvMode::Production));
            allowed(&root, a, &res("globex", None));
        }
    }
    // sys.seal acts only on the root, whoever asks.
    let d = denied(&root, Action::SysSeal, &res("acme", None));
    assert_eq!(
        d.reason,
        "sys.seal acts only on the root scope `/`, not on acme"
    );
    // An owner below the root cannot act on the root.
    let org_owner = principal(vec![bind(&owner, "acme")]);
    denied(&org_owner, Action::SysSeal, &Resource::root());
    denied(&org_owner, Action::EnvManage, &Resource::root());
    denied(&org_owner, Action::SysSeal, &res("acme", None));
    // Admins never seal, even at the root.
    let admin = principal(vec![bind(&builtin("admin"), "/")]);
    denied(&admin, Action::SysSeal, &Resource::root());
    denied(&admin, Action::OwnershipTransfer, &res("acme", None));
    allowed(&admin, Action::KeyRotate, &res("acme", None));
}

#[test]
fn an_allow_names_its_principal_action_and_scope() {
    let p = principal(vec![bind(&builtin("owner"), "acme/shop")]);
    let allow = allowed(&p, Action::SecretRead, &res("acme/shop/prod", None));
    assert_eq!(allow.principal(), "user:alice");
    assert_eq!(allow.action(), Action::SecretRead);
    assert_eq!(allow.scope(), &scope("acme/shop/prod"));
}

#[test]
fn has_binding_in_org() {
    let p = principal(vec![
        bind(&builtin("viewer"), "acme/shop/prod"),
        bind(&builtin("developer"), "initech"),
    ]);
    assert!(p.has_binding_in_org("acme"));
    assert!(p.has_binding_in_org("initech"));
    assert!(!p.has_binding_in_org("globex"));
    assert!(!p.has_binding_in_org("acm"));
    assert!(!principal(vec![]).has_binding_in_org("acme"));
    let root = principal(vec![bind(&builtin("viewer"), "/")]);
    assert!(root.has_binding_in_org("globex"));
}

#[test]
fn explanations_name_the_deciding_rule() {
    let dev = role(
        "\
name: developer
description: Custom developer with wildcards.
rules:
  - allow: [secret.list, env.read]
  - allow: [secret.*, shell.exec]
    when:
      env_mode: [development, staging]
",
    );
    let p = principal(vec![
        bind(&builtin("viewer"), "globex"),
        bind(&dev, "acme/shop"),
    ]);
    let permit = allowed(&p, Action::SecretWrite, &api(EnvMode::Staging));
    let e = permit.explanation();
    assert_eq!(
        (
            e.effect,
            &*e.role,
            &e.binding,
            e.rule,
            e.permission.as_str()
        ),
        (
            Effect::Allow,
            "developer",
            &scope("acme/shop"),
            2,
            "secret.*"
        )
    );
    assert_eq!(
        e.to_string(),
        "allow by rule 2 of role `developer` bound at acme/shop (secret.*, when env_mode in [development, staging])"
    );
    assert_eq!(permit.rule(), "developer@acme/shop rule 2 (secret.*)");

    let owner = principal(vec![bind(&builtin("owner"), "/")]);
    let permit = allowed(&owner, Action::AuditExport, &res("acme", None));
    assert_eq!(
        permit.explanation().to_string(),
        "allow by rule 1 of role `owner` bound at / (*)"
    );
    assert_eq!(permit.rule(), "owner@/ rule 1 (*)");
}

#[test]
fn multi_digit_rule_numbers() {
    let mut yaml = String::from("name: long\nrules:\n");
    for _ in 0..120 {
        yaml.push_str("  - allow: [env.read]\n");
    }
    yaml.push_str("  - deny: [env.read]\n");
    let p = principal(vec![bind(&role(&yaml), "/")]);
    let d = denied(&p, Action::EnvRead, &res("acme", None));
    assert_eq!(
        d.reason,
        "env.read on acme: deny by rule 121 of role `long` bound at / (env.read)"
    );
    assert_eq!(d.explicit.unwrap().rule, 121);
}

#[test]
fn deny_reasons_list_a_bounded_number_of_unmet_conditions() {
    let dev = builtin("developer");
    let p = principal(
        [
            "acme",
            "acme/shop",
            "acme/shop/prod",
            "acme/shop/prod/api",
            "acme",
        ]
        .iter()
        .map(|s| bind(&dev, s))
        .collect(),
    );
    let d = denied(&p, Action::ShellExec, &api(EnvMode::Production));
    assert_eq!(d.reason.matches("; role `developer`").count(), MAX_HINTS);
    assert_eq!(
        d.reason.matches("at acme allows").count(),
        1,
        "{}",
        d.reason
    );
}

#[test]
fn scopes_and_resources() {
    assert_eq!(scope("/"), Scope::Root);
    assert_eq!(Scope::Root.to_string(), "/");
    assert_eq!(scope("acme/shop").to_string(), "acme/shop");
    assert_eq!(scope("acme/shop").org(), Some("acme"));
    assert_eq!(Scope::Root.org(), None);
    assert!("".parse::<Scope>().is_err());
    assert!("acme/".parse::<Scope>().is_err());
    assert!(Scope::Root.contains(&Scope::Root));
    assert!(Scope::Root.contains(&scope("acme/shop")));
    assert!(!scope("acme").contains(&Scope::Root));
    assert!(scope("acme").contains(&scope("acme/shop/prod/api")));
    assert!(!scope("acme/shop").contains(&scope("acme/shopx")));
    assert_eq!(Resource::root().scope, Scope::Root);
    assert_eq!(Resource::root().mode, None);
    assert_eq!(api(EnvMode::Production).to_string(), "acme/shop/prod/api");
}

// ---------------------------------------------------------------------------
// Role files

#[test]
fn role_accessors_and_summary() {
    let dev = builtin("developer");
    assert_eq!(dev.name(), "developer");
    assert_eq!(
        dev.description(),
        "Builds and runs services; no secret values, shells or pod logs in production."
    );
    assert!(dev.source().contains("env_mode: [development, staging]"));
    assert_eq!(
        dev.permissions_summary(),
        [
            "1: allow secret.list, env.read, deploy.run, deploy.rollback, audit.read",
            "2: allow secret.read, secret.write, secret.delete, shell.exec, pod.logs when env_mode in [development, staging]",
        ]
    );
    let rule = &dev.rules()[1];
    assert_eq!(rule.effect(), Effect::Allow);
    assert_eq!(
        rule.condition().env_modes(),
        Some(vec![EnvMode::Development, EnvMode::Staging])
    );
    assert_eq!(rule.condition().mfa(), None);
    assert_eq!(rule.actions().count(), 5);
    assert!(rule.matches(Action::ShellExec));
    assert_eq!(rule.permissions().collect::<Vec<_>>()[3], "shell.exec");
    assert!(format!("{dev:?}").contains("developer"));
}

#[track_caller]
fn parse_err(yaml: &str) -> RoleError {
    match Role::parse(yaml) {
        Err(e) => e,
        Ok(r) => panic!("should be rejected: {yaml}\n=> {r:?}"),
    }
}

#[test]
fn errors_name_line_column_and_field() {
    let e = parse_err(
        "\
name: developer
description: x
rules:
  - allow: [secret.list]
  - allow:
      - secret.read
      - secret.reed
",
    );
    assert_eq!(
        (e.line, e.column, e.field.as_deref()),
        (Some(7), Some(9), Some("rules[1].allow[1]"))
    );
    let shown = e.to_string();
    assert!(
        shown.starts_with(
            "line 7, column 9, field `rules[1].allow[1]`: unknown permission `secret.reed` (known: secret.read, secret.list, "
        ),
        "{shown}"
    );

    for (yaml, line, field, needle) in [
        (
            "name: Dev\nrules: [{allow: ['*']}]\n",
            1,
            Some("name"),
            "invalid role name `Dev`",
        ),
        (
            "name: d\nrules:\n  - allow: [secret.list]\n    deny: [secret.read]\n",
            3,
            Some("rules[0]"),
            "exactly one of `allow` or `deny`",
        ),
        (
            "name: d\nrules:\n  - when: {mfa: true}\n",
            3,
            Some("rules[0]"),
            "needs `allow` or `deny`",
        ),
        (
            "name: d\nrules:\n  - allow: [secret.list]\n    wen: {mfa: true}\n",
            4,
            Some("rules[0]"),
            "unknown field `wen`",
        ),
        ("name: d\nrulez: []\n", 2, None, "unknown field `rulez`"),
        (
            "name: d\nrules: []\n",
            2,
            Some("rules"),
            "at least one rule",
        ),
        (
            "name: d\nrules:\n  - allow: []\n",
            3,
            Some("rules[0].allow"),
            "permission list is empty",
        ),
        (
            "name: d\nrules:\n  - deny: [foo.*]\n",
            3,
            Some("rules[0].deny[0]"),
            "unknown permission `foo.*`",
        ),
        (
            "name: d\nrules:\n  - allow: ['*']\n    when: {env_mode: [prod]}\n",
            4,
            Some("rules[0].when.env_mode[0]"),
            "unknown environment mode `prod`",
        ),
        (
            "name: d\nrules:\n  - allow: ['*']\n    when: {env_mode: []}\n",
            4,
            Some("rules[0].when.env_mode"),
            "env_mode is empty",
        ),
        (
            "name: d\nrules:\n  - allow: ['*']\n    when: {mfa: yes}\n",
            4,
            Some("rules[0].when.mfa"),
            "expected a boolean",
        ),
        (
            "name: d\nrules:\n  - allow: ['*']\n    when: {}\n",
            4,
            Some("rules[0].when"),
            "`when` needs",
        ),
        (
            "name: d\nrules:\n  - allow: ['*']\n    when: {user: bob}\n",
            4,
            Some("rules[0].when"),
            "unknown field `user`",
        ),
        ("name: d\nrules: 5\n", 2, Some("rules"), "invalid type"),
        (
            "name: d\nrules: [allow]\n",
            2,
            Some("rules[0]"),
            "invalid type",
        ),
        (
            "name: d\nrules:\n  - allow: secret.read\n",
            3,
            Some("rules[0].allow"),
            "invalid type",
        ),
        (
            "name: d\nname: d\nrules: [{allow: ['*']}]\n",
            1,
            None,
            "duplicate field `name`",
        ),
        (
            "name: d\ndescription: \"a\\x1b[31mb\"\nrules: [{allow: ['*']}]\n",
            2,
            Some("description"),
            "control characters",
        ),
        ("rules: [{allow: ['*']}]\n", 1, None, "missing field `name`"),
        (
            "name: d\nrules:\n  - allow: ['*'\n  - x\n",
            4,
            None,
            "did not find expected",
        ),
        ("name: d\nrules: [*nothing]\n", 2, None, "unknown anchor"),
        ("", 1, None, "missing field `name`"),
    ] {
        let e = parse_err(yaml);
        assert_eq!(e.line, Some(line), "{yaml:?}: {e}");
        assert!(e.column.is_some(), "{yaml:?}: {e}");
        assert_eq!(e.field.as_deref(), field, "{yaml:?}: {e}");
        assert!(e.message.contains(needle), "{yaml:?}: {e}");
        // The location is not repeated in the message.
        let at = format!("at line {line} column {}", e.column.unwrap_or(0));
        assert!(!e.message.contains(&at), "{yaml:?}: {e}");
    }
    let e = parse_err("name: d\nrules: [{allow: ['*']}]\n---\nname: e\n");
    assert!(e.message.contains("more than one document"), "{e}");
}

#[test]
fn limits_are_enforced_with_clear_errors() {
    // Source size.
    let mut big = String::from("name: big\nrules:\n  - allow: [secret.read]\n");
    while big.len() <= MAX_ROLE_SOURCE_BYTES {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    let e = parse_err(&big);
    assert_eq!((e.line, e.field.as_deref()), (None, None));
    assert!(e.to_string().contains("the limit is 65536 bytes"), "{e}");

    // Rules: 256 pass, 257 fail.
    let rules = |n: usize| {
        let mut s = String::from("name: many\nrules:\n");
        for _ in 0..n {
            s.push_str("  - allow: [env.read]\n");
        }
        s
    };
    assert_eq!(
        Role::parse(&rules(MAX_RULES)).unwrap().rules().len(),
        MAX_RULES
    );
    let e = parse_err(&rules(MAX_RULES + 1));
    assert_eq!(e.field.as_deref(), Some("rules"));
    assert!(e.message.contains("at most 256"), "{e}");

    // Permissions per rule: 64 pass, 65 fail.
    let perms = |n: usize| {
        let list = vec!["env.read"; n].join(", ");
        format!("name: many\nrules:\n  - allow: [{list}]\n")
    };
    assert!(Role::parse(&perms(MAX_PERMISSIONS_PER_RULE)).is_ok());
    let e = parse_err(&perms(MAX_PERMISSIONS_PER_RULE + 1));
    assert_eq!(e.field.as_deref(), Some("rules[0].allow"));
    assert!(e.message.contains("at most 64"), "{e}");

    // Description length.
    let long = format!(
        "name: d\ndescription: {}\nrules: [{{allow: ['*']}}]\n",
        "x".repeat(MAX_DESCRIPTION_BYTES + 1)
    );
    assert_eq!(parse_err(&long).field.as_deref(), Some("description"));
}

#[test]
fn alias_bombs_and_deep_nesting_are_errors() {
    // Exponential aliases in every position a role file accepts lists.
    let mut bomb = String::from(
        "name: bomb\nx0: &a0 [secret.read, secret.read, secret.read, secret.read, secret.read, secret.read, secret.read, secret.read]\n",
    );
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        bomb.push_str(&format!("x{i}: &a{i} [{}]\n", vec![prev; 8].join(", ")));
    }
    bomb.push_str("rules:\n  - allow: *a11\n");
    assert!(Role::parse(&bomb).is_err());
    let bomb2 = bomb.replace("name: bomb\n", "name: bomb\nrules:\n  - allow: *a11\n");
    assert!(Role::parse(&bomb2).is_err());
    // Only in a permission list: an anchor defined inside the rules.
    let mut inner = String::from("name: bomb\nrules:\n  - allow: &p0 [secret.read, secret.read]\n");
    for i in 1..40 {
        inner.push_str(&format!("  - allow: &p{i} [*p{}, *p{}]\n", i - 1, i - 1));
    }
    let e = parse_err(&inner);
    assert!(e.message.contains("invalid type"), "{e}");

    for depth in [100, 10_000] {
        let nested = format!(
            "name: d\nrules: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(Role::parse(&nested).is_err());
        let nested = format!("name: d\nrules:\n  - when: {}\n", "{a: ".repeat(depth));
        assert!(Role::parse(&nested).is_err());
    }
}

#[test]
fn accepted_role_file_shapes() {
    // Flow style, comments, quoted strings, any key order.
    let r = Role::parse(
        "# A custom role.\nrules: [{deny: [\"secret.destroy\"], when: {mfa: false}}, {allow: ['secret.*', '*']}]\nname: \"ops-2\"\n",
    )
    .unwrap();
    assert_eq!(r.name(), "ops-2");
    assert_eq!(r.description(), "");
    assert_eq!(r.rules().len(), 2);
    assert_eq!(r.rules()[0].effect(), Effect::Deny);
    assert_eq!(r.rules()[0].condition().mfa(), Some(false));
    assert_eq!(r.rules()[1].actions().count(), Action::ALL.len());
    assert_eq!(
        r.permissions_summary(),
        [
            "1: deny secret.destroy when mfa is false",
            "2: allow secret.*, *"
        ]
    );
    // Duplicate modes collapse.
    let r = Role::parse(
        "name: d\nrules: [{allow: [env.read], when: {env_mode: [staging, staging]}}]\n",
    )
    .unwrap();
    assert_eq!(
        r.rules()[0].condition().env_modes(),
        Some(vec![EnvMode::Staging])
    );
}

#[test]
fn a_role_sets_how_its_sessions_run_and_every_allowing_role_has_its_say() {
    use std::time::Duration;
    let oncall = role(
        "name: oncall\nrules:\n  - allow: [shell.exec]\n\
         session: {max_length: 8h, idle_timeout: 90s, record_input: true}\n",
    );
    let p = principal(vec![bind(&oncall, "acme")]);
    let session = allowed(&p, Action::ShellExec, &api(EnvMode::Production))
        .explanation()
        .session;
    assert_eq!(session.max_length, Some(Duration::from_secs(8 * 3600)));
    assert_eq!(session.idle_timeout, Some(Duration::from_secs(90)));
    assert!(session.record_input);
    // Review 11, M1: every allowing role has its say, whatever the
    // bindings' order (the store lists them by scope, then role name).
    let developer = builtin("developer");
    for name in ["aa-limit", "zz-limit"] {
        let limit = role(&format!(
            "name: {name}\nrules:\n  - allow: [shell.exec]\n\
             session: {{max_length: 10m, idle_timeout: 30s}}\n"
        ));
        let logged = role(&format!(
            "name: {name}-log\nrules:\n  - allow: [shell.exec]\n\
             session: {{max_length: 1h, record_input: true}}\n"
        ));
        for bindings in [
            vec![
                bind(&developer, "acme"),
                bind(&limit, "acme"),
                bind(&logged, "acme"),
            ],
            vec![
                bind(&logged, "acme"),
                bind(&limit, "acme"),
                bind(&developer, "acme"),
            ],
        ] {
            let p = principal(bindings);
            let session = allowed(&p, Action::ShellExec, &api(EnvMode::Development))
                .explanation()
                .session;
            assert_eq!(session.max_length, Some(Duration::from_secs(600)), "{name}");
            assert_eq!(
                session.idle_timeout,
                Some(Duration::from_secs(30)),
                "{name}"
            );
            assert!(session.record_input, "{name}");
        }
        // A role that does not allow the session has no say in it.
        let other = role(&format!(
            "name: {name}-other\nrules:\n  - allow: [secret.read]\n\
             session: {{max_length: 5s}}\n"
        ));
        let p = principal(vec![bind(&other, "acme"), bind(&developer, "acme")]);
        let session = allowed(&p, Action::ShellExec, &api(EnvMode::Development))
            .explanation()
            .session;
        assert_eq!(session, SessionPolicy::default(), "{name}");
    }
    // Without a block: no limits of the role's own, no input recorded.
    assert_eq!(builtin("admin").session_policy(), SessionPolicy::default());
    for bad in [
        "max_length: 4s",
        "max_length: 25h",
        "idle_timeout: 0s",
        "idle_timeout: 15",
        "idle_timeout: m",
        "idle_timeout: -5m",
        "idle_timeout: 99999999999h",
        "record_inputs: true",
    ] {
        let e = parse_err(&format!(
            "name: x\nrules:\n  - allow: [shell.exec]\nsession: {{{bad}}}\n"
        ));
        assert_eq!(e.line, Some(4), "{bad}: {e}");
    }
}
