//! Rate limiting: token buckets per key ([`Buckets`]), per client address ([`RateLimiter`]), and
//! the caller's address as an extractor ([`ClientIp`]). Login throttling
//! ([`crate::auth::LoginThrottle`]) is built on the same buckets.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;

pub use tessera_host::serve::client_key;

/// Buckets kept at most; beyond this, full ones are forgotten (and all, if that is not enough).
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per key: `burst` at once, then one more every `refill_secs`. Memory stays
/// bounded: when there are many, buckets that are full again are forgotten (a full bucket is as
/// good as none).
#[derive(Debug)]
pub struct Buckets<K> {
    burst: f64,
    refill_secs: f64,
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: std::hash::Hash + Eq> Buckets<K> {
    /// `burst` tokens at once (at least 1), one more every `refill_secs` (more than 0).
    pub fn new(burst: f64, refill_secs: f64) -> Self {
        Buckets {
            burst: burst.max(1.0),
            refill_secs: refill_secs.max(f64::MIN_POSITIVE),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at `now`; otherwise the whole seconds until one is back (at
    /// least 1, for `Retry-After`).
    pub fn take(&self, key: K, now: Instant) -> Result<(), u64> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_BUCKETS {
            let full_after = Duration::from_secs_f64(self.burst * self.refill_secs);
            map.retain(|_, b| now.duration_since(b.at) < full_after);
            if map.len() > MAX_BUCKETS {
                map.clear();
            }
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(b.at).as_secs_f64() / self.refill_secs;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) * self.refill_secs).ceil().max(1.0) as u64)
        }
    }

    /// Gives one token back to `key` (the attempt should not count after all).
    pub fn give_back(&self, key: &K) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get_mut(key) {
            b.tokens = (b.tokens + 1.0).min(self.burst);
        }
    }
}

/// Requests per client address: `per_minute` a minute, in bursts of as many. An IPv6 client
/// counts by its /64, an IPv4 client seen through a dual-stack listener by its IPv4 address
/// ([`client_key`]). Loopback callers can be exempted (a service's own machine).
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Buckets<IpAddr>,
    exempt_loopback: bool,
    refused: AtomicU64,
}

impl RateLimiter {
    /// `per_minute` requests a minute per address (at least 1), loopback included.
    pub fn new(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        RateLimiter {
            per_minute,
            buckets: Buckets::new(f64::from(per_minute), 60.0 / f64::from(per_minute)),
            exempt_loopback: false,
            refused: AtomicU64::new(0),
        }
    }

    /// The same limiter, with callers on this machine (loopback) never limited when `exempt`.
    pub fn exempt_loopback(mut self, exempt: bool) -> Self {
        self.exempt_loopback = exempt;
        self
    }

    /// Requests a minute per address.
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Takes one request from `ip`'s allowance; when none is left, the whole seconds until one is
    /// back.
    pub fn allow(&self, ip: IpAddr) -> Result<(), u64> {
        if self.exempt_loopback && is_loopback(ip) {
            return Ok(());
        }
        self.buckets
            .take(client_key(ip), Instant::now())
            .inspect_err(|_| {
                self.refused.fetch_add(1, Ordering::Relaxed);
            })
    }
}

/// Whether `ip` is this machine (also as an IPv4-mapped IPv6 address).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The caller's address (loopback when the router runs without connection info, as in a test
/// that calls it directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<St: Send + Sync> axum::extract::FromRequestParts<St> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &St,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_their_rate_and_say_how_long_to_wait() {
        let b = Buckets::new(2.0, 10.0);
        let t0 = Instant::now();
        b.take("k", t0).unwrap();
        b.take("k", t0).unwrap();
        assert_eq!(b.take("k", t0), Err(10));
        // another key has its own
        b.take("other", t0).unwrap();
        // 5 s later half a token is back: 5 s to wait
        assert_eq!(b.take("k", t0 + Duration::from_secs(5)), Err(5));
        b.take("k", t0 + Duration::from_secs(10)).unwrap();
        // a given-back token is there at once, never more than the burst
        b.give_back(&"k");
        b.take("k", t0 + Duration::from_secs(10)).unwrap();
        for _ in 0..5 {
            b.give_back(&"other");
        }
        b.take("other", t0).unwrap();
        b.take("other", t0).unwrap();
        assert!(b.take("other", t0).is_err());
    }

    #[test]
    fn the_limiter_counts_per_address_and_can_exempt_loopback() {
        let l = RateLimiter::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        l.allow(a).unwrap();
        l.allow(mapped).unwrap();
        // the same client either way: its budget is used up
        assert_eq!(l.allow(a), Err(30));
        assert_eq!(l.refused(), 1);
        // IPv6 by /64
        l.allow("2001:db8::1".parse().unwrap()).unwrap();
        l.allow("2001:db8::2".parse().unwrap()).unwrap();
        assert!(l.allow("2001:db8::3".parse().unwrap()).is_err());
        assert!(l.allow("2001:db8:0:1::3".parse().unwrap()).is_ok());
        // loopback: limited unless exempt
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let limited = RateLimiter::new(1);
        limited.allow(lo).unwrap();
        assert!(limited.allow(lo).is_err());
        let exempt = RateLimiter::new(1).exempt_loopback(true);
        for _ in 0..10 {
            exempt.allow(lo).unwrap();
            exempt.allow("::ffff:127.0.0.1".parse().unwrap()).unwrap();
        }
        assert!(exempt.allow(a).is_ok() && exempt.allow(a).is_err());
        assert_eq!(exempt.per_minute(), 1);
    }
}
