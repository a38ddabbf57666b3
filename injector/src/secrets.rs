//! The service's resolved secrets, as the wrapper holds them: names checked
//! as environment variable names, values in zeroize-on-drop
//! [`SecretValue`]s.

use std::collections::{BTreeMap, BTreeSet};

use warden_api::Resolved;
use warden_types::SecretValue;

use crate::Error;

/// Whether `name` can be an environment variable name that every shell and
/// `env(1)` accept: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Names `--deliver env` refuses unless `--allow-env NAME` allows them
/// (docs/injector.md lists them with the reason for each group): variables
/// that make the dynamic loader, a shell, an interpreter or a library load
/// or run other code, or change where a program looks for programs,
/// libraries or its settings. A secret with such a name would let whoever
/// may write secrets at an inherited scope take over the command. A
/// trailing `*` matches any rest of the name, as in the runtime's
/// `EXEC_ENV_ALLOWLIST` (`LC_*`). Names are matched case-sensitively, as
/// the programs that read them do.
pub const ENV_DENYLIST: &[&str] = &[
    // Which program runs (the wrapper resolves the command with its own
    // PATH in any case).
    "PATH",
    // The dynamic loader, and what glibc itself ignores for setuid programs
    // (ld.so(8), "secure-execution mode").
    "LD_*",
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "MALLOC_TRACE",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
    "TMPDIR",
    "TZDIR",
    // Shells.
    "BASH_ENV",
    "ENV",
    "BASH_FUNC_*",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    // Interpreters and language runtimes.
    "PYTHON*",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "NODE_OPTIONS",
    "NODE_PATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "DOTNET_STARTUP_HOOKS",
    "CORECLR_*",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    // Libraries that load modules named by their configuration.
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "OPENSSL_MODULES",
    // Warden's own: a warden-injector or warden CLI run by the command would
    // take its server, CA or credential from them.
    "WARDEN_SERVER",
    "WARDEN_CA_FILE",
    "WARDEN_CA_PEM",
    "WARDEN_CREDENTIAL",
    "WARDEN_CREDENTIAL_FILE",
    "WARDEN_SECRETS_FD",
    "WARDEN_K8S_TOKEN_FILE",
    "WARDEN_CLUSTER",
];

/// The [`ENV_DENYLIST`] entry that `name` matches, if any.
pub fn env_denylisted(name: &str) -> Option<&'static str> {
    ENV_DENYLIST
        .iter()
        .copied()
        .find(|entry| match entry.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => *entry == name,
        })
}

/// A service's secrets, by name.
#[derive(Debug)]
pub struct Secrets {
    values: BTreeMap<String, SecretValue>,
}

impl Secrets {
    /// Takes the values of a resolve answer for `service`. Every name must
    /// be an environment variable name, whatever the delivery: a set that
    /// works in one mode works in all of them.
    pub fn from_resolved(resolved: Resolved, service: &str) -> Result<Self, Error> {
        if resolved.service != service {
            return Err(Error::Internal(format!(
                "asked for the secrets of {service}, the server answered for \"{}\"",
                crate::error::server_text(&resolved.service)
            )));
        }
        let mut values = BTreeMap::new();
        for (name, value) in resolved.values {
            if !is_env_name(&name) {
                let shown: String = name.chars().take(64).collect();
                return Err(Error::Undeliverable(format!(
                    "secret name {shown:?} is not a valid environment variable name \
                     ([A-Za-z_][A-Za-z0-9_]*)"
                )));
            }
            values.insert(name, value.0);
        }
        Ok(Self { values })
    }

    /// The values by name.
    pub fn values(&self) -> &BTreeMap<String, SecretValue> {
        &self.values
    }

    /// How many secrets there are.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Checks that no name is on [`ENV_DENYLIST`] unless `allowed` (the
    /// `--allow-env` names) holds it exactly: the check for `--deliver env`.
    /// The error names the first such secret, never its value.
    pub fn check_env_names(&self, allowed: &BTreeSet<String>) -> Result<(), Error> {
        for name in self.values.keys() {
            if allowed.contains(name) {
                continue;
            }
            if let Some(entry) = env_denylisted(name) {
                let listed = if entry == name {
                    "listed".to_owned()
                } else {
                    format!("listed as {entry}")
                };
                return Err(Error::Undeliverable(format!(
                    "secret {name} is refused as an environment variable: it can change what \
                     programs load or run ({listed} in docs/injector.md); pass --allow-env \
                     {name} if it is meant, or use --deliver fd"
                )));
            }
        }
        Ok(())
    }

    /// Checks that every value can be an environment variable's value (no
    /// NUL byte): the check for `--deliver env`.
    pub fn check_env_values(&self) -> Result<(), Error> {
        for (name, value) in &self.values {
            if value.expose().contains('\0') {
                return Err(Error::Undeliverable(format!(
                    "secret {name} contains a NUL byte, which an environment variable cannot \
                     hold; deliver it with --deliver fd or a template"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use warden_api::WireValue;

    use super::*;

    fn resolved(service: &str, pairs: &[(&str, &str)]) -> Resolved {
        Resolved {
            service: service.to_owned(),
            values: pairs
                .iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        WireValue(SecretValue::new((*v).to_owned()).unwrap()),
                    )
                })
                .collect(),
            versions: BTreeMap::new(),
        }
    }

    #[test]
    fn env_names_are_the_portable_ones() {
        for ok in ["A", "_", "DB_URL", "a1", "_9"] {
            assert!(is_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "É", "A\0", "PATH/x"] {
            assert!(!is_env_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_name_that_is_not_an_env_name_is_a_clear_error() {
        let err = Secrets::from_resolved(
            resolved("a/b/c/d", &[("OK", "1"), ("NOT-OK", "2")]),
            "a/b/c/d",
        )
        .unwrap_err();
        assert!(matches!(err, Error::Undeliverable(_)));
        assert!(
            err.to_string()
                .contains("\"NOT-OK\" is not a valid environment variable name"),
            "{err}"
        );
    }

    #[test]
    fn an_answer_for_another_service_is_refused() {
        let err = Secrets::from_resolved(resolved("a/b/c/x", &[]), "a/b/c/d").unwrap_err();
        assert!(matches!(err, Error::Internal(_)));
    }

    #[test]
    fn the_denylist_matches_exact_names_and_prefixes_case_sensitively() {
        for (name, entry) in [
            ("PATH", "PATH"),
            ("BASH_ENV", "BASH_ENV"),
            ("ENV", "ENV"),
            ("LD_PRELOAD", "LD_*"),
            ("LD_LIBRARY_PATH", "LD_*"),
            ("LD_", "LD_*"),
            ("BASH_FUNC_ls", "BASH_FUNC_*"),
            ("PYTHONPATH", "PYTHON*"),
            ("PYTHONSTARTUP", "PYTHON*"),
            ("PYTHON_API_KEY", "PYTHON*"),
            ("NODE_OPTIONS", "NODE_OPTIONS"),
            ("_JAVA_OPTIONS", "_JAVA_OPTIONS"),
            ("CORECLR_PROFILER_PATH", "CORECLR_*"),
            ("WARDEN_CREDENTIAL", "WARDEN_CREDENTIAL"),
        ] {
            assert_eq!(env_denylisted(name), Some(entry), "{name}");
        }
        for name in [
            "DB_URL",
            "API_KEY",
            "path",
            "Path",
            "ld_preload",
            "MY_PATH",
            "PATH_PREFIX",
            "ENVIRONMENT",
            "APP_ENV",
            "OLD_PASSWORD",
            "NODE_ENV",
            "WARDEN_TOKEN",
            "TERM",
            "LANG",
            "LC_ALL",
        ] {
            assert_eq!(env_denylisted(name), None, "{name}");
        }
        // Every entry is a name, or a name's start followed by one '*'.
        for entry in ENV_DENYLIST {
            let stem = entry.strip_suffix('*').unwrap_or(entry);
            assert!(
                stem.bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_'),
                "{entry}"
            );
        }
    }

    #[test]
    fn a_denylisted_name_is_refused_in_env_mode_unless_allowed() {
        let value = "$(id > /tmp/pwned)";
        let s = Secrets::from_resolved(
            resolved("a/b/c/d", &[("API_KEY", "k"), ("BASH_ENV", value)]),
            "a/b/c/d",
        )
        .unwrap();
        let err = s.check_env_names(&BTreeSet::new()).unwrap_err();
        assert!(matches!(err, Error::Undeliverable(_)));
        let msg = err.to_string();
        assert!(msg.starts_with("secret BASH_ENV is refused"), "{msg}");
        assert!(msg.contains("--allow-env BASH_ENV"), "{msg}");
        assert!(!msg.contains(value), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        // Allowed by its exact name only.
        let allowed = BTreeSet::from(["BASH_ENV".to_owned()]);
        s.check_env_names(&allowed).unwrap();
        let s =
            Secrets::from_resolved(resolved("a/b/c/d", &[("LD_PRELOAD", "x")]), "a/b/c/d").unwrap();
        let msg = s
            .check_env_names(&BTreeSet::from(["LD_*".to_owned()]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("listed as LD_*"), "{msg}");
    }

    #[test]
    fn a_nul_byte_cannot_go_into_the_environment() {
        let s = Secrets::from_resolved(resolved("a/b/c/d", &[("K", "a\0b")]), "a/b/c/d").unwrap();
        let err = s.check_env_values().unwrap_err();
        assert!(
            err.to_string().contains("secret K contains a NUL byte"),
            "{err}"
        );
        assert!(!err.to_string().contains("a\0b"));
    }
}
