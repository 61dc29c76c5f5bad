//! Whether the exporter's API key can do more than read balances.
//!
//! An exporter only needs "Funds: Query". A key that may also withdraw or trade turns a leaked
//! exporter configuration into a way to empty the account, so the operator should hear about it.
//!
//! Owns the normalised permission names, the interpretation of GetApiKeyInfo and of the
//! WithdrawMethods probe, which permissions count as risky, and the hygiene findings about a key
//! against what its [`KeyPolicy`] allows (the same limits as the alerts on the key), so `check`,
//! the status page and the log say the same thing.
//! Must not: parse Kraken bodies or match Kraken error strings (that is [`kraken`]), call
//! any endpoint that changes the account, or decide what a risky key means for the exporter
//! (warn, refuse, export a metric: the caller chooses).
//!
//! # Normalised permission names
//!
//! Kraken's GetApiKeyInfo lists a key's permissions as kebab-case codes. The documented example
//! shows `query-funds`, `withdraw-funds`, `query-open-trades` and `modify-trades`; the other codes
//! below were seen in an independent client, not in Kraken's own text. Each code maps to one
//! name; other spellings (older APIs, hand-written names) are recognised by their words.
//!
//! | name | Kraken's key setting | Kraken's code | other spellings recognised |
//! |---|---|---|---|
//! | `funds_query` | Query Funds | `query-funds` | `query_funds`, `Funds: Query`, `view_balance` |
//! | `funds_deposit` | Deposit Funds | `add-funds` | `deposit_funds`, `Funds: Deposit`, `can_deposit` |
//! | `funds_withdraw` | Withdraw Funds | `withdraw-funds` | `withdraw_funds`, `Funds: Withdraw`, `can_withdraw` |
//! | `funds_earn` | Earn Funds | `earn-funds` | `Funds: Earn`, `earn` |
//! | `orders_query_open` | Query Open Orders & Trades | `query-open-trades` | `query_open_orders` |
//! | `orders_query_closed` | Query Closed Orders & Trades | `query-closed-trades` | `Query closed orders & trades` |
//! | `orders_create` | Create & Modify Orders | `modify-trades` | `create_orders`, `add_order`, `trade` |
//! | `orders_cancel` | Cancel/Close Orders | `close-trades` | `cancel_orders`, `close_positions` |
//! | `ledger_query` | Query Ledger Entries | `query-ledger` | `Query ledger entries`, `ledger` |
//! | `export_data` | Export Data | `export-data` | `Export data` |
//! | `websocket` | Access WebSocket API | `create-ws-token` | `Access WebSockets API`, `ws_token` |
//! | `withdraw_addresses` | (no group of its own in the key UI) | `add-withdraw-address`, `update-withdraw-address` | any name about withdrawal *addresses* |
//!
//! `withdraw_addresses` is deliberately not `funds_withdraw`: managing the address book moves no
//! funds, and reporting a key as able to withdraw when it is not would be a false alarm about the
//! one permission operators must be able to trust. It is not in [`KNOWN`] (Kraken's key UI has
//! no such group), so it is exported only for a key that has it, and it is not in [`RISKY`].
//! A name that mentions withdrawals together with a reading word (`query`, `view`, `list`,
//! `history`, `status`...) is not `funds_withdraw` either: reading withdrawals moves nothing.
//!
//! Any other code is kept in lowercase snake_case (`query-nft` → `query_nft`): it is exported as
//! its own permission series, so a permission Kraken adds later shows up instead of vanishing,
//! and it never counts as risky (a guess from an unknown name could only be a false alarm or a
//! false all-clear; the series lets the operator judge).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use kraken::{ApiKeyInfo, KeyExpiry, KrakenClient, KrakenError, Reason};

/// Every permission group Kraken's key settings offer, by normalised name; each is exported
/// for every key audited with GetApiKeyInfo (0 when not granted).
pub const KNOWN: [&str; 11] = [
    FUNDS_QUERY,
    FUNDS_DEPOSIT,
    FUNDS_WITHDRAW,
    FUNDS_EARN,
    ORDERS_QUERY_OPEN,
    ORDERS_QUERY_CLOSED,
    ORDERS_CREATE,
    ORDERS_CANCEL,
    LEDGER_QUERY,
    EXPORT_DATA,
    WEBSOCKET,
];

/// The key may read balances: the one permission the exporter needs.
pub const FUNDS_QUERY: &str = "funds_query";
/// The key may create deposit addresses (Kraken's `add-funds`).
pub const FUNDS_DEPOSIT: &str = "funds_deposit";
/// The key may withdraw funds to a registered address.
pub const FUNDS_WITHDRAW: &str = "funds_withdraw";
/// The key may allocate funds to Earn strategies and take them back (Kraken's `earn-funds`).
pub const FUNDS_EARN: &str = "funds_earn";
/// The key may add or change withdrawal addresses (Kraken's `add-withdraw-address`,
/// `update-withdraw-address`). Not the same as withdrawing: see the module docs.
pub const WITHDRAW_ADDRESSES: &str = "withdraw_addresses";
/// The key may read open orders and trades.
pub const ORDERS_QUERY_OPEN: &str = "orders_query_open";
/// The key may read closed orders and trades.
pub const ORDERS_QUERY_CLOSED: &str = "orders_query_closed";
/// The key may place and modify orders.
pub const ORDERS_CREATE: &str = "orders_create";
/// The key may cancel orders and close positions.
pub const ORDERS_CANCEL: &str = "orders_cancel";
/// The key may read the ledger.
pub const LEDGER_QUERY: &str = "ledger_query";
/// The key may request data exports.
pub const EXPORT_DATA: &str = "export_data";
/// The key may obtain WebSocket tokens.
pub const WEBSOCKET: &str = "websocket";

/// Permissions that let whoever holds the key move funds or change positions, in the order
/// [`KeyAudit::risky`] lists them:
/// - `funds_withdraw` sends funds out of the account (to addresses registered on it, which an
///   attacker with the key cannot add, but a withdrawal is still irreversible);
/// - `orders_create` can trade the balance away, for example into an illiquid market the
///   attacker controls;
/// - `orders_cancel` can cancel the owner's orders and close positions, undoing a strategy or a
///   hedge at the worst moment.
///
/// Reading permissions (query, ledger, export, WebSocket) leak information but move nothing,
/// deposit only creates addresses, and Earn moves funds only between the account's own spot and
/// Earn balances. `withdraw_addresses` moves nothing by itself; together with `funds_withdraw`
/// it would let the holder add an address of their own, which `funds_withdraw` already flags.
pub const RISKY: [&str; 3] = [FUNDS_WITHDRAW, ORDERS_CREATE, ORDERS_CANCEL];

/// How a [`KeyAudit`] learned the key's permissions, which says how much of it to trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditSource {
    /// Kraken listed the key's permissions (GetApiKeyInfo): every permission is known.
    ApiKeyInfo,
    /// Kraken did not list them, so WithdrawMethods was tried: only `funds_withdraw` is known. A
    /// Query-only key cannot be told apart from a trading key this way.
    WithdrawProbe,
}

/// What the exporter's API key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAudit {
    /// Normalised permission name → granted. Only permissions established by [`Self::source`]
    /// are present: after the probe, just `funds_withdraw`.
    pub permissions: BTreeMap<String, bool>,
    /// How the permissions were learned.
    pub source: AuditSource,
    /// What GetApiKeyInfo said about the key besides its permissions (name, expiry, creation,
    /// IP allowlist, nonce, last use); `None` after the WithdrawMethods probe. Holds no secret.
    pub key: Option<ApiKeyInfo>,
    /// Signs that another client uses the key, from comparing its nonce and last use with ours.
    pub warnings: Vec<KeyWarning>,
}

/// How much larger than ours the key's last accepted nonce must be to have been made on another
/// scale: a client counting microseconds (or nanoseconds) since 1970 sends nonces 1000 (or a
/// million) times this exporter's milliseconds.
pub const NONCE_SCALE_FACTOR: u64 = 1000;

/// How much later than our latest call Kraken's `lastUsed` must be to mean a call we did not
/// make: Kraken reports whole seconds, and the two clocks may differ a little.
pub const SHARED_KEY_MARGIN: Duration = Duration::from_secs(60);

/// A sign, read from GetApiKeyInfo, that the exporter does not have the key to itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyWarning {
    /// Kraken's last accepted nonce is `factor` times ours or more: another client signs with
    /// microsecond or nanosecond nonces, and from then on Kraken refuses every nonce of ours.
    NonceScale {
        /// Kraken's nonce divided by ours, rounded down.
        factor: u64,
    },
    /// Kraken saw the key used after our latest call: another client shares it.
    UsedElsewhere {
        /// Kraken's `lastUsed`.
        last_used: SystemTime,
        /// When this exporter last called Kraken with the key.
        ours: SystemTime,
    },
}

impl KeyWarning {
    /// The warning for people, with the fix.
    pub fn message(&self) -> String {
        match self {
            KeyWarning::NonceScale { factor } => format!(
                "Kraken's last accepted nonce for this key is {factor} times this exporter's: another client uses the key with {} nonces, so Kraken will refuse every nonce of this exporter (invalid_nonce). Fix: create a new API key for the exporter alone, or make the other client use millisecond nonces like this exporter",
                if *factor >= NONCE_SCALE_FACTOR * NONCE_SCALE_FACTOR {
                    "nanosecond"
                } else {
                    "microsecond"
                }
            ),
            KeyWarning::UsedElsewhere { last_used, ours } => format!(
                "Kraken saw this key used {}s after this exporter's latest call: another client shares the key, which makes nonces collide (invalid_nonce) and spends the same rate limit. Fix: give the exporter a key of its own",
                last_used.duration_since(*ours).map_or(0, |d| d.as_secs())
            ),
        }
    }
}

/// Compares what Kraken says about the key's use with this exporter's own: `our_nonce` is the
/// nonce of our latest call, `our_last_call` when we sent it. A nonce 1000 times ours or more is
/// [`KeyWarning::NonceScale`]; a `lastUsed` more than [`SHARED_KEY_MARGIN`] after our latest
/// call is [`KeyWarning::UsedElsewhere`].
///
/// What this can see is limited: once Kraken holds a nonce on another scale, every signed call of
/// ours is refused, GetApiKeyInfo included, so the scale is seen only when such a call overtook
/// ours; the advice of `invalid_nonce` covers the rest.
pub fn usage_warnings(
    info: &ApiKeyInfo,
    our_nonce: Option<u64>,
    our_last_call: SystemTime,
) -> Vec<KeyWarning> {
    let mut warnings = Vec::new();
    if let (Some(theirs), Some(ours)) = (info.nonce, our_nonce.filter(|n| *n > 0)) {
        let factor = theirs / ours;
        if factor >= NONCE_SCALE_FACTOR {
            warnings.push(KeyWarning::NonceScale { factor });
        }
    }
    if let Some(last_used) = info.last_used
        && last_used > our_last_call + SHARED_KEY_MARGIN
    {
        warnings.push(KeyWarning::UsedElsewhere {
            last_used,
            ours: our_last_call,
        });
    }
    warnings
}

impl KeyAudit {
    /// Interprets a GetApiKeyInfo answer: each listed code normalised and granted, and every
    /// known permission it does not list recorded as not granted (Kraken lists what a key has),
    /// so dashboards see 0, not nothing.
    pub fn from_api_key_info(info: &ApiKeyInfo) -> Self {
        let mut permissions: BTreeMap<String, bool> =
            KNOWN.iter().map(|name| (name.to_string(), false)).collect();
        for code in &info.permissions {
            permissions.insert(normalise_permission(code), true);
        }
        Self {
            permissions,
            source: AuditSource::ApiKeyInfo,
            key: Some(info.clone()),
            warnings: Vec::new(),
        }
    }

    /// Interprets the outcome of the WithdrawMethods probe: an answer means the key may withdraw,
    /// `permission_denied` that it may not. Any other failure says nothing about the key and is
    /// returned as it is.
    ///
    /// `permission_denied` is also Kraken's answer to a wrong API 2FA password, so this verdict
    /// holds only for a key whose other calls succeed.
    pub fn from_withdraw_probe(outcome: Result<(), KrakenError>) -> Result<Self, KrakenError> {
        let may_withdraw = match outcome {
            Ok(()) => true,
            Err(e) if e.reason() == Reason::PermissionDenied => false,
            Err(e) => return Err(e),
        };
        Ok(Self {
            permissions: BTreeMap::from([(FUNDS_WITHDRAW.to_owned(), may_withdraw)]),
            source: AuditSource::WithdrawProbe,
            key: None,
            warnings: Vec::new(),
        })
    }

    /// The granted permissions that can move funds or trade (see [`RISKY`]), so the caller can
    /// warn about exactly those. Empty for a key fit for an exporter.
    pub fn risky(&self) -> Vec<&str> {
        RISKY
            .into_iter()
            .filter(|name| self.granted(name) == Some(true))
            .collect()
    }

    /// The granted permissions besides `funds_query` that cannot move funds by themselves (Earn,
    /// deposit, address book, order and ledger queries, data export, WebSocket tokens): an
    /// operator's checklist wants none of them on a monitoring key.
    pub fn unneeded(&self) -> Vec<&str> {
        self.permissions
            .iter()
            .filter(|(name, granted)| {
                **granted && name.as_str() != FUNDS_QUERY && !RISKY.contains(&name.as_str())
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Whether the key has a normalised permission; `None` when the audit could not tell (the
    /// probe establishes only `funds_withdraw`; GetApiKeyInfo may omit denied permissions).
    pub fn granted(&self, name: &str) -> Option<bool> {
        self.permissions.get(name).copied()
    }
}

/// Whether a failed GetApiKeyInfo means "this Kraken or this key does not offer it" (so the
/// WithdrawMethods probe is worth trying) rather than "Kraken is failing right now" (timeouts,
/// outages, rate limits and lockouts are returned to the caller, never probed around: another
/// call would only cost rate budget or extend a lockout).
///
/// Refusals are [`KrakenError::is_endpoint_refusal`] (`EGeneral:Unknown method`, which Kraken
/// sends with HTTP 404, and `permission_denied`); a 404 status without Kraken's error body is
/// also taken as an unknown method, for a proxy that answers with a plain not-found page.
pub fn falls_back_to_probe(error: &KrakenError) -> bool {
    error.is_endpoint_refusal() || matches!(error, KrakenError::Status { status: 404, .. })
}

/// Finds out what the client's key may do: GetApiKeyInfo when Kraken offers it, otherwise the
/// WithdrawMethods probe (see [`AuditSource::WithdrawProbe`] for what that cannot tell).
/// Costs one private call, two when probing; both are read only.
pub async fn audit_key(client: &KrakenClient) -> Result<KeyAudit, KrakenError> {
    let sent = SystemTime::now();
    match client.api_key_info().await {
        Ok(info) => {
            let mut audit = KeyAudit::from_api_key_info(&info);
            audit.warnings = usage_warnings(&info, client.last_nonce(), sent);
            Ok(audit)
        }
        Err(error) if falls_back_to_probe(&error) => {
            tracing::debug!(
                account = %client.account(),
                %error,
                "GetApiKeyInfo is not available, probing WithdrawMethods instead"
            );
            KeyAudit::from_withdraw_probe(client.withdraw_methods().await)
        }
        Err(error) => Err(error),
    }
}

/// Kraken's permission codes (GetApiKeyInfo `permissions`) and their normalised names.
const KRAKEN_CODES: [(&str, &str); 13] = [
    ("query-funds", FUNDS_QUERY),
    ("add-funds", FUNDS_DEPOSIT),
    ("withdraw-funds", FUNDS_WITHDRAW),
    ("earn-funds", FUNDS_EARN),
    ("query-open-trades", ORDERS_QUERY_OPEN),
    ("query-closed-trades", ORDERS_QUERY_CLOSED),
    ("modify-trades", ORDERS_CREATE),
    ("close-trades", ORDERS_CANCEL),
    ("query-ledger", LEDGER_QUERY),
    ("export-data", EXPORT_DATA),
    ("create-ws-token", WEBSOCKET),
    ("add-withdraw-address", WITHDRAW_ADDRESSES),
    ("update-withdraw-address", WITHDRAW_ADDRESSES),
];

/// Maps one of Kraken's permission codes, or another spelling of a permission, to a normalised
/// name (see the module docs for the table). Unrecognised names come back in lowercase
/// snake_case.
pub fn normalise_permission(raw: &str) -> String {
    let trimmed = raw.trim();
    if let Some((_, name)) = KRAKEN_CODES
        .iter()
        .find(|(code, _)| code.eq_ignore_ascii_case(trimmed))
    {
        return (*name).to_owned();
    }
    let snake = snake_case(raw);
    let tokens: Vec<&str> = snake.split('_').filter(|t| !t.is_empty()).collect();
    let has = |word: &str| tokens.contains(&word);
    let has_prefix = |prefix: &str| tokens.iter().any(|t| t.starts_with(prefix));
    let any = |words: &[&str]| words.iter().any(|w| has(w));
    let reads = any(&["query", "view", "read", "get", "list", "history", "status"]);
    // Words run together or split at camelCase humps (`WebSockets`, `canwithdraw`) still match.
    let compact: String = tokens.concat();
    let mentions = |word: &str| compact.contains(word);

    let recognised = if mentions("withdraw") {
        if mentions("address") {
            Some(WITHDRAW_ADDRESSES)
        } else if reads {
            // Reading withdrawals is not withdrawing: kept under its own name.
            None
        } else {
            Some(FUNDS_WITHDRAW)
        }
    } else if mentions("deposit") {
        Some(FUNDS_DEPOSIT)
    } else if mentions("websocket") || has("ws") {
        Some(WEBSOCKET)
    } else if has_prefix("export") {
        Some(EXPORT_DATA)
    } else if mentions("ledger") {
        Some(LEDGER_QUERY)
    } else if any(&[
        "order",
        "orders",
        "trade",
        "trades",
        "trading",
        "position",
        "positions",
    ]) {
        if has_prefix("cancel") || has("close") {
            Some(ORDERS_CANCEL)
        } else if has_prefix("creat") || any(&["modify", "add", "place", "edit", "amend"]) {
            Some(ORDERS_CREATE)
        } else if has("closed") {
            Some(ORDERS_QUERY_CLOSED)
        } else if has("open") {
            Some(ORDERS_QUERY_OPEN)
        } else if !reads && any(&["trade", "trades", "trading"]) {
            Some(ORDERS_CREATE)
        } else {
            None
        }
    } else if has("earn") {
        Some(FUNDS_EARN)
    } else if any(&["fund", "funds"]) && has("add") {
        Some(FUNDS_DEPOSIT)
    } else if any(&["fund", "funds", "balance", "balances"]) && reads {
        Some(FUNDS_QUERY)
    } else {
        None
    };
    match recognised {
        Some(name) => name.to_owned(),
        None if tokens.is_empty() => "unnamed".to_owned(),
        None => tokens.join("_"),
    }
}

/// Lowercase snake_case: words split at anything not a letter or digit and at camelCase humps.
fn snake_case(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 4);
    let mut previous: Option<char> = None;
    for c in raw.trim().chars() {
        if c.is_alphanumeric() {
            if c.is_uppercase() && previous.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit())
            {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
        previous = Some(c);
    }
    out.trim_matches('_').to_owned()
}

/// The permissions a key may hold without a finding when the operator names none:
/// `funds_query`, which the exporter needs, and `websocket`, which the balance stream needs and
/// which reads nothing more.
pub const DEFAULT_ALLOWED: [&str; 2] = [FUNDS_QUERY, WEBSOCKET];

/// A key that stops working within this many days is a finding (the limit of the
/// `KrakenKeyExpiresSoon` alert).
pub const EXPIRY_WARNING_DAYS: u64 = 14;

/// Age in days after which a key is due for rotation, unless configured otherwise (the
/// `key_rotation_days` of the monitoring mixin, whose `KrakenKeyRotationDue` alert uses it).
pub const DEFAULT_ROTATION_DAYS: u64 = 90;

/// What the operator expects of one account's key: what it is for decides what is risky.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Normalised permission names the key may hold (`allowed_permissions`); any other granted
    /// permission is a finding. A hot-wallet key allows `funds_withdraw` on purpose.
    pub allowed: BTreeSet<String>,
    /// A key older than this many days is due for rotation.
    pub rotation_days: u64,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            allowed: BTreeSet::from(DEFAULT_ALLOWED.map(str::to_owned)),
            rotation_days: DEFAULT_ROTATION_DAYS,
        }
    }
}

/// One way a key falls short of its [`KeyPolicy`] or of an operator's checklist, with the same
/// limits as the alerts on the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The key holds this permission (normalised name), which the policy does not allow.
    Unexpected(String),
    /// The key has stopped working.
    Expired,
    /// The key stops working within [`EXPIRY_WARNING_DAYS`]: whole days left.
    ExpiresSoon(u64),
    /// The key is older than the rotation age.
    RotationDue {
        /// Whole days since it was created.
        age_days: u64,
        /// The rotation age.
        limit_days: u64,
    },
    /// The key has no IP allowlist: it works from any address.
    AnyIp,
    /// Kraken accepts nonces this far below the last one for the key (`nonceWindow`).
    NonceWindow(u64),
    /// Another client seems to use the key.
    Shared(KeyWarning),
}

impl Finding {
    /// What was found, in one sentence.
    pub fn message(&self) -> String {
        match self {
            Finding::Unexpected(permission) => format!(
                "the key has {permission}, which allowed_permissions does not allow{}",
                if RISKY.contains(&permission.as_str()) {
                    " (it can move funds or trade)"
                } else {
                    ""
                }
            ),
            Finding::Expired => "the key has expired: Kraken refuses it".to_owned(),
            Finding::ExpiresSoon(days) => {
                format!("the key expires in {days} days (less than {EXPIRY_WARNING_DAYS})")
            }
            Finding::RotationDue {
                age_days,
                limit_days,
            } => format!(
                "the key is {age_days} days old, older than the rotation age of {limit_days} days"
            ),
            Finding::AnyIp => {
                "the key has no IP allowlist: it works from any IP address".to_owned()
            }
            Finding::NonceWindow(window) => format!(
                "the key has a nonce window of {window}: Kraken accepts nonces up to {window} below the last one, which only hides clients that share the key"
            ),
            Finding::Shared(warning) => {
                let text = warning.message();
                text.split(". Fix: ").next().unwrap_or(&text).to_owned()
            }
        }
    }

    /// What to do about it, in one sentence.
    pub fn advice(&self) -> String {
        match self {
            Finding::Unexpected(permission) => format!(
                "create a key without {permission} and replace this one, or add {permission} to allowed_permissions if this key is meant to have it"
            ),
            Finding::Expired | Finding::ExpiresSoon(_) | Finding::RotationDue { .. } => {
                "create a new key with the same permissions, switch the exporter to it, then delete the old one on Kraken".to_owned()
            }
            Finding::AnyIp => "restrict the key to the addresses the exporter calls Kraken from (IP allowlist on Kraken's key page)".to_owned(),
            Finding::NonceWindow(_) => "set the nonce window to 0 on Kraken's key page and give every exporter a key of its own".to_owned(),
            Finding::Shared(_) => "give the exporter a key of its own: one key per process, never shared".to_owned(),
        }
    }
}

impl KeyAudit {
    /// The granted permissions `policy` does not allow, in name order.
    pub fn unexpected<'a>(&'a self, policy: &KeyPolicy) -> Vec<&'a str> {
        self.permissions
            .iter()
            .filter(|(name, granted)| **granted && !policy.allowed.contains(name.as_str()))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Every finding about the key at `now`: unexpected permissions, expiry, age, IP allowlist,
    /// nonce window, and signs of a shared key. What GetApiKeyInfo did not say is no finding.
    pub fn findings(&self, policy: &KeyPolicy, now: SystemTime) -> Vec<Finding> {
        let mut findings: Vec<Finding> = self
            .unexpected(policy)
            .into_iter()
            .map(|permission| Finding::Unexpected(permission.to_owned()))
            .collect();
        if let Some(key) = &self.key {
            findings.extend(key_findings(key, policy, now));
        }
        findings.extend(self.warnings.iter().cloned().map(Finding::Shared));
        findings
    }
}

/// Whole days from `from` to `to` (0 when `to` is earlier).
pub fn days_between(from: SystemTime, to: SystemTime) -> u64 {
    to.duration_since(from).map_or(0, |d| d.as_secs() / 86_400)
}

/// The findings about the key itself: expiry, age, IP allowlist and nonce window.
fn key_findings(key: &ApiKeyInfo, policy: &KeyPolicy, now: SystemTime) -> Vec<Finding> {
    let mut findings = Vec::new();
    match key.valid_until {
        Some(KeyExpiry::At(at)) if at <= now => findings.push(Finding::Expired),
        Some(KeyExpiry::At(at))
            if at.duration_since(now).unwrap_or_default()
                < Duration::from_secs(EXPIRY_WARNING_DAYS * 86_400) =>
        {
            findings.push(Finding::ExpiresSoon(days_between(now, at)));
        }
        _ => {}
    }
    if let Some(created) = key.created_time
        && now.duration_since(created).unwrap_or_default()
            > Duration::from_secs(policy.rotation_days * 86_400)
    {
        findings.push(Finding::RotationDue {
            age_days: days_between(created, now),
            limit_days: policy.rotation_days,
        });
    }
    if key.ip_allowlist.as_ref().is_some_and(Vec::is_empty) {
        findings.push(Finding::AnyIp);
    }
    if let Some(window) = key.nonce_window.filter(|w| *w > 0) {
        findings.push(Finding::NonceWindow(window));
    }
    findings
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::metrics::RequestMetrics;
    use kraken::client::http_client;
    use kraken::nonce::{NonceSource, SystemClock};
    use kraken::sim::{Fault, SimKraken, SimOptions};
    use kraken::{BalanceEndpoint, ClientOptions, Endpoint};

    fn key_used(nonce: u64, last_used_secs: u64) -> ApiKeyInfo {
        ApiKeyInfo {
            nonce: Some(nonce),
            last_used: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(last_used_secs)),
            ..ApiKeyInfo::default()
        }
    }

    #[test]
    fn a_nonce_on_another_scale_or_a_later_use_is_another_client() {
        let ours = 1_772_627_060_997; // milliseconds
        let sent = SystemTime::UNIX_EPOCH + Duration::from_secs(1_772_627_061);
        // Kraken's nonce is our own call's, used in the same second: nothing to say.
        assert_eq!(
            usage_warnings(&key_used(ours, 1_772_627_061), Some(ours), sent),
            []
        );
        // A client signing with microseconds, then nanoseconds.
        let micro = usage_warnings(&key_used(ours * 1000 + 5, 1_772_627_061), Some(ours), sent);
        assert_eq!(micro, [KeyWarning::NonceScale { factor: 1000 }]);
        assert!(micro[0].message().contains("microsecond"), "{micro:?}");
        assert!(micro[0].message().contains("new API key"));
        let nano = usage_warnings(&key_used(ours * 1_000_000, 1_772_627_061), Some(ours), sent);
        assert!(nano[0].message().contains("nanosecond"), "{nano:?}");
        // A nonce ahead of ours on the same scale is not a scale problem.
        assert_eq!(
            usage_warnings(&key_used(ours * 999, 1_772_627_061), Some(ours), sent),
            []
        );
        // Used 30 s after our call: within the margin (clocks, whole seconds); 10 min: not ours.
        assert_eq!(
            usage_warnings(&key_used(ours, 1_772_627_091), Some(ours), sent),
            []
        );
        let shared = usage_warnings(&key_used(ours, 1_772_627_661), Some(ours), sent);
        assert!(
            matches!(shared.as_slice(), [KeyWarning::UsedElsewhere { .. }]),
            "{shared:?}"
        );
        assert!(shared[0].message().contains("600s after"), "{shared:?}");
        // Without a nonce of ours (no call signed yet) nothing is compared.
        assert_eq!(
            usage_warnings(&key_used(ours * 1000, 1_772_627_061), None, sent),
            []
        );
    }

    #[test]
    fn raw_names_map_to_normalised_permissions() {
        let cases = [
            ("query_funds", FUNDS_QUERY),
            ("Funds: Query", FUNDS_QUERY),
            ("can_query_funds", FUNDS_QUERY),
            ("QueryFunds", FUNDS_QUERY),
            ("view_balance", FUNDS_QUERY),
            ("funds_query", FUNDS_QUERY),
            ("Funds: Deposit", FUNDS_DEPOSIT),
            ("deposit_funds", FUNDS_DEPOSIT),
            ("can_deposit", FUNDS_DEPOSIT),
            ("Funds: Withdraw", FUNDS_WITHDRAW),
            ("withdraw_funds", FUNDS_WITHDRAW),
            ("can_withdraw", FUNDS_WITHDRAW),
            ("canWithdraw", FUNDS_WITHDRAW),
            ("funds_withdraw", FUNDS_WITHDRAW),
            ("Withdrawals", FUNDS_WITHDRAW),
            ("Query open orders & trades", ORDERS_QUERY_OPEN),
            ("query_open_orders", ORDERS_QUERY_OPEN),
            ("orders_query_open", ORDERS_QUERY_OPEN),
            ("Query closed orders & trades", ORDERS_QUERY_CLOSED),
            ("query_closed_trades", ORDERS_QUERY_CLOSED),
            ("Create & modify orders", ORDERS_CREATE),
            ("create_orders", ORDERS_CREATE),
            ("orders_create", ORDERS_CREATE),
            ("add_order", ORDERS_CREATE),
            ("trade", ORDERS_CREATE),
            ("can_trade", ORDERS_CREATE),
            ("Trading", ORDERS_CREATE),
            ("Cancel & close orders", ORDERS_CANCEL),
            ("cancel_orders", ORDERS_CANCEL),
            ("close_positions", ORDERS_CANCEL),
            ("Query ledger entries", LEDGER_QUERY),
            ("ledger_query", LEDGER_QUERY),
            ("Export data", EXPORT_DATA),
            ("export_data", EXPORT_DATA),
            ("Access WebSockets API", WEBSOCKET),
            ("websocket", WEBSOCKET),
            ("ws_token", WEBSOCKET),
            ("WebSocketToken", WEBSOCKET),
            ("canwithdraw", FUNDS_WITHDRAW),
            ("Funds: Earn", FUNDS_EARN),
            ("add_funds", FUNDS_DEPOSIT),
            ("Withdrawal addresses", WITHDRAW_ADDRESSES),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalise_permission(raw), expected, "{raw:?}");
        }
    }

    #[test]
    fn kraken_s_permission_codes_map_to_their_names() {
        let cases = [
            ("query-funds", FUNDS_QUERY),
            ("add-funds", FUNDS_DEPOSIT),
            ("withdraw-funds", FUNDS_WITHDRAW),
            ("earn-funds", FUNDS_EARN),
            ("query-open-trades", ORDERS_QUERY_OPEN),
            ("query-closed-trades", ORDERS_QUERY_CLOSED),
            ("modify-trades", ORDERS_CREATE),
            ("close-trades", ORDERS_CANCEL),
            ("query-ledger", LEDGER_QUERY),
            ("export-data", EXPORT_DATA),
            ("create-ws-token", WEBSOCKET),
            ("add-withdraw-address", WITHDRAW_ADDRESSES),
            ("update-withdraw-address", WITHDRAW_ADDRESSES),
            (" Withdraw-Funds ", FUNDS_WITHDRAW),
        ];
        for (code, expected) in cases {
            assert_eq!(normalise_permission(code), expected, "{code:?}");
        }
    }

    #[test]
    fn managing_or_reading_withdrawals_is_not_withdrawing() {
        for raw in [
            "add-withdraw-address",
            "update-withdraw-address",
            "delete-withdraw-address",
            "query-withdrawals",
            "withdrawal_status",
            "list_withdraw_methods",
        ] {
            assert_ne!(normalise_permission(raw), FUNDS_WITHDRAW, "{raw:?}");
        }
        let audit = KeyAudit::from_api_key_info(&info(&[
            "query-funds",
            "add-withdraw-address",
            "update-withdraw-address",
        ]));
        assert_eq!(audit.granted(FUNDS_WITHDRAW), Some(false));
        assert_eq!(audit.granted(WITHDRAW_ADDRESSES), Some(true));
        assert!(audit.risky().is_empty(), "{audit:?}");
    }

    #[test]
    fn every_documented_code_lands_on_a_known_name_without_stray_series() {
        let info = kraken::parse::api_key_info(
            200,
            include_bytes!("../tests/fixtures/kraken/api_key_info_every_code.json"),
        )
        .unwrap();
        let audit = KeyAudit::from_api_key_info(&info);
        let names: Vec<&str> = audit.permissions.keys().map(String::as_str).collect();
        let mut expected: Vec<&str> = KNOWN.iter().copied().chain([WITHDRAW_ADDRESSES]).collect();
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert!(audit.permissions.values().all(|granted| *granted));
        assert_eq!(
            audit.risky(),
            [FUNDS_WITHDRAW, ORDERS_CREATE, ORDERS_CANCEL]
        );
    }

    #[test]
    fn the_documented_example_key_may_withdraw_and_trade() {
        let info = kraken::parse::api_key_info(
            200,
            include_bytes!("../tests/fixtures/kraken/doc_api_key_info.json"),
        )
        .unwrap();
        let audit = KeyAudit::from_api_key_info(&info);
        assert_eq!(audit.risky(), [FUNDS_WITHDRAW, ORDERS_CREATE]);
        assert_eq!(audit.granted(FUNDS_QUERY), Some(true));
        assert_eq!(audit.granted(ORDERS_QUERY_OPEN), Some(true));
        assert_eq!(audit.granted(FUNDS_DEPOSIT), Some(false));
        assert_eq!(audit.permissions.len(), KNOWN.len());
    }

    #[test]
    fn unknown_codes_are_kept_under_their_own_name_and_are_never_risky() {
        let audit = KeyAudit::from_api_key_info(&info(&["query-funds", "query-nft"]));
        assert_eq!(audit.granted("query_nft"), Some(true));
        assert!(audit.risky().is_empty());
    }

    #[test]
    fn unrecognised_names_are_kept_in_lowercase_snake_case() {
        assert_eq!(normalise_permission("  NFT -- Query  "), "nft_query");
        assert_eq!(normalise_permission("stakingV2"), "staking_v2");
        assert_eq!(normalise_permission("query_orders"), "query_orders");
        assert_eq!(normalise_permission("!!!"), "unnamed");
    }

    fn info(permissions: &[&str]) -> ApiKeyInfo {
        ApiKeyInfo {
            name: Some("exporter".into()),
            permissions: permissions.iter().map(|&code| code.to_owned()).collect(),
            ..ApiKeyInfo::default()
        }
    }

    #[test]
    fn findings_use_the_limits_of_the_alerts_and_the_allowed_permissions() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(86_400);
        let key = |expires: Duration, age: Duration, allowlist: &[&str], window: u64| ApiKeyInfo {
            permissions: ["query-funds", "withdraw-funds", "create-ws-token"]
                .map(str::to_owned)
                .into(),
            valid_until: Some(KeyExpiry::At(now + expires)),
            created_time: Some(now - age),
            ip_allowlist: Some(allowlist.iter().map(|a| (*a).to_owned()).collect()),
            nonce_window: Some(window),
            ..ApiKeyInfo::default()
        };
        let policy = KeyPolicy::default();
        // Just inside every limit: only the permission the default does not allow.
        let fine = KeyAudit::from_api_key_info(&key(day * 14, day * 90, &["192.0.2.7"], 0));
        assert_eq!(
            fine.findings(&policy, now),
            [Finding::Unexpected(FUNDS_WITHDRAW.into())]
        );
        // A hot-wallet key allows withdrawals on purpose.
        let hot = KeyPolicy {
            allowed: [FUNDS_QUERY, WEBSOCKET, FUNDS_WITHDRAW]
                .map(str::to_owned)
                .into(),
            rotation_days: 30,
        };
        let worn = KeyAudit::from_api_key_info(&key(
            day * 14 - Duration::from_secs(1),
            day * 90 + Duration::from_secs(1),
            &[],
            5000,
        ));
        assert_eq!(
            worn.findings(&hot, now),
            [
                Finding::ExpiresSoon(13),
                Finding::RotationDue {
                    age_days: 90,
                    limit_days: 30
                },
                Finding::AnyIp,
                Finding::NonceWindow(5000),
            ]
        );
        let expired = KeyAudit::from_api_key_info(&key(Duration::ZERO, day, &["x"], 0));
        assert_eq!(expired.findings(&hot, now), [Finding::Expired]);
        for finding in worn.findings(&policy, now) {
            assert!(!finding.message().is_empty() && !finding.advice().is_empty());
        }
        let message = Finding::Unexpected(FUNDS_WITHDRAW.into()).message();
        assert!(message.contains("can move funds"), "{message}");
        let shared = Finding::Shared(KeyWarning::NonceScale { factor: 1000 });
        assert!(!shared.message().contains("Fix:"), "{}", shared.message());
    }

    #[test]
    fn a_query_only_key_has_nothing_risky() {
        let audit = KeyAudit::from_api_key_info(&info(&["query-funds"]));
        assert_eq!(audit.source, AuditSource::ApiKeyInfo);
        assert!(audit.risky().is_empty());
        assert_eq!(audit.granted(FUNDS_QUERY), Some(true));
        assert_eq!(audit.granted(FUNDS_WITHDRAW), Some(false));
        // Not listed: not granted, and exported as 0.
        assert_eq!(audit.granted(LEDGER_QUERY), Some(false));
    }

    #[test]
    fn risky_lists_withdraw_then_create_then_cancel() {
        let audit = KeyAudit::from_api_key_info(&info(&[
            "close-trades",
            "modify-trades",
            "withdraw-funds",
            "query-funds",
            "export-data",
        ]));
        assert_eq!(
            audit.risky(),
            [FUNDS_WITHDRAW, ORDERS_CREATE, ORDERS_CANCEL]
        );
    }

    #[test]
    fn unneeded_lists_what_a_monitoring_key_should_not_have_beside_the_risky_ones() {
        let audit = KeyAudit::from_api_key_info(&info(&[
            "query-funds",
            "earn-funds",
            "export-data",
            "withdraw-funds",
        ]));
        assert_eq!(audit.unneeded(), [EXPORT_DATA, FUNDS_EARN]);
        let query_only = KeyAudit::from_api_key_info(&info(&["query-funds"]));
        assert!(query_only.unneeded().is_empty());
    }

    #[test]
    fn a_permission_granted_under_any_spelling_is_granted_once() {
        let audit = KeyAudit::from_api_key_info(&info(&["withdraw-funds", "Funds: Withdraw"]));
        assert_eq!(audit.granted(FUNDS_WITHDRAW), Some(true));
        assert_eq!(
            audit.permissions.len(),
            KNOWN.len(),
            "one entry per known permission"
        );
    }

    fn api_error(message: &str) -> KrakenError {
        let (reason, retry_at) = kraken::error::classify(message);
        KrakenError::Api {
            reason,
            message: message.to_owned(),
            retry_at,
        }
    }

    #[test]
    fn the_probe_establishes_only_withdraw() {
        let audit = KeyAudit::from_withdraw_probe(Ok(())).unwrap();
        assert_eq!(audit.source, AuditSource::WithdrawProbe);
        assert_eq!(audit.risky(), [FUNDS_WITHDRAW]);
        assert_eq!(audit.granted(ORDERS_CREATE), None);

        let audit =
            KeyAudit::from_withdraw_probe(Err(api_error("EGeneral:Permission denied"))).unwrap();
        assert_eq!(audit.granted(FUNDS_WITHDRAW), Some(false));
        assert!(audit.risky().is_empty());

        for failure in [
            api_error("EService:Unavailable"),
            api_error("EAPI:Invalid key"),
            KrakenError::Timeout(Duration::from_secs(1)),
        ] {
            assert!(KeyAudit::from_withdraw_probe(Err(failure)).is_err());
        }
    }

    #[test]
    fn only_refusals_fall_back_to_the_probe() {
        assert!(falls_back_to_probe(&api_error("EGeneral:Unknown method")));
        assert!(falls_back_to_probe(&api_error(
            "EGeneral:Permission denied"
        )));
        assert!(falls_back_to_probe(&KrakenError::Status {
            status: 404,
            path: None,
        }));
        for transient in [
            api_error("EService:Unavailable"),
            api_error("EAPI:Rate limit exceeded"),
            api_error("EGeneral:Temporary lockout"),
            api_error("EAPI:Invalid key"),
            KrakenError::Timeout(Duration::from_secs(1)),
            KrakenError::Status {
                status: 520,
                path: None,
            },
            KrakenError::Decode("an HTML page instead of JSON".into()),
            KrakenError::NoCredentials {
                method: "GetApiKeyInfo",
            },
        ] {
            assert!(!falls_back_to_probe(&transient), "{transient}");
        }
    }

    fn client(sim: &SimKraken, metrics: &Arc<RequestMetrics>) -> KrakenClient {
        let timeout = Duration::from_secs(5);
        KrakenClient::new(
            http_client(timeout).unwrap(),
            ClientOptions {
                api_url: sim.url(),
                timeout,
                balance_endpoint: BalanceEndpoint::Auto,
            },
            sim.credentials(),
            Arc::new(NonceSource::new(Box::new(SystemClock))),
            "audited".into(),
            metrics.clone(),
        )
    }

    async fn sim(permissions: &[&str], api_key_info_enabled: bool) -> SimKraken {
        SimKraken::start(SimOptions {
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            api_key_info_enabled,
            ..SimOptions::default()
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_query_only_key_is_not_risky() {
        let sim = sim(&["query-funds"], true).await;
        let metrics = Arc::new(RequestMetrics::new());
        let audit = audit_key(&client(&sim, &metrics)).await.unwrap();
        assert_eq!(audit.source, AuditSource::ApiKeyInfo);
        assert!(audit.risky().is_empty(), "{audit:?}");
        assert_eq!(audit.granted(FUNDS_QUERY), Some(true));
        assert_eq!(metrics.requests("audited", Endpoint::GetApiKeyInfo), 1);
        assert_eq!(sim.calls(Endpoint::WithdrawMethods), 0);
    }

    #[tokio::test]
    async fn the_key_kraken_echoes_is_never_kept() {
        let sim = sim(&["query-funds"], true).await;
        let metrics = Arc::new(RequestMetrics::new());
        let info = client(&sim, &metrics).api_key_info().await.unwrap();
        let key = sim.credentials().key.expose().to_owned();
        assert!(!format!("{info:?}").contains(&key));
        assert_eq!(info.name.as_deref(), Some("exporter"));
        assert!(info.nonce.is_some_and(|nonce| nonce > 0), "{info:?}");
    }

    #[tokio::test]
    async fn a_key_that_may_withdraw_is_risky() {
        let sim = sim(&["query-funds", "withdraw-funds"], true).await;
        let metrics = Arc::new(RequestMetrics::new());
        let audit = audit_key(&client(&sim, &metrics)).await.unwrap();
        assert_eq!(audit.risky(), [FUNDS_WITHDRAW]);
    }

    #[tokio::test]
    async fn without_get_api_key_info_the_probe_gives_the_same_verdict_on_withdraw() {
        for (permissions, risky) in [
            (&["query-funds"][..], &[][..]),
            (
                &["query-funds", "withdraw-funds"][..],
                &[FUNDS_WITHDRAW][..],
            ),
        ] {
            let sim = sim(permissions, false).await;
            let metrics = Arc::new(RequestMetrics::new());
            let audit = audit_key(&client(&sim, &metrics)).await.unwrap();
            assert_eq!(audit.source, AuditSource::WithdrawProbe);
            assert_eq!(audit.risky(), risky, "{permissions:?}");
            assert_eq!(sim.calls(Endpoint::GetApiKeyInfo), 1);
            assert_eq!(metrics.requests("audited", Endpoint::WithdrawMethods), 1);
        }
    }

    #[tokio::test]
    async fn a_failing_kraken_is_an_error_not_a_probe() {
        let sim = sim(&["query-funds", "withdraw-funds"], true).await;
        sim.inject(
            Endpoint::GetApiKeyInfo,
            Fault::KrakenError("EService:Unavailable".into()),
            None,
        );
        let metrics = Arc::new(RequestMetrics::new());
        let error = audit_key(&client(&sim, &metrics)).await.unwrap_err();
        assert_eq!(error.reason(), Reason::Unavailable);
        assert_eq!(sim.calls(Endpoint::WithdrawMethods), 0);
    }

    #[tokio::test]
    async fn a_public_client_cannot_be_audited() {
        let sim = sim(&["query-funds"], true).await;
        let metrics = Arc::new(RequestMetrics::new());
        let timeout = Duration::from_secs(5);
        let public = KrakenClient::public(
            http_client(timeout).unwrap(),
            ClientOptions {
                api_url: sim.url(),
                timeout,
                balance_endpoint: BalanceEndpoint::Auto,
            },
            "_public".into(),
            metrics.clone(),
        );
        let error = audit_key(&public).await.unwrap_err();
        assert!(
            matches!(error, KrakenError::NoCredentials { .. }),
            "{error}"
        );
        assert_eq!(sim.calls(Endpoint::GetApiKeyInfo), 0);
        assert_eq!(sim.calls(Endpoint::WithdrawMethods), 0);
    }
}
