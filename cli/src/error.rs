//! Errors the CLI raises itself, and [`exit_code`]: the one place an error
//! becomes the process's exit code (the table is in the crate docs).

use warden_api::ClientError;

/// Bad command-line input caught before any request (exit code 2).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A [`UsageError`] as an [`anyhow::Error`].
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// `warden policy check` answered "deny" (exit code 4, like a refused
/// request); the message is the server's explanation.
#[derive(Debug)]
pub(crate) struct PolicyDenied(pub(crate) String);

impl std::fmt::Display for PolicyDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyDenied {}

/// Something the command would create exists already (exit code 6, like a
/// conflict answered by the server).
#[derive(Debug)]
pub(crate) struct Conflict(pub(crate) String);

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Conflict {}

/// A remote command (`warden shell ... -- CMD`) exited with this non-zero
/// code, which becomes this process's own.
#[derive(Debug)]
pub(crate) struct RemoteExit(pub(crate) u8);

impl std::fmt::Display for RemoteExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the remote command exited with {}", self.0)
    }
}

impl std::error::Error for RemoteExit {}

/// Maps an error to the documented exit code.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(RemoteExit(code)) = e.downcast_ref::<RemoteExit>() {
        return *code;
    }
    if e.downcast_ref::<warden_types::NameError>().is_some()
        || e.downcast_ref::<UsageError>().is_some()
    {
        return 2;
    }
    if e.downcast_ref::<PolicyDenied>().is_some() {
        return 4;
    }
    if e.downcast_ref::<Conflict>().is_some() {
        return 6;
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Api { status, code, .. }) => match (*status, code.as_str()) {
            (404, _) | (410, _) => 3,
            (401, _) | (403, _) => 4,
            (503, _) => 5,
            (409, _) => 6,
            _ => 1,
        },
        Some(ClientError::Connect { .. }) => 5,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use anyhow::anyhow;
    use warden_types::ScopePath;

    use super::*;

    #[test]
    fn exit_codes_follow_the_documented_table() {
        let api = |status: u16| {
            anyhow::Error::new(ClientError::Api {
                status,
                code: String::new(),
                message: String::new(),
            })
        };
        assert_eq!(exit_code(&api(404)), 3);
        assert_eq!(exit_code(&api(410)), 3);
        assert_eq!(exit_code(&api(401)), 4);
        assert_eq!(exit_code(&api(403)), 4);
        assert_eq!(exit_code(&api(503)), 5);
        assert_eq!(exit_code(&api(409)), 6);
        assert_eq!(exit_code(&api(400)), 1);
        assert_eq!(exit_code(&anyhow!("other")), 1);
        let bad_name = ScopePath::parse("../x").unwrap_err();
        assert_eq!(exit_code(&anyhow::Error::new(bad_name)), 2);
        assert_eq!(exit_code(&anyhow::Error::new(UsageError("x".into()))), 2);
        let denied = anyhow::Error::new(PolicyDenied("no binding at acme".into()));
        assert_eq!(denied.to_string(), "no binding at acme");
        assert_eq!(exit_code(&denied), 4);
        assert_eq!(exit_code(&denied.context("policy check")), 4);
    }
}
