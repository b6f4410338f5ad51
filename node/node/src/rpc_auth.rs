//! Signed RPC requests: how a member account proves who reads a private repository.
//!
//! A request carries `x-aergo-account` (an account address), `x-aergo-timestamp` (ms since
//! the Unix epoch) and `x-aergo-signature` (ed25519, hex) over
//! `aergo_types::repo::read_auth_message(time, account, body)`. It is accepted when the
//! signature verifies, the time is within `AUTH_MAX_SKEW_MS` of the node's clock, and the
//! same signature was not seen within the window (no replay). Loopback TCP is not trusted:
//! every client proves its account the same way. A request without the headers is anonymous.

use aergo_types::repo::{
    read_auth_message, AUTH_ACCOUNT_HEADER, AUTH_MAX_SKEW_MS, AUTH_SIGNATURE_HEADER,
    AUTH_TIME_HEADER,
};
use aergo_types::{Address, Hash, Signature};
use axum::http::HeaderMap;
use parking_lot::Mutex;
use std::collections::{HashSet, VecDeque};

/// Most signatures remembered for replay detection; past it, signed requests are refused
/// until the window moves on (a flood of valid signatures cannot grow memory).
pub const REPLAY_MAX: usize = 100_000;

/// Signatures seen within the window: a set for the replay check, and the same ids in the
/// order they were accepted (with the node's time then) so expired ones are dropped from the
/// front — each request does constant work, however many are remembered.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<Seen>,
}

/// The remembered signature ids, and the same ids with the node time they were accepted at.
type Seen = (HashSet<Hash>, VecDeque<(u64, Hash)>);

/// Why a signed request is refused.
#[derive(Debug, thiserror::Error)]
#[error("bad request signature: {0}")]
pub struct AuthError(pub String);

impl ReplayGuard {
    /// The account that signed the request, `None` when it is unsigned.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Option<Address>, AuthError> {
        let get = |h: &str| headers.get(h).map(|v| v.to_str().unwrap_or(""));
        let (account, time, sig) = match (
            get(AUTH_ACCOUNT_HEADER),
            get(AUTH_TIME_HEADER),
            get(AUTH_SIGNATURE_HEADER),
        ) {
            (None, None, None) => return Ok(None),
            (Some(a), Some(t), Some(s)) => (a, t, s),
            _ => {
                return Err(AuthError(format!(
                    "a signed request carries all of {AUTH_ACCOUNT_HEADER}, {AUTH_TIME_HEADER} and {AUTH_SIGNATURE_HEADER}"
                )))
            }
        };
        let account = Address::decode(account).map_err(|e| AuthError(e.to_string()))?;
        let key = account
            .public_key()
            .ok_or_else(|| AuthError(format!("{account} is not an account address")))?;
        let time: u64 = time
            .parse()
            .map_err(|_| AuthError(format!("{AUTH_TIME_HEADER} is not a number")))?;
        if time.abs_diff(now_ms) > AUTH_MAX_SKEW_MS {
            return Err(AuthError(format!(
                "signed at {time}, {} ms from this node's clock ({now_ms}); at most {AUTH_MAX_SKEW_MS} ms",
                time.abs_diff(now_ms)
            )));
        }
        let sig = Signature::from_hex(sig).map_err(|e| AuthError(e.to_string()))?;
        let msg = read_auth_message(time, &account, body);
        if !key.verify(&msg.0, &sig) {
            return Err(AuthError(format!(
                "the signature does not verify for {account}"
            )));
        }
        let id = Hash::of(&sig.0);
        let mut guard = self.seen.lock();
        let (seen, order) = &mut *guard;
        // A signature accepted at node time `a` carries a time within the skew of `a`, so it
        // can verify again only until `a` + twice the skew: older ones are forgotten.
        while let Some((at, old)) = order.front().copied() {
            if now_ms.saturating_sub(at) <= 2 * AUTH_MAX_SKEW_MS {
                break;
            }
            order.pop_front();
            seen.remove(&old);
        }
        if seen.contains(&id) {
            return Err(AuthError(
                "this signed request was already used (replay); sign each request anew".into(),
            ));
        }
        if seen.len() >= REPLAY_MAX {
            return Err(AuthError(
                "too many signed requests in the replay window; retry shortly".into(),
            ));
        }
        seen.insert(id);
        order.push_back((now_ms, id));
        Ok(Some(account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_types::Keypair;

    fn headers(k: &Keypair, time: u64, body: &[u8]) -> HeaderMap {
        let a = Address::from_public_key(&k.public());
        let sig = k.sign(&read_auth_message(time, &a, body).0);
        let mut h = HeaderMap::new();
        h.insert(AUTH_ACCOUNT_HEADER, a.encode().parse().unwrap());
        h.insert(AUTH_TIME_HEADER, time.to_string().parse().unwrap());
        h.insert(AUTH_SIGNATURE_HEADER, sig.to_hex().parse().unwrap());
        h
    }

    #[test]
    fn signed_requests_verify_once_within_the_window() {
        let g = ReplayGuard::default();
        let k = Keypair::generate();
        let now = 1_000_000;
        let h = headers(&k, now, b"{}");
        assert_eq!(
            g.verify(&h, b"{}", now + 5).unwrap(),
            Some(Address::from_public_key(&k.public()))
        );
        assert!(g
            .verify(&h, b"{}", now + 6)
            .unwrap_err()
            .0
            .contains("replay"));
        // Another body, another time, a stale time, a missing header.
        assert!(g.verify(&headers(&k, now + 1, b"{}"), b"{ }", now).is_err());
        let stale = headers(&k, now - AUTH_MAX_SKEW_MS - 1, b"{}");
        assert!(g
            .verify(&stale, b"{}", now)
            .unwrap_err()
            .0
            .contains("clock"));
        let mut partial = headers(&k, now + 2, b"{}");
        partial.remove(AUTH_SIGNATURE_HEADER);
        assert!(g.verify(&partial, b"{}", now).is_err());
        assert_eq!(g.verify(&HeaderMap::new(), b"{}", now).unwrap(), None);
        // Past the window the remembered signature is forgotten (it could not verify anyway).
        let later = now + 2 * AUTH_MAX_SKEW_MS + 10;
        let fresh = headers(&k, later, b"{}");
        assert!(g.verify(&fresh, b"{}", later).is_ok());
        assert_eq!(
            g.seen.lock().0.len(),
            1,
            "expired signatures were not dropped"
        );
    }
}
