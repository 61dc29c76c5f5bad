//! One nonce counter and one call lock per API key, kept across reloads.
//!
//! Kraken refuses a nonce not above the last one it accepted for the key, so two counters for
//! one key (an account rebuilt by a reload while the old one's call is in flight) fork it: the
//! new counter may hand out a nonce the old one already used, or two calls may reach Kraken out
//! of order. [`KeyRegistry`] hands every account object built for the same key (and nonce
//! file) the same [`NonceSource`] and the same call lock while any of them is alive.
//! Must not: keep a key's text: entries are found by a SHA-256 digest of it, and a key no
//! account uses any more is forgotten.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use kraken::nonce::{NonceError, NonceSource, SystemClock};
use kraken::secret::Credentials;
use sha2::{Digest, Sha256};

/// What every account object of one key shares.
#[derive(Debug, Clone)]
pub(crate) struct KeyHandle {
    /// The key's only nonce counter.
    pub(crate) nonces: Arc<NonceSource>,
    /// Held by whoever calls Kraken with the key.
    pub(crate) lock: Arc<tokio::sync::Mutex<()>>,
}

/// A key's identity: the SHA-256 digest of its text, and its nonce file.
type KeyId = ([u8; 32], Option<PathBuf>);

/// The live keys, by identity.
#[derive(Debug, Default)]
pub(crate) struct KeyRegistry {
    keys: Mutex<HashMap<KeyId, Entry>>,
}

/// One key's shared parts, held weakly: the accounts own them.
#[derive(Debug)]
struct Entry {
    nonces: Weak<NonceSource>,
    lock: Weak<tokio::sync::Mutex<()>>,
}

impl KeyRegistry {
    /// The nonce source and call lock of `credentials`' key: the live ones if an account still
    /// holds them, else new ones (reading `nonce_file` when given).
    pub(crate) fn handle(
        &self,
        credentials: &Credentials,
        nonce_file: Option<&Path>,
    ) -> Result<KeyHandle, NonceError> {
        let digest: [u8; 32] = Sha256::digest(credentials.key.expose().as_bytes()).into();
        let id: KeyId = (digest, nonce_file.map(Path::to_path_buf));
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.retain(|_, entry| entry.nonces.strong_count() > 0);
        if let Some(entry) = keys.get(&id)
            && let (Some(nonces), Some(lock)) = (entry.nonces.upgrade(), entry.lock.upgrade())
        {
            return Ok(KeyHandle { nonces, lock });
        }
        let nonces = Arc::new(match nonce_file {
            Some(path) => NonceSource::with_state_file(Box::new(SystemClock), path)?,
            None => NonceSource::new(Box::new(SystemClock)),
        });
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        keys.insert(
            id,
            Entry {
                nonces: Arc::downgrade(&nonces),
                lock: Arc::downgrade(&lock),
            },
        );
        Ok(KeyHandle { nonces, lock })
    }
}

#[cfg(test)]
mod tests {
    use kraken::secret::{ApiSecret, SecretText};

    use super::*;

    fn credentials(key: &str) -> Credentials {
        Credentials {
            key: SecretText::new(key.into()),
            secret: ApiSecret::from_bytes(vec![1; 64]),
            otp: None,
        }
    }

    #[test]
    fn one_key_has_one_nonce_source_and_lock_while_an_account_holds_them() {
        let registry = KeyRegistry::default();
        let first = registry.handle(&credentials("A"), None).unwrap();
        let again = registry.handle(&credentials("A"), None).unwrap();
        assert!(
            Arc::ptr_eq(&first.nonces, &again.nonces),
            "a second counter for one key"
        );
        assert!(Arc::ptr_eq(&first.lock, &again.lock));
        let other = registry.handle(&credentials("B"), None).unwrap();
        assert!(!Arc::ptr_eq(&first.nonces, &other.nonces));
        drop((first, again));
        let fresh = registry.handle(&credentials("A"), None).unwrap();
        assert_eq!(
            registry.keys.lock().unwrap().len(),
            2,
            "a key no account holds is forgotten, then made anew"
        );
        drop(fresh);
    }

    #[test]
    fn the_registry_keeps_no_key_text() {
        let registry = KeyRegistry::default();
        let _handle = registry
            .handle(&credentials("CANARY-KEY-TEXT"), None)
            .unwrap();
        let debug = format!("{registry:?}");
        assert!(!debug.contains("CANARY"), "{debug}");
    }
}
