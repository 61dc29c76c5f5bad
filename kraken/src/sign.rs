//! Kraken's request signature for private calls.
//!
//! Owns the pure computation `API-Sign = base64(HMAC-SHA512(secret, path ++ SHA256(nonce ++ body)))`.
//! Must not: do I/O, read clocks or choose nonces (the caller passes the nonce it put in the body).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use crate::secret::ApiSecret;

/// Computes the `API-Sign` header value for one private call.
///
/// `path` is the URI path (`/0/private/BalanceEx`), `nonce` the decimal nonce that `body` also
/// carries as `nonce=<nonce>`, and `body` the exact bytes sent: the signature covers them byte for
/// byte, so the caller must send the same buffer it signed.
pub fn sign(path: &str, nonce: u64, body: &[u8], secret: &ApiSecret) -> String {
    let mut inner = Sha256::new();
    inner.update(nonce.to_string().as_bytes());
    inner.update(body);
    let digest = inner.finalize();

    let mut mac = Hmac::<Sha512>::new_from_slice(secret.expose())
        .expect("HMAC-SHA512 accepts keys of any length");
    mac.update(path.as_bytes());
    mac.update(&digest);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b64: &str) -> ApiSecret {
        ApiSecret::from_bytes(STANDARD.decode(b64).unwrap())
    }

    #[test]
    fn reproduces_krakens_official_add_order_vector() {
        let secret = secret(
            "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==",
        );
        let body =
            b"nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
        assert_eq!(
            sign("/0/private/AddOrder", 1616492376594, body, &secret),
            "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
        );
    }

    #[test]
    fn reproduces_the_rust_sdk_balance_vector() {
        let secret = secret("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=");
        assert_eq!(
            sign(
                "/0/private/Balance",
                1_700_000_000_000_000_000,
                b"nonce=1700000000000000000",
                &secret
            ),
            "6i7+cpXVLDDnDOekgsRcgFQhkYFyPDSSxhSVA8OrA6vjziXcy2K1DP3n7f9B/Kgni71WjBSQusZKxduRsdF20Q=="
        );
    }

    #[test]
    fn any_change_to_path_nonce_or_body_changes_the_signature() {
        let secret = secret("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=");
        let base = sign("/0/private/Balance", 5, b"nonce=5", &secret);
        assert_ne!(base, sign("/0/private/BalanceEx", 5, b"nonce=5", &secret));
        assert_ne!(base, sign("/0/private/Balance", 6, b"nonce=5", &secret));
        assert_ne!(
            base,
            sign("/0/private/Balance", 5, b"nonce=5&otp=1", &secret)
        );
        assert_eq!(base.len(), 88);
    }
}
