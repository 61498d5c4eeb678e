//! What one client may ask of a node, so that no client can slow the others
//! down: per socket, a sustained event rate with a burst and a bound on
//! events in progress; per user, a rate of HTTP requests; per client
//! address, a rate of new connections (the address read from
//! `X-Forwarded-For` only when the peer is a trusted proxy). Past a budget
//! the answer comes at once, before any store or shared-state call. Sends,
//! creations and the sockets-per-user cap are cluster-wide and live in
//! shared state (`Ephemeral`); these are per node, which is what protects a
//! node.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Budgets;
use crate::domain::UserId;
use crate::instruments::Refusal;

/// Keyed buckets beyond which idle ones are forgotten (the maps stay bounded).
const MAX_TRACKED_KEYS: usize = 100_000;

fn quota(per_sec: u32, burst: u32) -> Quota {
    // `Config::validate` keeps both at least 1; `MIN` only guards direct construction.
    Quota::per_second(NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

fn check_keyed<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> bool {
    let allowed = limiter.check_key(key).is_ok();
    if limiter.len() > MAX_TRACKED_KEYS {
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
    allowed
}

/// One socket's budget, kept in its extensions.
pub struct SocketBudget {
    rate: DefaultDirectRateLimiter,
    in_flight: Arc<Semaphore>,
}

impl SocketBudget {
    pub fn new(budgets: &Budgets) -> Self {
        Self {
            rate: RateLimiter::direct(quota(
                budgets.socket_events_per_sec,
                budgets.socket_event_burst,
            )),
            in_flight: Arc::new(Semaphore::new(budgets.socket_events_in_flight.max(1))),
        }
    }

    /// Admits one event: a permit to hold while it is handled, or why not
    /// (the reason label of `parloir_refusals_total`).
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        let permit = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::EventsInFlight)?;
        self.rate.check().map_err(|_| Refusal::EventRate)?;
        Ok(permit)
    }
}

/// The node-wide budgets that are not a socket's: HTTP requests per user,
/// new connections per client address. Cheap to clone.
#[derive(Clone)]
pub struct NodeBudget {
    budgets: Arc<Budgets>,
    http: Arc<DefaultKeyedRateLimiter<UserId>>,
    handshakes: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

impl NodeBudget {
    pub fn new(budgets: &Budgets) -> Self {
        Self {
            budgets: Arc::new(budgets.clone()),
            http: Arc::new(RateLimiter::keyed(quota(
                budgets.http_requests_per_sec,
                budgets.http_request_burst,
            ))),
            handshakes: Arc::new(RateLimiter::keyed(quota(
                budgets.handshakes_per_sec,
                budgets.handshake_burst,
            ))),
        }
    }

    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// One HTTP request of `user`; false past the user's budget on this node.
    pub fn admit_http(&self, user: &UserId) -> bool {
        check_keyed(&self.http, user)
    }

    /// One new connection from the request's client address; false past
    /// that address's budget. A request without a known peer is admitted.
    pub fn admit_handshake(&self, request: &Parts) -> bool {
        match client_address(request, &self.budgets.trusted_proxies) {
            Some(address) => check_keyed(&self.handshakes, &address),
            None => true,
        }
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy —
/// the last address in `X-Forwarded-For` that is not itself a trusted proxy
/// (the leftmost entries are whatever the client chose to send).
pub fn client_address(request: &Parts, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = request
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = request
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .unwrap_or(peer),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: &[&str]) -> Parts {
        let mut builder = axum::http::Request::builder();
        for f in forwarded {
            builder = builder.header("x-forwarded-for", *f);
        }
        let (mut parts, ()) = builder.body(()).expect("a request").into_parts();
        let peer: SocketAddr = peer.parse().expect("a socket address");
        parts.extensions.insert(ConnectInfo(peer));
        parts
    }

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter()
            .map(|n| n.parse().expect("a CIDR block"))
            .collect()
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("an IP"));
        let spoofed = request("203.0.113.7:5000", &["198.51.100.1"]);
        assert_eq!(
            client_address(&spoofed, &nets(&["10.0.0.0/8"])),
            ip("203.0.113.7")
        );
        let proxied = request("10.1.2.3:5000", &["198.51.100.1, 10.9.9.9"]);
        assert_eq!(
            client_address(&proxied, &nets(&["10.0.0.0/8"])),
            ip("198.51.100.1")
        );
        let forged_left = request("10.1.2.3:5000", &["1.1.1.1", "198.51.100.1"]);
        assert_eq!(
            client_address(&forged_left, &nets(&["10.0.0.0/8"])),
            ip("198.51.100.1"),
            "the rightmost untrusted entry, not what the client put first"
        );
        let none = request("10.1.2.3:5000", &[]);
        assert_eq!(
            client_address(&none, &nets(&["10.0.0.0/8"])),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn a_socket_is_refused_past_its_rate_and_its_events_in_flight() {
        let budgets = Budgets {
            socket_events_per_sec: 1,
            socket_event_burst: 3,
            socket_events_in_flight: 2,
            ..Budgets::generous()
        };
        let budget = SocketBudget::new(&budgets);
        let first = budget.admit().expect("within the budget");
        let second = budget.admit().expect("within the budget");
        assert_eq!(budget.admit().unwrap_err(), Refusal::EventsInFlight);
        drop((first, second));
        assert!(budget.admit().is_ok(), "the third token of the burst");
        assert_eq!(budget.admit().unwrap_err(), Refusal::EventRate);
    }
}
