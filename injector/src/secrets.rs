//! The service's resolved secrets, as the wrapper holds them: names checked
//! as environment variable names, values in zeroize-on-drop
//! [`SecretValue`]s.

use std::collections::BTreeMap;

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
                "asked for the secrets of {service}, the server answered for {:?}",
                resolved.service
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
