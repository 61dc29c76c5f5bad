//! Key hygiene: what the account's API key may do, its name, age, expiry and IP allowlist.
//!
//! Calls GetApiKeyInfo (or, where Kraken does not answer it, the read-only WithdrawMethods
//! probe) every `--audit.interval`, after a successful balance call; a failed audit is tried
//! again in five minutes and never makes the account down. The answer becomes a
//! [`KeyAudit`] ([`crate::audit`] interprets it), kept until the next audit replaces it, and
//! writes `kraken_api_key_permission`, `kraken_api_key_info` and the key's timestamps. The
//! configured [`Allowed`] permissions write `kraken_api_key_permission_allowed`.
//! Must not: decide that a key is unacceptable (alerts and `check` do).

use std::time::Duration;

use kraken::{Endpoint, KeyExpiry, KrakenError};

use crate::audit::{self, KeyAudit, KeyPolicy};
use crate::exposition::{Exposition, Family, Kind, unix_seconds};
use crate::features::{CallContext, FeatureView, Polled, Schedule};

/// How long to wait before trying a failed audit again.
const RETRY: Duration = Duration::from_secs(5 * 60);

/// `kraken_api_key_permission`.
pub const PERMISSION: Family = Family {
    name: "kraken_api_key_permission",
    help: "1 if the account's API key has the permission, 0 if not, from the latest key audit (GetApiKeyInfo, or only funds_withdraw from a WithdrawMethods probe where Kraken does not answer it). An exporter needs only funds_query; funds_withdraw, orders_create and orders_cancel can move money. What the key may hold is kraken_api_key_permission_allowed.",
    kind: Kind::Gauge,
};

/// `kraken_api_key_permission_allowed`.
pub const PERMISSION_ALLOWED: Family = Family {
    name: "kraken_api_key_permission_allowed",
    help: "1 for each permission the account's API key may hold, from allowed_permissions in the config file, --key.allowed-permissions or KRAKEN_KEY_ALLOWED_PERMISSIONS (default funds_query and websocket); exported while the key is audited, before the first audit too. A permission with kraken_api_key_permission 1 and no series here is unexpected.",
    kind: Kind::Gauge,
};

/// `kraken_api_key_created_timestamp_seconds`.
pub const CREATED: Family = Family {
    name: "kraken_api_key_created_timestamp_seconds",
    help: "Unix time the account's API key was created (GetApiKeyInfo createdTime), from the latest key audit; the key's age is time() minus this. Rotate keys every few months.",
    kind: Kind::Gauge,
};

/// `kraken_api_key_expiry_timestamp_seconds`.
pub const EXPIRY: Family = Family {
    name: "kraken_api_key_expiry_timestamp_seconds",
    help: "Unix time the account's API key stops working (GetApiKeyInfo validUntil), from the latest key audit; absent for a key without an expiry date.",
    kind: Kind::Gauge,
};

/// `kraken_api_key_info`.
pub const INFO: Family = Family {
    name: "kraken_api_key_info",
    help: "Always 1; the name label is the name given to the account's API key on Kraken (never the key itself), from the latest key audit.",
    kind: Kind::Gauge,
};

/// `kraken_api_key_ip_allowlist_entries`.
pub const IP_ALLOWLIST_ENTRIES: Family = Family {
    name: "kraken_api_key_ip_allowlist_entries",
    help: "Number of addresses or ranges the account's API key may be used from (GetApiKeyInfo ipAllowlist), from the latest key audit; 0 means from any IP address.",
    kind: Kind::Gauge,
};

/// The key audit of one account.
#[derive(Debug)]
pub struct KeyInfo {
    /// Audit at most this often.
    pub interval: Duration,
}

impl Polled for KeyInfo {
    type State = KeyAudit;
    const NAME: &'static str = "key audit";
    const ENDPOINTS: &'static [Endpoint] = &[Endpoint::GetApiKeyInfo, Endpoint::WithdrawMethods];
    const WHEN_REFUSED: &'static str = "key audit failed; trying again later";

    fn schedule(&self) -> Schedule {
        Schedule {
            every: Some(self.interval),
            retry_after_failure: Some(RETRY),
            stop_when_refused: false,
            keep_for: None,
        }
    }

    async fn fetch(&self, call: CallContext<'_>) -> Result<KeyAudit, KrakenError> {
        audit::audit_key(call.client).await
    }

    /// A key that can move funds or trade is logged as a warning at every audit (whether its
    /// allowed_permissions allow that is for `check`, the status page and the alerts to say).
    fn on_answer(&self, account: &str, audit: &KeyAudit) {
        let risky = audit.risky();
        if risky.is_empty() {
            tracing::debug!(account = %account, source = ?audit.source, "key audit: the key cannot move funds or trade");
        } else {
            tracing::warn!(
                account = %account,
                permissions = ?risky,
                "key audit: this key can move funds or trade; unless allowed_permissions allows that on purpose, create a Query-only key and replace this one"
            );
        }
        for warning in &audit.warnings {
            tracing::warn!(account = %account, "key audit: {}", warning.message());
        }
    }
}

/// What the account's key may hold and when it is due for rotation, from the configuration: shown
/// from start-up on, before the first audit, so an alert comparing the audit with it never sees
/// an audit alone. The exporter adds it to the account's status (`check` and the status page
/// read the policy from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed(pub KeyPolicy);

impl FeatureView for Allowed {
    fn collect(&self, account: &str, out: &mut Exposition) {
        let mut f = out.family(&PERMISSION_ALLOWED);
        for permission in &self.0.allowed {
            f.sample(&[("account", account), ("permission", permission)], 1.0);
        }
    }
}

impl FeatureView for KeyAudit {
    fn collect(&self, account: &str, out: &mut Exposition) {
        let mut f = out.family(&PERMISSION);
        for (permission, granted) in &self.permissions {
            f.sample(
                &[("account", account), ("permission", permission)],
                *granted,
            );
        }
        let Some(key) = &self.key else {
            return;
        };
        if let Some(created) = key.created_time {
            out.family(&CREATED)
                .sample(&[("account", account)], unix_seconds(created));
        }
        if let Some(KeyExpiry::At(at)) = key.valid_until {
            out.family(&EXPIRY)
                .sample(&[("account", account)], unix_seconds(at));
        }
        if let Some(name) = &key.name {
            out.family(&INFO)
                .sample(&[("account", account), ("name", name)], 1.0);
        }
        if let Some(allowlist) = &key.ip_allowlist {
            out.family(&IP_ALLOWLIST_ENTRIES)
                .sample(&[("account", account)], allowlist.len() as f64);
        }
    }
}
