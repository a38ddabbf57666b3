//! The permission table in README.md (`## Permissions`) is checked cell by
//! cell against `authorize` with the built-in roles. If the README and the
//! engine disagree, this test fails.

// Helpers outside #[test] functions fail the way tests do: by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use warden_policies::{
    Action, Binding, Decision, Principal, Resource, Scope, authorize, builtin_role, builtin_roles,
};
use warden_types::{EnvMode, ScopePath};

const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Yes,
    No,
    NonProduction,
    RootOnly,
}

/// Column title -> role name, and the table as (action, role) -> cell.
fn parse_table() -> (Vec<String>, HashMap<(Action, String), Cell>) {
    let begin = "<!-- permissions:begin -->";
    let end = "<!-- permissions:end -->";
    let lines: Vec<&str> = README.lines().collect();
    let b = lines
        .iter()
        .position(|l| l.trim() == begin)
        .unwrap_or_else(|| panic!("README.md has no line `{begin}`"));
    let e = lines
        .iter()
        .position(|l| l.trim() == end)
        .unwrap_or_else(|| panic!("README.md has no line `{end}`"));
    assert!(b < e, "permissions markers out of order");
    let rows: Vec<Vec<String>> = lines[b + 1..e]
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let l = l.trim();
            assert!(
                l.starts_with('|') && l.ends_with('|'),
                "not a table row: {l}"
            );
            l[1..l.len() - 1]
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect();
    assert!(rows.len() >= 2, "the permissions table is empty");
    let header = &rows[0];
    assert_eq!(header[0], "Permission");
    let roles: Vec<String> = header[1..].iter().map(|h| h.to_lowercase()).collect();
    assert!(
        rows[1]
            .iter()
            .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':'))),
        "second row must be the separator: {:?}",
        rows[1]
    );
    let mut cells = HashMap::new();
    let mut order = Vec::new();
    for row in &rows[2..] {
        assert_eq!(row.len(), header.len(), "row {row:?} has the wrong width");
        let action: Action = row[0]
            .trim_matches('`')
            .parse()
            .unwrap_or_else(|e| panic!("README.md permissions table: {e}"));
        order.push(action);
        for (role, cell) in roles.iter().zip(&row[1..]) {
            let cell = match cell.as_str() {
                "yes" => Cell::Yes,
                "no" => Cell::No,
                "non-production" => Cell::NonProduction,
                "root only" => Cell::RootOnly,
                other => panic!("{action} / {role}: unknown cell `{other}`"),
            };
            assert!(
                cells.insert((action, role.clone()), cell).is_none(),
                "{action} appears twice"
            );
        }
    }
    assert_eq!(
        order,
        Action::ALL,
        "one row per permission, in Action::ALL order"
    );
    (roles, cells)
}

fn path(s: &str) -> ScopePath {
    ScopePath::parse(s).unwrap()
}

fn principal(role: &str, scope: Scope) -> Principal {
    Principal {
        id: format!("user:{role}"),
        bindings: vec![Binding {
            role: builtin_role(role).unwrap(),
            scope,
        }],
        mfa: false,
    }
}

fn env_name(mode: EnvMode) -> &'static str {
    match mode {
        EnvMode::Production => "prod",
        EnvMode::Staging => "staging",
        EnvMode::Development => "dev",
    }
}

#[test]
fn readme_permission_table_matches_the_engine() {
    let (roles, cells) = parse_table();
    let builtin: Vec<&str> = builtin_roles().iter().map(|r| r.name()).collect();
    assert_eq!(roles, builtin, "one column per built-in role, in order");

    let modes = [EnvMode::Production, EnvMode::Staging, EnvMode::Development];
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for role in &roles {
        for action in Action::ALL {
            let cell = cells[&(action, role.clone())];
            for mode in modes {
                let env = env_name(mode);
                let resource = Resource::at(path(&format!("acme/shop/{env}/api")), Some(mode));
                let sibling = Resource::at(path(&format!("globex/shop/{env}/api")), Some(mode));
                for at in [
                    "acme".to_owned(),
                    "acme/shop".into(),
                    format!("acme/shop/{env}"),
                ] {
                    let p = principal(role, Scope::Path(path(&at)));
                    let want = match cell {
                        Cell::Yes => true,
                        Cell::No | Cell::RootOnly => false,
                        Cell::NonProduction => mode != EnvMode::Production,
                    };
                    let got = authorize(&p, action, &resource).is_allow();
                    if got != want {
                        mismatches.push(format!(
                            "{role} bound at {at}: {action} on {resource} ({}) is {}, README says {cell:?}",
                            mode.as_str(),
                            if got { "allowed" } else { "denied" }
                        ));
                    }
                    if let Decision::Allow(permit) = authorize(&p, action, &sibling) {
                        mismatches.push(format!(
                            "{role} bound at {at} grants {action} on {sibling}: {}",
                            permit.explanation()
                        ));
                    }
                    checked += 2;
                }
            }
            // At the root: a binding at `/` acting on the installation.
            let p = principal(role, Scope::Root);
            let want = matches!(cell, Cell::Yes | Cell::RootOnly);
            let got = authorize(&p, action, &Resource::root()).is_allow();
            if got != want {
                mismatches.push(format!(
                    "{role} bound at /: {action} on / is {}, README says {cell:?}",
                    if got { "allowed" } else { "denied" }
                ));
            }
            checked += 1;
        }
    }
    assert!(
        mismatches.is_empty(),
        "README.md `## Permissions` and the engine disagree:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(checked, 4 * Action::ALL.len() as i32 * (3 * 3 * 2 + 1));
}
