//! The shapes of names and paths as ECMA-262 regular expressions, for the
//! OpenAPI document (JSON Schema `pattern`). Each states exactly what the
//! parser in this crate (or the one named) accepts; the tests below
//! generate strings from every pattern and parse them, so a pattern cannot
//! promise what the parser refuses.

macro_rules! seg {
    () => {
        "[a-z0-9][a-z0-9-]{0,62}"
    };
}

/// A pod's name as a watching wrapper reports it ([`crate::is_pod_name`]):
/// a local pod's, or a Kubernetes pod's (a DNS subdomain).
pub const POD_NAME: &str = "^[a-z0-9][a-z0-9.-]{0,252}$";

/// One name: an organization, project, environment, service, role or user
/// name ([`crate::ScopePath::parse_kind`] at organization level).
pub const NAME: &str = concat!("^", seg!(), "$");
/// Any scope path of one to four names ([`crate::ScopePath::parse`]).
pub const SCOPE_PATH: &str = concat!("^", seg!(), "(/", seg!(), "){0,3}$");
/// `ORG/PROJECT`.
pub const PROJECT_PATH: &str = concat!("^", seg!(), "/", seg!(), "$");
/// `ORG/PROJECT/ENV`.
pub const ENV_PATH: &str = concat!("^", seg!(), "(/", seg!(), "){2}$");
/// Where secrets live: a project, environment or service.
pub const SECRET_SCOPE: &str = concat!("^", seg!(), "(/", seg!(), "){1,3}$");
/// `ORG/PROJECT/ENV/SERVICE[/POD]`: a shell's target.
pub const SHELL_TARGET: &str = concat!("^", seg!(), "(/", seg!(), "){3,4}$");
/// `ORG/PROJECT/ENV/SERVICE`.
pub const SERVICE_PATH: &str = concat!("^", seg!(), "(/", seg!(), "){3}$");
/// Where a role can be bound: `/`, `ORG`, `ORG/PROJECT` or
/// `ORG/PROJECT/ENV`.
pub const BINDING_SCOPE: &str = concat!("^(/|", seg!(), "(/", seg!(), "){0,2})$");
/// A login name: `NAME`, or `NAME@ORG` for a member of an organization.
pub const LOGIN: &str = concat!("^", seg!(), "(@", seg!(), ")?$");
/// What a policy decides on: `/` or any scope path.
pub const RESOURCE: &str = concat!("^(/|", seg!(), "(/", seg!(), "){0,3})$");
/// A secret name ([`crate::SecretName::parse`]).
pub const SECRET_NAME: &str = "^[A-Za-z_][A-Za-z0-9_]{0,127}$";
/// A user or service account: `user:NAME[@ORG]`, `sa:NAME[@ORG]`
/// (`warden_pipeline::identity::parse_principal`).
pub const MEMBER: &str = concat!("^(user|sa):", seg!(), "(@", seg!(), ")?$");
/// Any principal: a member or `workload:ORG/PROJECT/ENV/SERVICE`.
pub const PRINCIPAL: &str = concat!(
    "^((user|sa):",
    seg!(),
    "(@",
    seg!(),
    ")?|workload:",
    seg!(),
    "(/",
    seg!(),
    "){3})$"
);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::string::string_regex;

    use super::*;
    use crate::{ScopeKind, ScopePath, SecretName};

    fn matching(pattern: &str) -> impl Strategy<Value = String> {
        // proptest's regex syntax takes the anchors as literal assertions;
        // strip them, the generated string is the whole match.
        let inner = &pattern[1..pattern.len() - 1];
        string_regex(inner).expect("pattern compiles")
    }

    proptest! {
        #[test]
        fn names_parse(s in matching(NAME)) {
            prop_assert!(ScopePath::parse_kind(&s, ScopeKind::Organization).is_ok());
        }

        #[test]
        fn scope_paths_parse(s in matching(SCOPE_PATH)) {
            prop_assert!(ScopePath::parse(&s).is_ok());
        }

        #[test]
        fn kinds_parse(p in matching(PROJECT_PATH), e in matching(ENV_PATH), s in matching(SECRET_SCOPE)) {
            prop_assert!(ScopePath::parse_kind(&p, ScopeKind::Project).is_ok());
            prop_assert!(ScopePath::parse_kind(&e, ScopeKind::Environment).is_ok());
            prop_assert!(ScopePath::parse(&s).is_ok_and(|s| s.kind() != ScopeKind::Organization));
        }

        #[test]
        fn service_paths_parse(s in matching(SERVICE_PATH)) {
            prop_assert!(ScopePath::parse_kind(&s, ScopeKind::Service).is_ok());
        }

        #[test]
        fn binding_scopes_parse(s in matching(BINDING_SCOPE)) {
            prop_assert!(s == "/" || ScopePath::parse(&s).is_ok_and(|p| p.kind() != ScopeKind::Service));
        }

        #[test]
        fn resources_parse(s in matching(RESOURCE)) {
            prop_assert!(s == "/" || ScopePath::parse(&s).is_ok());
        }

        #[test]
        fn logins_parse(s in matching(LOGIN)) {
            prop_assert!(s.split('@').all(|n| ScopePath::parse_kind(n, ScopeKind::Organization).is_ok()));
        }

        #[test]
        fn pod_names_parse(s in matching(POD_NAME)) {
            prop_assert!(crate::is_pod_name(&s));
        }

        #[test]
        fn secret_names_parse(s in matching(SECRET_NAME)) {
            prop_assert!(SecretName::parse(&s).is_ok());
        }
    }
}
