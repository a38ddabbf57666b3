//! Resource names and scope paths.

use std::fmt;
use std::str::FromStr;

/// Why a name or path was rejected. The message names the offending part and
/// the rule, never more than the first 64 bytes of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A path segment is not `[a-z0-9][a-z0-9-]{0,62}`.
    #[error(
        "invalid name {0:?}: names are 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit"
    )]
    Segment(String),
    /// The path has the wrong number of segments for what was asked.
    #[error("invalid path {path:?}: expected {expected}")]
    Depth {
        /// The path as given (truncated).
        path: String,
        /// What shape was expected, e.g. "ORG/PROJECT/ENV".
        expected: &'static str,
    },
    /// A secret name is not an environment-variable name.
    #[error(
        "invalid secret name {0:?}: names are 1-128 characters of A-Z, a-z, 0-9 and '_', not starting with a digit"
    )]
    SecretName(String),
    /// An environment mode other than production, staging or development.
    #[error("invalid environment mode {0:?}: expected production, staging or development")]
    Mode(String),
}

fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

fn valid_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// The level a scope path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScopeKind {
    /// `ORG`
    Organization,
    /// `ORG/PROJECT`
    Project,
    /// `ORG/PROJECT/ENV`
    Environment,
    /// `ORG/PROJECT/ENV/SERVICE`
    Service,
}

impl ScopeKind {
    /// The lowercase name used on the wire and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "organization",
            Self::Project => "project",
            Self::Environment => "environment",
            Self::Service => "service",
        }
    }

    /// The path shape, for error messages.
    pub fn shape(self) -> &'static str {
        match self {
            Self::Organization => "ORG",
            Self::Project => "ORG/PROJECT",
            Self::Environment => "ORG/PROJECT/ENV",
            Self::Service => "ORG/PROJECT/ENV/SERVICE",
        }
    }

    fn from_depth(depth: usize) -> Option<Self> {
        match depth {
            1 => Some(Self::Organization),
            2 => Some(Self::Project),
            3 => Some(Self::Environment),
            4 => Some(Self::Service),
            _ => None,
        }
    }
}

/// A validated `org[/project[/env[/service]]]` path.
///
/// Stored as the joined string; segments are validated so the `/` separator is
/// unambiguous and no `..`, `.` or empty segment can exist.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScopePath(String);

impl ScopePath {
    /// Parses any path of one to four segments.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let depth = s.split('/').count();
        if depth > 4 || s.is_empty() {
            return Err(NameError::Depth {
                path: shown(s),
                expected: "ORG, ORG/PROJECT, ORG/PROJECT/ENV or ORG/PROJECT/ENV/SERVICE",
            });
        }
        if let Some(bad) = s.split('/').find(|seg| !valid_segment(seg)) {
            return Err(NameError::Segment(shown(bad)));
        }
        Ok(Self(s.to_owned()))
    }

    /// Parses a path that must be of the given kind.
    pub fn parse_kind(s: &str, kind: ScopeKind) -> Result<Self, NameError> {
        let path = Self::parse(s).map_err(|e| match e {
            NameError::Depth { path, .. } => NameError::Depth {
                path,
                expected: kind.shape(),
            },
            other => other,
        })?;
        if path.kind() != kind {
            return Err(NameError::Depth {
                path: shown(s),
                expected: kind.shape(),
            });
        }
        Ok(path)
    }

    /// The joined path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// What level this path names.
    pub fn kind(&self) -> ScopeKind {
        // A parsed path has one to four segments.
        ScopeKind::from_depth(self.segments().count()).unwrap_or(ScopeKind::Service)
    }

    /// The organization (first segment).
    pub fn org(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The enclosing scope, or `None` for an organization.
    pub fn parent(&self) -> Option<ScopePath> {
        self.0.rfind('/').map(|i| Self(self.0[..i].to_owned()))
    }

    /// This path and every enclosing one, outermost first.
    pub fn ancestors_and_self(&self) -> Vec<ScopePath> {
        let mut out = Vec::with_capacity(4);
        let mut cur = Some(self.clone());
        while let Some(p) = cur {
            cur = p.parent();
            out.push(p);
        }
        out.reverse();
        out
    }

    /// The scopes whose secrets this path takes, nearest last: each
    /// enclosing one below the organization, and itself (for a service:
    /// its project, environment and itself).
    pub fn inherited_scopes(&self) -> Vec<String> {
        self.ancestors_and_self()
            .into_iter()
            .skip(1)
            .map(|p| p.0)
            .collect()
    }

    /// Whether `self` is `other` or encloses it.
    pub fn contains(&self, other: &ScopePath) -> bool {
        other.0 == self.0
            || (other.0.len() > self.0.len()
                && other.0.starts_with(&self.0)
                && other.0.as_bytes()[self.0.len()] == b'/')
    }
}

impl fmt::Display for ScopePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ScopePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopePath({})", self.0)
    }
}

impl FromStr for ScopePath {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A secret's name: an environment-variable name, so that every secret can be
/// injected into a process environment unchanged.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(String);

impl SecretName {
    /// Parses `[A-Za-z_][A-Za-z0-9_]{0,127}`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && !b[0].is_ascii_digit()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::SecretName(shown(s)))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretName({})", self.0)
    }
}

impl FromStr for SecretName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An environment's mode (Qovery's modes). Built-in roles treat production
/// more strictly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnvMode {
    /// Live customer traffic.
    Production,
    /// Pre-production.
    Staging,
    /// Everything else.
    Development,
}

impl EnvMode {
    /// The lowercase name used on the wire, in the CLI and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Staging => "staging",
            Self::Development => "development",
        }
    }
}

impl FromStr for EnvMode {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "production" => Ok(Self::Production),
            "staging" => Ok(Self::Staging),
            "development" => Ok(Self::Development),
            other => Err(NameError::Mode(shown(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_paths_accept_the_documented_shapes() {
        for (s, kind) in [
            ("acme", ScopeKind::Organization),
            ("acme/shop", ScopeKind::Project),
            ("acme/shop/prod", ScopeKind::Environment),
            ("acme/shop/prod/api-2", ScopeKind::Service),
            ("0/a-/b/c", ScopeKind::Service),
        ] {
            assert_eq!(ScopePath::parse(s).map(|p| p.kind()), Ok(kind), "{s}");
        }
    }

    #[test]
    fn scope_paths_reject_traversal_and_bad_characters() {
        let long = "a".repeat(64);
        for s in [
            "",
            "/",
            "acme/",
            "/acme",
            "acme//shop",
            "..",
            "acme/../x",
            "acme/./x",
            "Acme",
            "-acme",
            "acme/shop/prod/api/extra",
            "acme shop",
            "acme%2f",
            "acme\0",
            "acmé",
            "a;drop table",
            long.as_str(),
        ] {
            assert!(ScopePath::parse(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn parse_kind_names_the_expected_shape() {
        let err = ScopePath::parse_kind("acme/shop", ScopeKind::Environment).unwrap_err();
        assert!(err.to_string().contains("ORG/PROJECT/ENV"), "{err}");
    }

    #[test]
    fn containment_respects_segment_boundaries() {
        let p = |s| ScopePath::parse(s).unwrap();
        assert!(p("acme").contains(&p("acme/shop/prod")));
        assert!(p("acme/shop").contains(&p("acme/shop")));
        assert!(!p("acme").contains(&p("acme2/shop")));
        assert!(!p("acme/shop/prod").contains(&p("acme/shop")));
        assert_eq!(
            p("acme/shop/prod")
                .ancestors_and_self()
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect::<Vec<_>>(),
            ["acme", "acme/shop", "acme/shop/prod"]
        );
    }

    #[test]
    fn secret_names_are_environment_variable_names() {
        for ok in ["DATABASE_URL", "_x", "a1", &"A".repeat(128)] {
            assert!(SecretName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "../X", "Ä", &"A".repeat(129)] {
            assert!(SecretName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_service_inherits_its_project_environment_and_itself() {
        let p = ScopePath::parse("acme/shop/prod/api").unwrap();
        assert_eq!(
            p.inherited_scopes(),
            ["acme/shop", "acme/shop/prod", "acme/shop/prod/api"]
        );
        assert!(
            ScopePath::parse("acme")
                .unwrap()
                .inherited_scopes()
                .is_empty()
        );
    }
}
