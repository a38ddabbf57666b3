//! `authorize()` throughput (target: at least 1,000,000 decisions/s on one
//! core for a principal with 20 bindings over 10 custom roles).
//!
//! `cargo bench -p warden-policies -- --warm-up-time 1 --measurement-time 3`

// A benchmark fails like a test: by panicking on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use warden_policies::{
    Action, Binding, Decision, Principal, Resource, Role, Scope, authorize, builtin_role,
};
use warden_types::{EnvMode, ScopePath};

fn scope(s: &str) -> Scope {
    s.parse().unwrap()
}

/// Ten custom roles, each with several allow and deny rules and conditions.
fn custom_roles() -> Vec<Arc<Role>> {
    (0..10)
        .map(|i| {
            let extra_deny = if i == 9 {
                "  - deny: [key.rotate]\n"
            } else {
                ""
            };
            let yaml = format!(
                "\
name: team-{i}
description: Generated role {i} for the benchmark.
rules:
  - allow: [secret.list, env.read, audit.read]
  - allow: [secret.read, secret.write, secret.delete]
    when:
      env_mode: [development, staging]
  - allow: [deploy.*]
    when:
      mfa: true
  - deny: [member.manage, role.manage]
    when:
      env_mode: [production]
  - deny: [shell.exec]
    when:
      mfa: false
  - allow: [shell.exec, key.rotate]
    when:
      env_mode: [staging]
      mfa: true
  - deny: [secret.destroy]
{extra_deny}"
            );
            Arc::new(Role::parse(&yaml).unwrap())
        })
        .collect()
}

/// 20 bindings spread over three organizations; eleven of them apply to
/// `acme/shop/prod/api`.
fn busy_principal() -> Principal {
    let roles = custom_roles();
    let scopes = [
        "globex",
        "acme/shop",
        "initech/web",
        "acme",
        "globex/app/prod",
        "acme/shop/prod",
        "acme/blog",
        "initech",
        "acme/shop/prod/api",
        "globex/app",
        "acme/shop/staging",
        "acme/shop",
        "initech/web/dev",
        "acme",
        "globex/app/dev/worker",
        "acme/shop/prod",
        "acme/blog/prod",
        "acme/shop/prod/api",
        "initech/web/prod/api",
        "acme",
    ];
    Principal {
        id: "user:busy".into(),
        bindings: scopes
            .iter()
            .enumerate()
            .map(|(i, s)| Binding {
                role: Arc::clone(&roles[i % roles.len()]),
                scope: scope(s),
            })
            .collect(),
        mfa: false,
    }
}

fn bench(c: &mut Criterion) {
    let api = Resource::at(
        ScopePath::parse("acme/shop/prod/api").unwrap(),
        Some(EnvMode::Production),
    );
    let owner = Principal {
        id: "user:owner".into(),
        bindings: vec![Binding {
            role: builtin_role("owner").unwrap(),
            scope: Scope::Root,
        }],
        mfa: false,
    };
    let busy = busy_principal();
    assert_eq!(busy.bindings.len(), 20);

    // Sanity: each case decides the way its name says.
    let allowed = |p: &Principal, a| matches!(authorize(p, a, &api), Decision::Allow(_));
    let explicit = |p: &Principal, a| matches!(authorize(p, a, &api), Decision::Deny(d) if d.explicit.is_some());
    assert!(allowed(&owner, Action::SecretRead));
    assert!(allowed(&busy, Action::SecretList));
    assert!(!allowed(&busy, Action::SecretRead) && !explicit(&busy, Action::SecretRead));
    assert!(explicit(&busy, Action::KeyRotate));

    let mut g = c.benchmark_group("authorize");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_owner_at_root_allow", |b| {
        b.iter(|| {
            authorize(
                black_box(&owner),
                black_box(Action::SecretRead),
                black_box(&api),
            )
        })
    });
    g.bench_function("20_bindings_10_roles_allow", |b| {
        b.iter(|| {
            authorize(
                black_box(&busy),
                black_box(Action::SecretList),
                black_box(&api),
            )
        })
    });
    g.bench_function("20_bindings_10_roles_default_deny", |b| {
        b.iter(|| {
            authorize(
                black_box(&busy),
                black_box(Action::SecretRead),
                black_box(&api),
            )
        })
    });
    g.bench_function("20_bindings_10_roles_explicit_deny", |b| {
        b.iter(|| {
            authorize(
                black_box(&busy),
                black_box(Action::KeyRotate),
                black_box(&api),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
