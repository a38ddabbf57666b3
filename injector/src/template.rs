//! Templates: text with `{{ NAME }}` references, parsed once at start (so a
//! syntax error fails before any network call) and rendered after the fetch.
//!
//! The syntax is deliberately tiny: `{{`, optional spaces or tabs, a secret
//! name (`[A-Za-z_][A-Za-z0-9_]*`), optional spaces or tabs, `}}`. Every
//! `{{` starts a reference; there is no escape, no filter, no logic.

use std::collections::{BTreeMap, BTreeSet};

use warden_types::SecretValue;
use zeroize::Zeroizing;

use crate::Error;
use crate::secrets::is_env_name;

/// Largest template source accepted, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 1024 * 1024;
/// Largest rendered template, in bytes (a small template can reference large
/// values many times).
pub const MAX_RENDERED_BYTES: usize = 16 * 1024 * 1024;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text copied as it is.
    Text(String),
    /// The value of this secret.
    Ref(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        if text.len() > MAX_TEMPLATE_BYTES {
            return Err(Error::Usage(format!(
                "template {origin} is {} bytes; the limit is {MAX_TEMPLATE_BYTES}",
                text.len()
            )));
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            // Only computed for an error: counting lines at every reference
            // would be quadratic in the template's size.
            let line = || {
                1 + text[..text.len() - rest.len() + start]
                    .bytes()
                    .filter(|b| *b == b'\n')
                    .count()
            };
            let Some(end) = after.find("}}") else {
                return Err(Error::Usage(format!(
                    "template {origin} line {}: '{{{{' without a closing '}}}}'",
                    line()
                )));
            };
            let name = after[..end].trim_matches([' ', '\t']);
            if !is_env_name(name) {
                let shown: String = name.chars().take(40).collect();
                return Err(Error::Usage(format!(
                    "template {origin} line {}: {shown:?} is not a secret name \
                     (expected {{{{ NAME }}}} with NAME matching [A-Za-z_][A-Za-z0-9_]*)",
                    line()
                )));
            }
            pieces.push(Piece::Ref(name.to_owned()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self { pieces })
    }

    /// The names this template references.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Ref(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// Renders with `values`. A reference to a name that `values` lacks is
    /// an error unless the name is in `allow_missing` (it renders empty).
    pub fn render(
        &self,
        values: &BTreeMap<String, SecretValue>,
        allow_missing: &BTreeSet<String>,
        origin: &str,
    ) -> Result<Zeroizing<String>, Error> {
        // The exact size first, so the buffer never reallocates (a
        // reallocation would leave a copy of the values in freed memory).
        let mut size = 0usize;
        for piece in &self.pieces {
            size = size.saturating_add(match piece {
                Piece::Text(t) => t.len(),
                Piece::Ref(name) => match values.get(name) {
                    Some(v) => v.len(),
                    None if allow_missing.contains(name) => 0,
                    None => {
                        return Err(Error::Undeliverable(format!(
                            "template {origin} references secret {name}, which the service \
                             does not have (pass --allow-missing {name} to render it empty)"
                        )));
                    }
                },
            });
        }
        if size > MAX_RENDERED_BYTES {
            return Err(Error::Undeliverable(format!(
                "template {origin} renders to {size} bytes; the limit is {MAX_RENDERED_BYTES}"
            )));
        }
        let mut out = Zeroizing::new(String::with_capacity(size));
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Ref(name) => {
                    if let Some(v) = values.get(name) {
                        out.push_str(v.expose());
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretValue> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretValue::new((*v).to_owned()).unwrap()))
            .collect()
    }

    #[test]
    fn references_are_substituted_with_or_without_spaces() {
        let t = Template::parse("url={{ DB_URL }}\nkey={{KEY}} {{\tKEY\t}}!", "t").unwrap();
        let out = t
            .render(
                &values(&[("DB_URL", "postgres://x"), ("KEY", "k")]),
                &BTreeSet::new(),
                "t",
            )
            .unwrap();
        assert_eq!(out.as_str(), "url=postgres://x\nkey=k k!");
        assert_eq!(t.references().collect::<Vec<_>>(), ["DB_URL", "KEY", "KEY"]);
    }

    #[test]
    fn a_missing_reference_fails_unless_allowed() {
        let t = Template::parse("a{{ GONE }}b", "t").unwrap();
        let err = t.render(&values(&[]), &BTreeSet::new(), "t").unwrap_err();
        assert!(matches!(err, Error::Undeliverable(_)));
        assert!(err.to_string().contains("--allow-missing GONE"), "{err}");
        let allowed = BTreeSet::from(["GONE".to_owned()]);
        let out = t.render(&values(&[]), &allowed, "t").unwrap();
        assert_eq!(out.as_str(), "ab");
    }

    #[test]
    fn malformed_references_are_usage_errors_with_their_line() {
        for (text, needle) in [
            ("x\n{{ A", "line 2"),
            ("{{ 1A }}", "not a secret name"),
            ("{{ A B }}", "not a secret name"),
            ("{{}}", "not a secret name"),
            ("{{ ../etc }}", "not a secret name"),
        ] {
            let err = Template::parse(text, "t").unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{text:?}");
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn oversized_templates_and_renderings_are_refused() {
        let big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(matches!(Template::parse(&big, "t"), Err(Error::Usage(_))));
        // 64 KiB value referenced 300 times: 19 MiB.
        let t = Template::parse(&"{{ V }}".repeat(300), "t").unwrap();
        let v = values(&[("V", &"v".repeat(64 * 1024))]);
        assert!(matches!(
            t.render(&v, &BTreeSet::new(), "t"),
            Err(Error::Undeliverable(_))
        ));
    }

    #[test]
    fn text_without_references_is_kept_verbatim() {
        let t = Template::parse("plain } { text }", "t").unwrap();
        let out = t.render(&values(&[]), &BTreeSet::new(), "t").unwrap();
        assert_eq!(out.as_str(), "plain } { text }");
    }
}
