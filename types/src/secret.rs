//! Secret values.

use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroize;

/// Why a secret value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Larger than [`crate::MAX_VALUE_BYTES`].
    #[error("secret value is {0} bytes; the limit is {max} bytes", max = crate::MAX_VALUE_BYTES)]
    TooLarge(usize),
}

/// A secret value in memory: UTF-8 text, zeroized on drop, `Debug` prints
/// `[REDACTED]`, no `Display`, no `Serialize`. Reading it takes an explicit
/// [`SecretValue::expose`].
pub struct SecretValue(SecretBox<str>);

impl SecretValue {
    /// Takes ownership of `s` after checking the size limit. The original
    /// buffer is wiped whenever it cannot move into the box as it is (a
    /// `String` with spare capacity would otherwise be reallocated, leaving
    /// the plaintext behind in freed memory).
    pub fn new(mut s: String) -> Result<Self, ValueError> {
        if s.len() > crate::MAX_VALUE_BYTES {
            let len = s.len();
            s.zeroize();
            return Err(ValueError::TooLarge(len));
        }
        if s.capacity() == s.len() {
            return Ok(Self(SecretBox::from(s.into_boxed_str())));
        }
        let exact = Self::copy_of(&s);
        s.zeroize();
        Ok(exact)
    }

    /// Copies UTF-8 `bytes` into a new value; `None` if they are not UTF-8
    /// or exceed the size limit. The caller keeps (and wipes) `bytes`.
    pub fn from_utf8(bytes: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(bytes).ok()?;
        (s.len() <= crate::MAX_VALUE_BYTES).then(|| Self::copy_of(s))
    }

    fn copy_of(s: &str) -> Self {
        Self(SecretBox::from(Box::<str>::from(s)))
    }

    /// The plaintext. Call sites are the places to audit for leaks.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Length in bytes (not secret: it is visible on the wire anyway).
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Clone for SecretValue {
    fn clone(&self) -> Self {
        Self::copy_of(self.expose())
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_value() {
        let v = SecretValue::new("hunter2".into()).unwrap();
        assert_eq!(format!("{v:?}"), "SecretValue([REDACTED])");
        assert_eq!(v.expose(), "hunter2");
    }

    #[test]
    fn oversized_values_are_rejected() {
        let big = "x".repeat(crate::MAX_VALUE_BYTES + 1);
        assert_eq!(
            SecretValue::new(big).unwrap_err(),
            ValueError::TooLarge(crate::MAX_VALUE_BYTES + 1)
        );
        assert!(SecretValue::new("x".repeat(crate::MAX_VALUE_BYTES)).is_ok());
    }
}
