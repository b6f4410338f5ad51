//! Peer scoring, bans and per-peer rate limits: pure state with the time passed in.
//!
//! Every peer starts at score 0. Each [`Penalty`] subtracts its weight; every second of good
//! behaviour moves the score one point back toward 0 ([`Scores::decay`]). A peer whose score
//! falls to [`Scores::threshold`] or below is banned for the ban period: the network layer
//! closes its connections and refuses new ones until the ban expires, then the peer starts
//! again at 0.
//!
//! Rate limits are token buckets: `rate` messages per second with a burst of `2 × rate`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Why a peer is penalised. The weight is what the score drops by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Penalty {
    /// A block that decoded but failed validation (reported by the node).
    InvalidBlock,
    /// A transaction that decoded but failed validation (reported by the node).
    InvalidTx,
    /// A message that does not decode, or belongs to another chain.
    Garbage,
    /// A message over the topic's size limit.
    Oversized,
    /// More messages or requests than the per-peer rate allows.
    RateLimited,
    /// A block-range or status response that does not match the request.
    BadResponse,
    /// Two blocks signed for one slot, or any other proof of malice: an immediate ban.
    Equivocation,
}

impl Penalty {
    /// How much the score drops.
    pub fn weight(self) -> i32 {
        match self {
            Penalty::InvalidBlock => 50,
            Penalty::InvalidTx => 10,
            Penalty::Garbage => 40,
            Penalty::Oversized => 60,
            Penalty::RateLimited => 5,
            Penalty::BadResponse => 40,
            Penalty::Equivocation => 1_000,
        }
    }
}

/// The outcome of a penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The peer stays; its new score.
    Keep(i32),
    /// The peer crossed the threshold and is banned until the given instant.
    Ban(Instant),
}

/// Scores and bans of all peers seen.
#[derive(Debug)]
pub struct Scores {
    threshold: i32,
    ban: Duration,
    scores: HashMap<PeerId, i32>,
    banned: HashMap<PeerId, Instant>,
}

impl Scores {
    /// Peers at or below `threshold` (negative) are banned for `ban`.
    pub fn new(threshold: i32, ban: Duration) -> Self {
        Self {
            threshold: threshold.min(-1),
            ban,
            scores: HashMap::new(),
            banned: HashMap::new(),
        }
    }

    /// The ban threshold.
    pub fn threshold(&self) -> i32 {
        self.threshold
    }

    /// A peer's score (0 when unknown).
    pub fn score(&self, peer: &PeerId) -> i32 {
        self.scores.get(peer).copied().unwrap_or(0)
    }

    /// Applies a penalty at `now`.
    pub fn penalize(&mut self, peer: PeerId, p: Penalty, now: Instant) -> Verdict {
        if let Some(until) = self.banned.get(&peer) {
            return Verdict::Ban(*until);
        }
        let s = self.scores.entry(peer).or_insert(0);
        *s = s.saturating_sub(p.weight());
        if *s <= self.threshold {
            let until = now + self.ban;
            self.scores.remove(&peer);
            self.banned.insert(peer, until);
            Verdict::Ban(until)
        } else {
            Verdict::Keep(*s)
        }
    }

    /// Whether `peer` is banned at `now`.
    pub fn is_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.banned.get(peer).is_some_and(|until| now < *until)
    }

    /// Moves every score `seconds` points toward 0 and returns the peers whose ban expired
    /// (the caller unblocks them).
    pub fn decay(&mut self, seconds: u32, now: Instant) -> Vec<PeerId> {
        let step = i32::try_from(seconds).unwrap_or(i32::MAX);
        self.scores.retain(|_, s| {
            *s = if *s < 0 {
                s.saturating_add(step).min(0)
            } else {
                s.saturating_sub(step).max(0)
            };
            *s != 0
        });
        let expired: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| now >= **until)
            .map(|(p, _)| *p)
            .collect();
        for p in &expired {
            self.banned.remove(p);
        }
        expired
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    /// `rate` per second, burst of `2 × rate`, full at `now`.
    pub fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            tokens: 2.0 * rate,
            last: now,
            rate,
            burst: 2.0 * rate,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_ban_and_expire() {
        let t0 = Instant::now();
        let mut s = Scores::new(-100, Duration::from_secs(10));
        let p = PeerId::random();
        assert_eq!(s.penalize(p, Penalty::Garbage, t0), Verdict::Keep(-40));
        assert_eq!(s.penalize(p, Penalty::Garbage, t0), Verdict::Keep(-80));
        assert_eq!(s.decay(5, t0), vec![]);
        assert_eq!(s.score(&p), -75);
        assert!(matches!(
            s.penalize(p, Penalty::Garbage, t0),
            Verdict::Ban(_)
        ));
        assert!(s.is_banned(&p, t0 + Duration::from_secs(9)));
        assert!(s.decay(1, t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(s.decay(1, t0 + Duration::from_secs(10)), vec![p]);
        assert!(!s.is_banned(&p, t0 + Duration::from_secs(10)));
        assert_eq!(s.score(&p), 0);
    }

    #[test]
    fn equivocation_bans_at_once() {
        let t0 = Instant::now();
        let mut s = Scores::new(-100, Duration::from_secs(1));
        let p = PeerId::random();
        assert!(matches!(
            s.penalize(p, Penalty::Equivocation, t0),
            Verdict::Ban(_)
        ));
    }

    #[test]
    fn bucket_limits_and_refills() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, t0);
        let taken = (0..100).filter(|_| b.take(t0)).count();
        assert_eq!(taken, 20);
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
    }
}
