//! The injector's one error type and [`Error::exit_code`], the one place an
//! error becomes the process's exit code (the table is [`EXIT_CODES`], shown
//! by `--help` and in docs/injector.md).

/// Exit codes of the wrapper's own failures. On success the wrapper has
/// become the command (`exec`), so the exit code is the command's own; in
/// `--parent` mode it is the child's code, or 128 + N when signal N killed it.
pub mod code {
    /// Bad command line or bad input files (template syntax, `..`, size limits).
    pub const USAGE: u8 = 64;
    /// The secrets received cannot be delivered as asked: a name that is not
    /// an environment variable name, a name refused in env mode without
    /// `--allow-env`, a NUL byte in a value delivered by environment, a
    /// template referencing a secret the service does not have, an answer
    /// larger than `--max-response-bytes`, an environment with the secrets
    /// too large for `execve` (`E2BIG`).
    pub const UNDELIVERABLE: u8 = 65;
    /// The server stayed unreachable (or kept answering 5xx) through every retry.
    pub const UNAVAILABLE: u8 = 69;
    /// An internal error or an answer the API does not document.
    pub const INTERNAL: u8 = 70;
    /// A template destination is not on tmpfs or ramfs, or cannot be written.
    pub const DESTINATION: u8 = 73;
    /// The server refused the credential (expired, revoked, unknown or invalid).
    pub const CREDENTIAL_REFUSED: u8 = 77;
    /// Missing or unreadable configuration (credential, CA, server address),
    /// or the credential may not read this service (or it does not exist).
    pub const CONFIG: u8 = 78;
    /// The command was found but could not be executed.
    pub const CANNOT_EXECUTE: u8 = 126;
    /// The command was not found.
    pub const NOT_FOUND: u8 = 127;
}

/// The exit-code table, as printed after `--help`.
pub const EXIT_CODES: &str = "\
Exit codes (the wrapper's own failures; otherwise the command's own code):
   64  bad command line or input file (template syntax, '..' in a path, size limits)
   65  secrets cannot be delivered as asked (name not an environment variable name,
       name refused in env mode without --allow-env, NUL in a value delivered by
       environment, template references a missing secret, answer larger than
       --max-response-bytes, environment with the secrets too large for execve)
   69  server unreachable, or answering 5xx, after every retry
   70  internal error, or an answer the API does not document
   73  template destination not on tmpfs/ramfs, or not writable
   77  credential refused by the server (expired, revoked, unknown, invalid)
   78  configuration: no or unreadable credential, CA or server address; the
       credential may not read this service, or the service does not exist
  126  the command cannot be executed
  127  the command was not found
With --parent: the child's exit code, or 128+N if signal N killed it.";

/// Everything the wrapper can fail with. Each message is one line, printed
/// after `warden-injector: `; none contains a secret value or the credential.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command line or input file.
    #[error("{0}")]
    Usage(String),
    /// Missing or unreadable configuration, or a service this credential may
    /// not read.
    #[error("{0}")]
    Config(String),
    /// The server refused the credential; the message is the server's reason.
    #[error("credential refused by the server: {0}")]
    CredentialRefused(String),
    /// Every attempt failed with a retryable error.
    #[error("server unreachable after {attempts} attempts: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        last: String,
    },
    /// The secrets cannot be delivered as asked.
    #[error("{0}")]
    Undeliverable(String),
    /// A template destination is refused or cannot be written.
    #[error("{0}")]
    Destination(String),
    /// The command could not be started.
    #[error("cannot execute {program}: {reason}")]
    Exec {
        /// The program as given.
        program: String,
        /// The OS error.
        reason: String,
        /// Whether the program does not exist (127) rather than failing to
        /// start (126).
        not_found: bool,
    },
    /// A bug, a local resource failure, or an undocumented answer.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The documented exit code of this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => code::USAGE,
            Error::Config(_) => code::CONFIG,
            Error::CredentialRefused(_) => code::CREDENTIAL_REFUSED,
            Error::Unavailable { .. } => code::UNAVAILABLE,
            Error::Undeliverable(_) => code::UNDELIVERABLE,
            Error::Destination(_) => code::DESTINATION,
            Error::Exec {
                not_found: true, ..
            } => code::NOT_FOUND,
            Error::Exec { .. } => code::CANNOT_EXECUTE,
            Error::Internal(_) => code::INTERNAL,
        }
    }
}

/// Longest text from the server (an error's code or message) put in a
/// message, in characters.
pub const MAX_SERVER_TEXT_CHARS: usize = 200;

/// `text` with every control character (C0, DEL and C1: newlines, escape
/// sequences) and every bidirectional formatting character written as
/// `\u{..}`, so that printed it stays one line and cannot move the cursor,
/// recolour the terminal or reorder what follows.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Text the server sent, as it goes into a message: at most
/// [`MAX_SERVER_TEXT_CHARS`] characters (then `...`), control characters
/// escaped ([`escape_controls`]).
pub fn server_text(text: &str) -> String {
    let mut chars = text.chars();
    let mut shown: String = chars.by_ref().take(MAX_SERVER_TEXT_CHARS).collect();
    if chars.next().is_some() {
        shown.push_str("...");
    }
    escape_controls(&shown)
}

/// A JSON decoding error described by its kind and position only:
/// serde_json's own message can quote the input (`invalid type: string
/// "..."`), and the input here holds secret values.
pub fn json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "a read error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "JSON of another shape",
        serde_json::error::Category::Eof => "JSON cut short",
    };
    format!("{what} at line {}, column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_server_text_is_bounded() {
        let forged =
            "token revoked\n\u{1b}[2K\rwarden-injector: all good\u{7}\u{9b}31m\u{202e}x\ty";
        let shown = escape_controls(forged);
        assert_eq!(
            shown,
            "token revoked\\u{a}\\u{1b}[2K\\u{d}warden-injector: all good\\u{7}\\u{9b}31m\\u{202e}x\\u{9}y"
        );
        assert!(!shown.chars().any(|c| c.is_control()));
        // Printable text, non-ASCII included, is kept.
        assert_eq!(escape_controls("café – ok {}"), "café – ok {}");
        assert_eq!(
            server_text(&"é".repeat(MAX_SERVER_TEXT_CHARS)),
            "é".repeat(200)
        );
        let long = server_text(&format!("{}\n", "a".repeat(5000)));
        assert_eq!(long, format!("{}...", "a".repeat(MAX_SERVER_TEXT_CHARS)));
        assert_eq!(server_text("a\nb"), "a\\u{a}b");
    }

    #[test]
    fn json_errors_name_their_kind_and_position_never_the_input() {
        let secret = "SECRET-VALUE-4711";
        // What the review saw: serde_json's own message quotes the value.
        let e = serde_json::from_str::<warden_api::Resolved>(&format!(
            r#"{{"service":"a/b/c/d","values":"{secret}"}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains(secret), "{e}");
        for (input, kind) in [
            (
                format!(r#"{{"service":"a/b/c/d","values":"{secret}"}}"#),
                "JSON of another shape at line 1, column",
            ),
            (format!(r#"["{secret}"]"#), "JSON of another shape"),
            (format!(r#"{{"service":{secret}}}"#), "invalid JSON"),
            (format!(r#"{{"service":"{secret}"#), "JSON cut short"),
        ] {
            let e = serde_json::from_str::<warden_api::Resolved>(&input).unwrap_err();
            let shown = json_error(&e);
            assert!(shown.starts_with(kind), "{input}: {shown}");
            assert!(!shown.contains("SECRET"), "{shown}");
        }
    }

    #[test]
    fn every_code_is_distinct_and_in_the_help_table() {
        let all = [
            code::USAGE,
            code::UNDELIVERABLE,
            code::UNAVAILABLE,
            code::INTERNAL,
            code::DESTINATION,
            code::CREDENTIAL_REFUSED,
            code::CONFIG,
            code::CANNOT_EXECUTE,
            code::NOT_FOUND,
        ];
        let distinct: std::collections::BTreeSet<u8> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len());
        for c in all {
            assert!(
                EXIT_CODES.contains(&format!("  {c}  ")),
                "{c} missing from EXIT_CODES"
            );
        }
    }
}
