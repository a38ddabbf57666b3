//! Effective secrets of a service: scope inheritance and `${NAME}` references.
//!
//! Merge order is project < environment < service (the narrower scope wins).
//! A value may reference another effective secret as `${NAME}`; `$$` is a
//! literal `$`. References resolve recursively; a cycle or a reference to a
//! name that does not exist is an error naming the keys involved.
//!
//! Resolution is iterative (an explicit stack, never native recursion), so
//! no input can exhaust the thread's stack. It is bounded three ways, each
//! a client error naming keys, never values:
//! - a chain of references nests at most [`MAX_REFERENCE_DEPTH`] deep;
//! - at most [`MAX_REFERENCE_EXPANSIONS`] references are expanded in all;
//! - at most [`MAX_EXPANDED_BYTES`] are copied in through references in all
//!   (and each value stays within the 64 KiB value limit).
//!
//! With at most [`warden_types::MAX_KEYS_PER_SCOPE`] keys per scope, a
//! service has at most three times that many effective keys, so the work of
//! one resolve is bounded whatever the stored values are.

use std::collections::BTreeMap;

use warden_types::{
    MAX_EXPANDED_BYTES, MAX_REFERENCE_DEPTH, MAX_REFERENCE_EXPANSIONS, SecretValue,
};
use zeroize::Zeroizing;

/// How many keys of an over-deep chain an error names.
const CHAIN_SHOWN: usize = 5;

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
    /// A chain of references nests deeper than [`MAX_REFERENCE_DEPTH`].
    #[error(
        "references nest deeper than {MAX_REFERENCE_DEPTH} (the limit): {} -> ...; shorten the chain",
        .chain.join(" -> ")
    )]
    TooDeep {
        /// The first keys of the chain, from the one being resolved.
        chain: Vec<String>,
    },
    /// Resolving would expand more references, or copy in more bytes
    /// through them, than one resolve may.
    #[error(
        "resolving these references is too much work (more than {MAX_REFERENCE_EXPANSIONS} references expanded or {} MiB copied in; stopped at {key}): reference fewer or smaller values",
        MAX_EXPANDED_BYTES / (1024 * 1024)
    )]
    TooMuchWork {
        /// The key being resolved when the budget ran out.
        key: String,
    },
}

/// Resolves every value of `merged`.
pub fn interpolate(
    merged: &BTreeMap<String, SecretValue>,
) -> Result<BTreeMap<String, SecretValue>, ResolveError> {
    let mut r = Resolver {
        merged,
        done: BTreeMap::new(),
        expansions: 0,
        expanded_bytes: 0,
    };
    for key in merged.keys() {
        r.resolve(key)?;
    }
    Ok(r.done)
}

/// One value being resolved: its key, the raw text not yet scanned, and
/// the output so far.
struct Frame<'a> {
    key: &'a str,
    rest: &'a str,
    out: Zeroizing<String>,
}

/// What scanning a frame found next.
enum Next<'a> {
    /// The value is fully scanned.
    End,
    /// `${name}`, to be expanded into the frame.
    Reference(&'a str),
}

struct Resolver<'a> {
    merged: &'a BTreeMap<String, SecretValue>,
    done: BTreeMap<String, SecretValue>,
    expansions: usize,
    expanded_bytes: usize,
}

impl<'a> Resolver<'a> {
    /// A frame for `key`, or `None` if the service has no such key.
    fn frame(&self, key: &str) -> Option<Frame<'a>> {
        let (key, raw) = self.merged.get_key_value(key)?;
        let raw = raw.expose();
        Some(Frame {
            key,
            rest: raw,
            out: Zeroizing::new(String::with_capacity(raw.len())),
        })
    }

    /// Resolves `root` and every key it references, depth first, with an
    /// explicit stack: a frame is suspended at a reference until the
    /// referenced value is done.
    fn resolve(&mut self, root: &'a str) -> Result<(), ResolveError> {
        if self.done.contains_key(root) {
            return Ok(());
        }
        let Some(first) = self.frame(root) else {
            return Ok(());
        };
        let mut stack = vec![first];
        while let Some(top) = stack.last_mut() {
            match scan(top)? {
                Next::End => {
                    let Some(finished) = stack.pop() else { break };
                    let key = finished.key;
                    // The resolved value may exceed the size limit only
                    // through references; report that as a malformed
                    // reference rather than truncate.
                    let mut out = finished.out;
                    let value = SecretValue::new(std::mem::take(&mut *out)).map_err(|_| {
                        ResolveError::Malformed {
                            key: key.to_owned(),
                        }
                    })?;
                    self.done.insert(key.to_owned(), value);
                    if let Some(parent) = stack.last_mut() {
                        self.expand(parent, key)?;
                    }
                }
                Next::Reference(name) => {
                    let key = top.key;
                    self.expansions += 1;
                    if self.expansions > MAX_REFERENCE_EXPANSIONS {
                        return Err(ResolveError::TooMuchWork {
                            key: key.to_owned(),
                        });
                    }
                    if self.done.contains_key(name) {
                        self.expand(top, name)?;
                        continue;
                    }
                    if let Some(pos) = stack.iter().position(|f| f.key == name) {
                        let mut cycle: Vec<String> =
                            stack[pos..].iter().map(|f| f.key.to_owned()).collect();
                        cycle.push(name.to_owned());
                        return Err(ResolveError::Cycle(cycle));
                    }
                    // `stack.len() - 1` references are being followed; this
                    // one would be one more.
                    if stack.len() > MAX_REFERENCE_DEPTH {
                        return Err(ResolveError::TooDeep {
                            chain: stack
                                .iter()
                                .take(CHAIN_SHOWN)
                                .map(|f| f.key.to_owned())
                                .collect(),
                        });
                    }
                    let Some(next) = self.frame(name) else {
                        return Err(ResolveError::Dangling {
                            key: key.to_owned(),
                            missing: name.to_owned(),
                        });
                    };
                    stack.push(next);
                }
            }
        }
        Ok(())
    }

    /// Appends the resolved value of `name` to `frame`, within the budget.
    fn expand(&mut self, frame: &mut Frame<'a>, name: &str) -> Result<(), ResolveError> {
        let Some(value) = self.done.get(name) else {
            return Ok(());
        };
        let value = value.expose();
        self.expanded_bytes += value.len();
        if self.expanded_bytes > MAX_EXPANDED_BYTES {
            return Err(ResolveError::TooMuchWork {
                key: frame.key.to_owned(),
            });
        }
        push(&mut frame.out, value).map_err(|_| ResolveError::Malformed {
            key: frame.key.to_owned(),
        })
    }
}

/// Copies literal text of `frame` to its output up to the next reference
/// (consumed, and returned) or the end.
fn scan<'a>(frame: &mut Frame<'a>) -> Result<Next<'a>, ResolveError> {
    let malformed = |key: &str| ResolveError::Malformed {
        key: key.to_owned(),
    };
    while let Some(i) = frame.rest.find('$') {
        let (literal, after) = (&frame.rest[..i], &frame.rest[i + 1..]);
        push(&mut frame.out, literal).map_err(|_| malformed(frame.key))?;
        if let Some(tail) = after.strip_prefix('$') {
            push(&mut frame.out, "$").map_err(|_| malformed(frame.key))?;
            frame.rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or_else(|| malformed(frame.key))?;
            let name = &tail[..end];
            if warden_types::SecretName::parse(name).is_err() {
                return Err(malformed(frame.key));
            }
            frame.rest = &tail[end + 1..];
            return Ok(Next::Reference(name));
        } else {
            push(&mut frame.out, "$").map_err(|_| malformed(frame.key))?;
            frame.rest = after;
        }
    }
    push(&mut frame.out, frame.rest).map_err(|_| malformed(frame.key))?;
    frame.rest = "";
    Ok(Next::End)
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

    /// A chain `K1=${K2}`, `K2=${K3}`, ... of `n` keys; the last is a
    /// literal.
    fn chain(n: usize, name: impl Fn(usize) -> String) -> BTreeMap<String, SecretValue> {
        (1..=n)
            .map(|i| {
                let v = if i == n {
                    "end".to_owned()
                } else {
                    format!("${{{}}}", name(i + 1))
                };
                (name(i), SecretValue::new(v).unwrap())
            })
            .collect()
    }

    /// Regression: resolution recursed once per reference, so a chain of
    /// 30,000 keys overflowed the stack and aborted the whole server (every
    /// tenant), again at each restart. It must fail cleanly, naming the
    /// start of the chain, on an ordinary test thread's stack.
    #[test]
    fn a_30000_deep_reference_chain_is_refused_without_overflowing_the_stack() {
        let m = chain(30_000, |i| format!("K{i}"));
        let e = interpolate(&m).unwrap_err();
        assert_eq!(
            e,
            ResolveError::TooDeep {
                chain: ["K1", "K2", "K3", "K4", "K5"].map(String::from).to_vec()
            }
        );
        assert_eq!(
            e.to_string(),
            "references nest deeper than 64 (the limit): K1 -> K2 -> K3 -> K4 -> K5 -> ...; shorten the chain"
        );
        // The same on a thread with a deliberately small stack (64 KiB):
        // the resolver's own stack use does not grow with the chain.
        let small = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || interpolate(&m).map(|_| ()))
            .unwrap()
            .join()
            .unwrap();
        assert!(matches!(small, Err(ResolveError::TooDeep { .. })));
    }

    #[test]
    fn chains_up_to_the_depth_limit_resolve() {
        let name = |i: usize| format!("K{i:03}");
        // 65 keys: K001 follows 64 references to reach K065.
        let m = chain(MAX_REFERENCE_DEPTH + 1, name);
        let r = interpolate(&m).unwrap();
        assert!(r.values().all(|v| v.expose() == "end"));
        assert_eq!(r.len(), MAX_REFERENCE_DEPTH + 1);
        let m = chain(MAX_REFERENCE_DEPTH + 2, name);
        assert!(matches!(
            interpolate(&m),
            Err(ResolveError::TooDeep { chain }) if chain[0] == "K001"
        ));
    }

    #[test]
    fn cycles_longer_than_the_depth_limit_are_refused() {
        let n = MAX_REFERENCE_DEPTH * 3;
        let m: BTreeMap<String, SecretValue> = (0..n)
            .map(|i| {
                let v = format!("${{K{:03}}}", (i + 1) % n);
                (format!("K{i:03}"), SecretValue::new(v).unwrap())
            })
            .collect();
        assert!(matches!(interpolate(&m), Err(ResolveError::TooDeep { .. })));
    }

    /// Small values referencing one large value cannot make a resolve copy
    /// more than the budget.
    #[test]
    fn references_cannot_amplify_past_the_byte_budget() {
        let big = "x".repeat(warden_types::MAX_VALUE_BYTES);
        let mut m = map(&[("BIG", big.as_str())]);
        let copies = MAX_EXPANDED_BYTES / warden_types::MAX_VALUE_BYTES + 1;
        for i in 0..copies {
            m.insert(
                format!("C{i:04}"),
                SecretValue::new("${BIG}".to_owned()).unwrap(),
            );
        }
        let e = interpolate(&m).unwrap_err();
        assert!(matches!(e, ResolveError::TooMuchWork { .. }), "{e}");
        // One fewer fits.
        m.remove(&format!("C{:04}", copies - 1));
        assert_eq!(interpolate(&m).unwrap().len(), copies);
    }

    #[test]
    fn references_cannot_exceed_the_expansion_budget() {
        // Values of 64 KiB made of `${E}` (E empty): 16,384 references each.
        let refs = "${E}".repeat(warden_types::MAX_VALUE_BYTES / 4);
        let mut m = map(&[("E", "")]);
        let per_value = warden_types::MAX_VALUE_BYTES / 4;
        for i in 0..(MAX_REFERENCE_EXPANSIONS / per_value + 1) {
            m.insert(format!("R{i}"), SecretValue::new(refs.clone()).unwrap());
        }
        assert!(matches!(
            interpolate(&m),
            Err(ResolveError::TooMuchWork { .. })
        ));
    }

    #[test]
    fn errors_never_contain_values() {
        let e = interpolate(&map(&[("A", "s3cr3t-${NOPE}")])).unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"));
    }
}
