//! The built-in roles, shipped as YAML files in `policies/roles/` and
//! compiled into the binary.

use crate::role::{Role, RoleError};
use std::sync::{Arc, LazyLock};

/// Names and sources of the bindable built-in roles, in display order.
const BUILTIN_SOURCES: [(&str, &str); 4] = [
    ("owner", include_str!("../roles/owner.yaml")),
    ("admin", include_str!("../roles/admin.yaml")),
    ("developer", include_str!("../roles/developer.yaml")),
    ("viewer", include_str!("../roles/viewer.yaml")),
];

const WORKLOAD_SOURCE: &str = include_str!("../roles/workload.yaml");

/// The name of the workload role (reserved, never bindable).
pub const WORKLOAD_ROLE: &str = "workload";

/// Parses a built-in role. The unit tests prove every file parses; should one
/// ever fail to, the engine fails closed: the role exists but has no rules,
/// so it grants nothing (and says why in its description).
fn load(name: &str, source: &str) -> Arc<Role> {
    match Role::parse(source) {
        Ok(role) if role.name() == name => Arc::new(role),
        Ok(role) => Arc::new(Role::empty(
            name,
            format!("built-in role file names `{}`, not `{name}`", role.name()),
        )),
        Err(e) => Arc::new(Role::empty(name, built_in_error(&e))),
    }
}

fn built_in_error(e: &RoleError) -> String {
    format!("built-in role failed to load, so it grants nothing: {e}")
}

static BUILTINS: LazyLock<[Arc<Role>; 4]> =
    LazyLock::new(|| BUILTIN_SOURCES.map(|(name, source)| load(name, source)));

static WORKLOAD: LazyLock<Arc<Role>> = LazyLock::new(|| load(WORKLOAD_ROLE, WORKLOAD_SOURCE));

/// The bindable built-in roles: exactly `owner`, `admin`, `developer`,
/// `viewer`, in that order.
pub fn builtin_roles() -> &'static [Arc<Role>] {
    BUILTINS.as_slice()
}

/// One of the four bindable built-in roles, by name.
pub fn builtin_role(name: &str) -> Option<Arc<Role>> {
    builtin_roles().iter().find(|r| r.name() == name).cloned()
}

/// The role a workload token implies for its own service: `secret.read`,
/// `secret.list` and `env.read`. Not bindable and not in [`builtin_roles`].
pub fn workload_role() -> Arc<Role> {
    Arc::clone(&WORKLOAD)
}

/// Whether `name` belongs to a built-in role (the four bindable ones or
/// `workload`), so a custom role must not take it.
pub fn is_reserved_role_name(name: &str) -> bool {
    name == WORKLOAD_ROLE || BUILTIN_SOURCES.iter().any(|(n, _)| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_role_file_parses() {
        for (name, source) in BUILTIN_SOURCES
            .into_iter()
            .chain([(WORKLOAD_ROLE, WORKLOAD_SOURCE)])
        {
            let role = Role::parse(source).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(role.name(), name);
            assert!(!role.description().is_empty(), "{name}");
            assert_eq!(role.source(), source);
            // Built-in roles never deny: a deny would beat another binding.
            assert_eq!(role.deny_mask, 0, "{name} has a deny rule");
        }
        let names: Vec<&str> = builtin_roles().iter().map(|r| r.name()).collect();
        assert_eq!(names, ["owner", "admin", "developer", "viewer"]);
        for r in builtin_roles() {
            assert!(!r.rules().is_empty(), "{} failed closed", r.name());
        }
        assert_eq!(workload_role().name(), "workload");
        assert!(builtin_role("workload").is_none());
        assert!(builtin_role("developer").is_some());
        assert!(builtin_role("nobody").is_none());
        assert!(is_reserved_role_name("workload") && is_reserved_role_name("owner"));
        assert!(!is_reserved_role_name("auditor"));
    }

    #[test]
    fn a_broken_builtin_fails_closed() {
        let role = load("owner", "name: owner\nrules: []\n");
        assert_eq!(role.name(), "owner");
        assert!(role.rules().is_empty());
        assert!(role.description().contains("grants nothing"), "{role:?}");
        let role = load("owner", "name: admin\nrules: [{allow: ['*']}]\n");
        assert_eq!(role.name(), "owner");
        assert!(role.rules().is_empty());
    }
}
