//! Effective secrets of a service: scope inheritance and `${NAME}` references.
//!
//! Merge order is project < environment < service (the narrower scope wins).
//! A value may reference another effective secret as `${NAME}`; `$$` is a
//! literal `$`. References resolve recursively; a cycle or a reference to a
//! name that does not exist is an error naming the keys involved.

use std::collections::BTreeMap;

use warden_types::SecretValue;
use zeroize::Zeroizing;

/// Why interpolation failed. Messages name keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// `A -> B -> A`.
    #[error("reference cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// `${MISSING}` in the value of `key`.
    #[error("{key} references ${{{missing}}}, which is not defined for this service")]
    Dangling {
        /// The key whose value holds the reference.
        key: String,
        /// The missing name.
        missing: String,
    },
    /// `${` without a closing `}`, an invalid name inside, or a value that
    /// references would make larger than the size limit.
    #[error(
        "{key} has a malformed reference (use ${{NAME}}, or $$ for a literal $), or resolves past the 64 KiB value limit"
    )]
    Malformed {
        /// The key whose value is malformed.
        key: String,
    },
}

/// Resolves every value of `merged`.
pub fn interpolate(
    merged: &BTreeMap<String, SecretValue>,
) -> Result<BTreeMap<String, SecretValue>, ResolveError> {
    let mut done: BTreeMap<String, SecretValue> = BTreeMap::new();
    for key in merged.keys() {
        let mut stack = Vec::new();
        resolve_key(key, merged, &mut done, &mut stack)?;
    }
    Ok(done)
}

fn resolve_key(
    key: &str,
    merged: &BTreeMap<String, SecretValue>,
    done: &mut BTreeMap<String, SecretValue>,
    stack: &mut Vec<String>,
) -> Result<(), ResolveError> {
    if done.contains_key(key) {
        return Ok(());
    }
    if let Some(pos) = stack.iter().position(|k| k == key) {
        let mut cycle = stack[pos..].to_vec();
        cycle.push(key.to_owned());
        return Err(ResolveError::Cycle(cycle));
    }
    let Some(raw) = merged.get(key) else {
        return Ok(());
    };
    stack.push(key.to_owned());
    let raw = raw.expose();
    let mut out = Zeroizing::new(String::with_capacity(raw.len()));
    let mut rest = raw;
    let too_large = || ResolveError::Malformed {
        key: key.to_owned(),
    };
    while let Some(i) = rest.find('$') {
        push(&mut out, &rest[..i]).map_err(|_| too_large())?;
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or_else(|| ResolveError::Malformed {
                key: key.to_owned(),
            })?;
            let name = &tail[..end];
            if warden_types::SecretName::parse(name).is_err() {
                return Err(ResolveError::Malformed {
                    key: key.to_owned(),
                });
            }
            if !merged.contains_key(name) {
                return Err(ResolveError::Dangling {
                    key: key.to_owned(),
                    missing: name.to_owned(),
                });
            }
            resolve_key(name, merged, done, stack)?;
            if let Some(v) = done.get(name) {
                push(&mut out, v.expose()).map_err(|_| too_large())?;
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    stack.pop();
    // The resolved value may exceed the size limit only through references;
    // report that as a malformed reference rather than truncate.
    let value =
        SecretValue::new(std::mem::take(&mut *out)).map_err(|_| ResolveError::Malformed {
            key: key.to_owned(),
        })?;
    done.insert(key.to_owned(), value);
    Ok(())
}

/// Appends to a plaintext buffer without leaving copies behind: growth moves
/// into a new buffer and the old one is wiped as it drops. Refuses to grow
/// past the value size limit (references cannot inflate a value).
fn push(out: &mut Zeroizing<String>, s: &str) -> Result<(), ()> {
    let needed = out.len() + s.len();
    if needed > warden_types::MAX_VALUE_BYTES {
        return Err(());
    }
    if needed > out.capacity() {
        let mut bigger = Zeroizing::new(String::with_capacity(
            needed
                .max(out.capacity() * 2)
                .min(warden_types::MAX_VALUE_BYTES),
        ));
        bigger.push_str(out);
        *out = bigger;
    }
    out.push_str(s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretValue::new(v.to_string()).unwrap()))
            .collect()
    }

    fn plain(m: &BTreeMap<String, SecretValue>) -> Vec<(String, String)> {
        m.iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect()
    }

    #[test]
    fn references_resolve_recursively_and_dollars_escape() {
        let m = map(&[
            ("HOST", "db.internal"),
            ("USER", "app"),
            ("URL", "postgres://${USER}@${HOST_PORT}/x"),
            ("HOST_PORT", "${HOST}:5432"),
            ("PRICE", "$$5 and $ alone"),
        ]);
        let r = interpolate(&m).unwrap();
        assert_eq!(
            plain(&r),
            vec![
                ("HOST".into(), "db.internal".into()),
                ("HOST_PORT".into(), "db.internal:5432".into()),
                ("PRICE".into(), "$5 and $ alone".into()),
                ("URL".into(), "postgres://app@db.internal:5432/x".into()),
                ("USER".into(), "app".into()),
            ]
        );
    }

    #[test]
    fn cycles_are_errors_naming_the_keys() {
        let m = map(&[("A", "${B}"), ("B", "x${C}"), ("C", "${A}")]);
        assert_eq!(
            interpolate(&m).unwrap_err().to_string(),
            "reference cycle: A -> B -> C -> A"
        );
        let self_ref = map(&[("A", "${A}")]);
        assert!(matches!(
            interpolate(&self_ref),
            Err(ResolveError::Cycle(_))
        ));
    }

    #[test]
    fn dangling_and_malformed_references_are_errors() {
        let e = interpolate(&map(&[("A", "${NOPE}")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "A references ${NOPE}, which is not defined for this service"
        );
        for bad in ["${", "${A", "${1X}", "${a-b}"] {
            assert!(
                matches!(
                    interpolate(&map(&[("K", bad), ("A", "x")])),
                    Err(ResolveError::Malformed { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn references_cannot_inflate_a_value_past_the_limit() {
        let big = "x".repeat(40 * 1024);
        let m = map(&[("B", big.as_str()), ("A", "${B}${B}")]);
        assert!(matches!(interpolate(&m), Err(ResolveError::Malformed { key }) if key == "A"));
    }

    #[test]
    fn errors_never_contain_values() {
        let e = interpolate(&map(&[("A", "s3cr3t-${NOPE}")])).unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"));
    }
}
