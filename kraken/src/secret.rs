//! Credential types that never print their contents.
//!
//! Owns the in-memory form of the API key, the API secret and the optional 2FA password.
//! Must not: expose the bytes through `Debug`, `Display`, `Serialize` or an error message.
//! Everything that prints one of these types prints a placeholder instead.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// Placeholder printed wherever a credential would otherwise appear.
const REDACTED: &str = "<redacted>";

/// The decoded Kraken private key ("API secret"): the HMAC-SHA512 key that signs private calls.
///
/// Holds the decoded bytes, not the base64 text, so the text is decoded exactly once at start-up
/// and the bytes are zeroed when the value is dropped.
#[derive(Clone)]
pub struct ApiSecret(Zeroizing<Vec<u8>>);

impl ApiSecret {
    /// Wraps already decoded secret bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw key bytes, for the signer only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ApiSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for ApiSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A credential sent as text: the public API key (`API-Key` header) or the static 2FA password
/// (`otp` body field).
///
/// The API key is not a secret in the cryptographic sense, but it identifies the account, so it
/// is kept out of logs just the same.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    /// Wraps the text of a credential.
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The text, for the request builder only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for SecretText {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Everything needed to sign private calls for one Kraken API key.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Public API key, sent in the `API-Key` header.
    pub key: SecretText,
    /// Decoded private key; signs every private call.
    pub secret: ApiSecret,
    /// Static API 2FA password, sent as `otp` and covered by the signature, when the key has one.
    pub otp: Option<SecretText>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let creds = Credentials {
            key: SecretText::new("CANARYKEY".into()),
            secret: ApiSecret::from_bytes(b"CANARYSECRET".to_vec()),
            otp: Some(SecretText::new("CANARYOTP".into())),
        };
        let printed = format!("{creds:?} {} {} {:#?}", creds.key, creds.secret, creds);
        assert!(!printed.contains("CANARY"), "{printed}");
        assert!(printed.contains(REDACTED));
    }
}
