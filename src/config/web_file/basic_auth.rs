//! `basic_auth_users`: HTTP basic authentication against bcrypt hashes.
//!
//! Must not: put a password or a hash into a message or `Debug` output, tell by its timing
//! which users exist, or let a flood of wrong passwords make a scraper pay bcrypt again.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use super::problem;
use crate::problem::Problem;

/// Highest bcrypt cost accepted: each new password check at cost 18 already takes seconds of
/// CPU, and a scrape waits for it.
pub(crate) const MAX_BCRYPT_COST: u32 = 18;

/// Verification results kept per outcome before that half of the cache is cleared. Failures
/// and successes are kept apart, so a flood of wrong passwords cannot evict a scraper's
/// successful result and make it pay bcrypt again.
const AUTH_CACHE_LIMIT: usize = 1024;

/// One configured user.
struct User {
    /// SHA-256 of the name, compared in constant time.
    name_digest: [u8; 32],
    /// The bcrypt hash.
    hash: Zeroizing<String>,
}

/// `basic_auth_users`: checks `Authorization: Basic` credentials against bcrypt hashes.
///
/// Verifications run one at a time on a blocking thread (bcrypt is CPU-bound). Their results,
/// successes and failures alike, are cached under an HMAC-SHA-256 of (user, password) with a
/// per-process random key, so a scrape does not pay bcrypt each time and the cache in memory is
/// no shortcut around bcrypt. An unknown user is checked against a dummy hash of the same cost,
/// so timing does not tell which users exist.
pub(crate) struct BasicAuth {
    users: Vec<User>,
    /// A random hash with the highest cost of the configured ones.
    dummy_hash: Zeroizing<String>,
    /// Key of the cache's HMAC, random per process.
    cache_key: Zeroizing<[u8; 32]>,
    /// Verification results.
    cache: Mutex<AuthCache>,
    /// One bcrypt verification at a time.
    bcrypt_turn: tokio::sync::Semaphore,
}

#[derive(Default)]
struct AuthCache {
    passed: HashSet<[u8; 32]>,
    failed: HashSet<[u8; 32]>,
}

impl BasicAuth {
    /// How many users are configured (for `Debug`, which shows no name).
    pub(super) fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Whether the `Authorization` header carries a configured user and its password.
    pub(crate) async fn authorize(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let key = self.cache_key_of(&user, &password);
        if let Some(known) = self.cached(&key) {
            return known;
        }
        let Ok(_turn) = self.bcrypt_turn.acquire().await else {
            return false;
        };
        // Another request may have verified the same credentials while this one waited.
        if let Some(known) = self.cached(&key) {
            return known;
        }
        let index = self.find_user(&user);
        let hash = match index {
            Some(i) => self.users[i].hash.clone(),
            None => self.dummy_hash.clone(),
        };
        let matches = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_slice(), hash.as_str()).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let authorized = matches && index.is_some();
        self.remember(key, authorized);
        authorized
    }

    /// The index of the user named `name`, comparing every configured name in constant time.
    fn find_user(&self, name: &[u8]) -> Option<usize> {
        let digest: [u8; 32] = Sha256::digest(name).into();
        let mut found = u32::MAX;
        for (index, user) in self.users.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            found.conditional_assign(&index, user.name_digest.ct_eq(&digest));
        }
        (found != u32::MAX).then_some(found as usize)
    }

    fn cache_key_of(&self, user: &[u8], password: &[u8]) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&*self.cache_key).expect("HMAC takes any key length");
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user);
        mac.update(password);
        mac.finalize().into_bytes().into()
    }

    fn cached(&self, key: &[u8; 32]) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.passed.contains(key) {
            Some(true)
        } else if cache.failed.contains(key) {
            Some(false)
        } else {
            None
        }
    }

    fn remember(&self, key: [u8; 32], authorized: bool) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let set = if authorized {
            &mut cache.passed
        } else {
            &mut cache.failed
        };
        if set.len() >= AUTH_CACHE_LIMIT {
            set.clear();
        }
        set.insert(key);
    }
}

/// `(user, password)` of an `Authorization: Basic …` header.
fn basic_credentials(header: &HeaderValue) -> Option<(Vec<u8>, Zeroizing<Vec<u8>>)> {
    let text = header.to_str().ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?,
    );
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((
        decoded[..colon].to_vec(),
        Zeroizing::new(decoded[colon + 1..].to_vec()),
    ))
}

/// The users of `basic_auth_users`; `None` when there are none or they have problems.
pub(super) fn from_users(
    raw: BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> Option<BasicAuth> {
    let mut users = Vec::new();
    let mut highest_cost = 4;
    for (name, hash) in raw {
        let hash = Zeroizing::new(hash);
        let field = format!("basic_auth_users.{name}");
        if name.contains(':') {
            problems.push(problem(
                &field,
                "contains ':', which HTTP basic authentication cannot carry in a user name: rename the user",
            ));
            continue;
        }
        let parts = hash.trim().parse::<bcrypt::HashParts>();
        match parts {
            Err(_) => problems.push(problem(
                &field,
                "is not a bcrypt hash (the value is not shown; a hash looks like $2y$10$ followed by 53 characters): create one with htpasswd -nBC 10 \"\" | tr -d ':\\n'",
            )),
            Ok(parts) if !(4..=MAX_BCRYPT_COST).contains(&parts.get_cost()) => {
                problems.push(problem(
                    &field,
                    format!(
                        "has bcrypt cost {}, outside 4 to {MAX_BCRYPT_COST} (higher costs make every new password check take many seconds): hash the password again with cost 10 to 12",
                        parts.get_cost()
                    ),
                ))
            }
            Ok(parts) => {
                highest_cost = highest_cost.max(parts.get_cost());
                users.push(User {
                    name_digest: Sha256::digest(name.as_bytes()).into(),
                    hash: Zeroizing::new(hash.trim().to_owned()),
                });
            }
        }
    }
    if users.is_empty() {
        return None;
    }
    let mut salt = [0u8; 16];
    let mut digest = [0u8; 23];
    let mut cache_key = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut digest);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut *cache_key);
    let bcrypt_base64 = base64::engine::GeneralPurpose::new(
        &base64::alphabet::BCRYPT,
        base64::engine::general_purpose::NO_PAD,
    );
    let dummy_hash = Zeroizing::new(format!(
        "$2b${highest_cost:02}${}{}",
        bcrypt_base64.encode(salt),
        bcrypt_base64.encode(digest)
    ));
    Some(BasicAuth {
        users,
        dummy_hash,
        cache_key,
        cache: Mutex::new(AuthCache::default()),
        bcrypt_turn: tokio::sync::Semaphore::new(1),
    })
}

#[cfg(test)]
mod tests {
    use super::super::WebSecurity;
    use super::*;
    use crate::problem::Problem;
    use std::path::Path;
    /// bcrypt of "secret" at cost 4 (fast for tests).
    fn hash(password: &str) -> String {
        bcrypt::hash(password, 4).unwrap()
    }

    fn refused(text: &str) -> Vec<Problem> {
        WebSecurity::from_text(text, Path::new(".")).unwrap_err()
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {token}")).unwrap()
    }

    #[tokio::test]
    async fn basic_auth_accepts_only_the_right_password_and_caches_both_outcomes() {
        let text = format!(
            "basic_auth_users:\n  alice: '{}'\n  bob: '{}'\n",
            hash("secret"),
            hash("other")
        );
        let security = WebSecurity::from_text(&text, Path::new(".")).unwrap();
        let auth = security.basic_auth().unwrap();
        assert!(auth.authorize(Some(&basic("alice", "secret"))).await);
        assert!(auth.authorize(Some(&basic("alice", "secret"))).await);
        assert!(auth.authorize(Some(&basic("bob", "other"))).await);
        assert!(!auth.authorize(Some(&basic("alice", "other"))).await);
        assert!(!auth.authorize(Some(&basic("alice", "wrong"))).await);
        assert!(!auth.authorize(Some(&basic("carol", "secret"))).await);
        assert!(!auth.authorize(None).await);
        assert!(
            !auth
                .authorize(Some(&HeaderValue::from_static("Bearer x")))
                .await
        );
        let cache = auth.cache.lock().unwrap();
        assert_eq!(cache.passed.len(), 2);
        assert_eq!(cache.failed.len(), 3);
    }

    #[test]
    fn user_lookup_finds_every_user_and_no_other() {
        let text = format!(
            "basic_auth_users:\n  a: '{h}'\n  ab: '{h}'\n  '': '{h}'\n",
            h = hash("x")
        );
        let security = WebSecurity::from_text(&text, Path::new(".")).unwrap();
        let auth = security.basic_auth().unwrap();
        let mut found: Vec<usize> = [&b"a"[..], b"ab", b""]
            .iter()
            .map(|name| auth.find_user(name).unwrap())
            .collect();
        found.sort_unstable();
        assert_eq!(found, [0, 1, 2]);
        assert_eq!(auth.find_user(b"abc"), None);
        assert_eq!(auth.find_user(b"A"), None);
    }

    #[test]
    fn the_dummy_hash_is_a_valid_hash_of_the_highest_cost() {
        let text = format!(
            "basic_auth_users:\n  a: '{}'\n  b: '{}'\n",
            hash("x"),
            bcrypt::hash("y", 5).unwrap()
        );
        let security = WebSecurity::from_text(&text, Path::new(".")).unwrap();
        let dummy = &security.basic_auth().unwrap().dummy_hash;
        let parts: bcrypt::HashParts = dummy.parse().unwrap();
        assert_eq!(parts.get_cost(), 5);
        assert!(!bcrypt::verify("x", dummy).unwrap());
    }

    #[test]
    fn bad_hashes_are_refused_without_showing_them() {
        let problems = refused(
            "basic_auth_users:\n  alice: hunter2-plaintext\n  bob: 12345\n  'c:d': '$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG'\n",
        );
        let text = format!("{problems:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("12345"), "{text}");
        assert!(!text.contains("X0h1g"), "{text}");
        let problems = refused("basic_auth_users:\n  alice: hunter2-plaintext\n");
        assert_eq!(problems[0].place, "basic_auth_users.alice");
        assert!(problems[0].message.contains("htpasswd"), "{problems:?}");
        let problems = refused("basic_auth_users:\n  bob: 12345\n");
        assert!(
            problems[0].place.starts_with("basic_auth_users"),
            "{problems:?}"
        );
        assert!(!problems[0].message.contains("12345"), "{problems:?}");
        let costly = "$2y$20$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";
        let problems = refused(&format!("basic_auth_users:\n  alice: '{costly}'\n"));
        assert!(problems[0].message.contains("cost 20"), "{problems:?}");
    }

    #[test]
    fn basic_credentials_are_parsed() {
        let (user, password) = basic_credentials(&basic("a", "b:c")).unwrap();
        assert_eq!(user, b"a");
        assert_eq!(password.as_slice(), b"b:c");
        assert!(basic_credentials(&HeaderValue::from_static("Basic !!!")).is_none());
        assert!(basic_credentials(&HeaderValue::from_static("basic YTpi")).is_some());
    }
}
