//! What the user types or pipes in, checked before any request: argument
//! parsers several commands share (scope paths, principal ids, names,
//! durations) and readers of hidden input and of bounded text files.
//! Needs no server: offline commands and clap value parsers use it too.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{Context, bail};
use warden_types::{NameError, ScopeKind, ScopePath};
use zeroize::Zeroizing;

use crate::error::usage;

/// Reads a secret: a hidden prompt on a terminal, else one line of stdin.
pub(crate) fn read_hidden(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        Ok(Zeroizing::new(
            rpassword::prompt_password(prompt).context("reading from the terminal")?,
        ))
    } else {
        let mut s = Zeroizing::new(String::new());
        std::io::stdin()
            .read_line(&mut s)
            .context("reading standard input")?;
        let trimmed = Zeroizing::new(s.trim_end_matches(['\n', '\r']).to_owned());
        Ok(trimmed)
    }
}

/// Validates a scope path (of `kind`, if given).
pub(crate) fn scope_path(s: &str, kind: Option<ScopeKind>) -> anyhow::Result<ScopePath> {
    Ok(match kind {
        Some(k) => ScopePath::parse_kind(s, k)?,
        None => ScopePath::parse(s)?,
    })
}

/// Parses a duration: a whole number and a unit, `s`, `m`, `h` or `d`
/// (`90s`, `15m`, `12h`, `30d`); returns seconds.
pub(crate) fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid duration {:?}: give a whole number and a unit s, m, h or d (e.g. 90s, 15m, 12h, 30d)",
            s.chars().take(32).collect::<String>()
        )
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() || digits.len() > 12 {
        return Err(bad());
    }
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(format!("invalid duration {s:?}: must be more than zero"));
    }
    n.checked_mul(unit).ok_or_else(bad)
}

/// Parses a principal id: `user:NAME`, `sa:NAME`,
/// `workload:ORG/PROJECT/ENV/SERVICE`, or a bare `NAME` for `user:NAME`.
pub(crate) fn principal_arg(s: &str) -> Result<String, String> {
    let shown: String = s.chars().take(64).collect();
    let bad = || {
        format!(
            "invalid principal {shown:?}: give user:NAME, sa:NAME (NAME@ORG for members of an \
             organization), workload:ORG/PROJECT/ENV/SERVICE or a bare user NAME[@ORG] (names are \
             lowercase letters, digits and '-')"
        )
    };
    let (kind, name) = s.split_once(':').unwrap_or(("user", s));
    let segment = |s: &str| ScopePath::parse_kind(s, ScopeKind::Organization).is_ok();
    let valid = match kind {
        "user" | "sa" => match name.split_once('@') {
            Some((n, org)) => segment(n) && segment(org),
            None => segment(name),
        },
        "workload" => ScopePath::parse_kind(name, ScopeKind::Service).is_ok(),
        _ => false,
    };
    if valid {
        Ok(format!("{kind}:{name}"))
    } else {
        Err(bad())
    }
}

/// Checks a user, service account or role name (the rules of a path
/// segment).
pub(crate) fn name_arg(s: &str) -> Result<(), NameError> {
    match ScopePath::parse_kind(s, ScopeKind::Organization) {
        Ok(_) => Ok(()),
        Err(_) => Err(NameError::Segment(s.chars().take(64).collect())),
    }
}

/// Reads a new password: asked twice on a terminal, else one line of stdin.
pub(crate) fn new_password(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    let p = read_hidden(prompt)?;
    if p.is_empty() {
        bail!("empty password");
    }
    if std::io::stdin().is_terminal() {
        let again = read_hidden("Repeat the password: ")?;
        if *again != *p {
            bail!("the passwords differ");
        }
    }
    Ok(p)
}

/// Reads a text file (`-`: stdin) of at most `limit` bytes.
pub(crate) fn read_text(file: &Path, limit: u64, what: &str) -> anyhow::Result<String> {
    let shown = file.display();
    let mut bytes = Vec::new();
    if file == Path::new("-") {
        std::io::stdin()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {shown}"))?;
        f.take(limit + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {shown}"))?;
    }
    if bytes.len() as u64 > limit {
        return Err(usage(format!(
            "{what} {shown} is larger than {} KiB",
            limit / 1024
        )));
    }
    String::from_utf8(bytes).map_err(|_| usage(format!("{what} {shown} is not UTF-8 text")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    /// The role file limit, the largest `read_text` is used with.
    const LIMIT: u64 = 64 * 1024;

    #[test]
    fn durations_take_a_number_and_a_unit() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("30d"), Ok(2_592_000));
        for bad in [
            "",
            "s",
            "90",
            "1.5h",
            "-5m",
            "+5m",
            "5 m",
            " 5m",
            "5M",
            "5mm",
            "1h30m",
            "0s",
            "5w",
            "99999999999999999d",
            "१s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(
            parse_duration("5x")
                .err()
                .is_some_and(|e| e.contains("e.g. 90s, 15m, 12h, 30d"))
        );
    }

    #[test]
    fn a_bare_name_is_a_user() {
        assert_eq!(principal_arg("alice"), Ok("user:alice".to_owned()));
        assert_eq!(principal_arg("user:alice"), Ok("user:alice".to_owned()));
        assert_eq!(principal_arg("sa:ci-bot"), Ok("sa:ci-bot".to_owned()));
        assert_eq!(principal_arg("bob@acme"), Ok("user:bob@acme".to_owned()));
        assert_eq!(principal_arg("sa:ci@acme"), Ok("sa:ci@acme".to_owned()));
        assert!(principal_arg("bob@").is_err());
        assert!(principal_arg("bob@acme@x").is_err());
        assert_eq!(
            principal_arg("workload:acme/web/prod/api"),
            Ok("workload:acme/web/prod/api".to_owned())
        );
        for bad in [
            "",
            "Alice",
            "user:",
            "sa:a/b",
            "group:x",
            "workload:acme/web",
            "user:alice:x",
            "../x",
            "a b",
        ] {
            assert!(principal_arg(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn oversized_or_binary_files_are_refused_locally() {
        let dir = std::env::temp_dir().join(format!("warden-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.yaml");
        std::fs::write(&big, vec![b'a'; 64 * 1024 + 1]).unwrap();
        let err = read_text(&big, LIMIT, "role file").unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert!(err.to_string().contains("larger than 64 KiB"));
        let binary = dir.join("bin.yaml");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        let err = read_text(&binary, LIMIT, "role file").unwrap_err();
        assert!(err.to_string().contains("not UTF-8"));
        let ok = dir.join("ok.yaml");
        std::fs::write(&ok, vec![b'a'; 64 * 1024]).unwrap();
        assert_eq!(read_text(&ok, LIMIT, "role file").unwrap().len(), 64 * 1024);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_names_are_usage_errors() {
        let code = |r: anyhow::Result<()>| r.err().map(|e| exit_code(&e));
        assert_eq!(code(name_arg("a/b").map_err(Into::into)), Some(2));
    }
}
