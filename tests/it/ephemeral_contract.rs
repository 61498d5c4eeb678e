//! Behaviour of the `Ephemeral` trait: presence across devices, typing
//! expiry and throttling, unread counters, rate limits. Each case is written
//! once over `Ephemeral` and instantiated for every implementation.
//! Time is passed in explicitly, never waited for, except where Redis
//! itself counts it (a node heartbeat's TTL lapses by the Redis clock).
//! The Redis cases run on one Redis (`PARLOIR_TEST_REDIS_URL`) and on a Redis
//! Cluster (`PARLOIR_TEST_REDIS_CLUSTER_URL`); each uses its own key prefix.

// The cases are test bodies instantiated by a macro, not `#[test]` functions
// themselves: each `unwrap` is an assertion that the call succeeds.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use parloir::config::RateLimits;
use parloir::domain::{ConversationId, MessageId, UserId};
use parloir::ephemeral::UnixMillis;
use parloir::ephemeral::{Ephemeral, MemoryEphemeral, SocketAdmission, Typist};
use parloir::supervisor::Supervisor;

fn now() -> UnixMillis {
    Utc::now().timestamp_millis()
}

/// Sends as asked; conversation creations: one a second, a burst of two.
fn limits(send_per_sec: u32, send_burst: u32) -> RateLimits {
    RateLimits {
        send_per_sec,
        send_burst,
        create_per_min: 60,
        create_burst: 2,
        typing_relay_interval: Duration::from_secs(1),
    }
}

fn user(name: &str) -> UserId {
    UserId::parse("user", name).expect("valid test user id")
}

fn typist(conversation: ConversationId, name: &str) -> Typist {
    Typist {
        conversation_id: conversation,
        user_id: user(name),
        user_name: name.to_uppercase(),
    }
}

mod contract {
    use super::*;

    pub async fn a_user_is_online_until_the_last_device_leaves(e: Ephemeral) {
        let alice = user("alice");
        assert!(
            e.presence.socket_connected(&alice, "s1").await.unwrap(),
            "first device brings the user online"
        );
        assert!(!e.presence.socket_connected(&alice, "s2").await.unwrap());
        assert!(!e.presence.socket_connected(&alice, "s3").await.unwrap());
        let now = Utc::now();
        assert_eq!(
            e.presence
                .socket_disconnected(&alice, "s1", now)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            e.presence
                .socket_disconnected(&alice, "s2", now)
                .await
                .unwrap(),
            None
        );
        let p = e
            .presence
            .presence(std::slice::from_ref(&alice))
            .await
            .unwrap();
        assert!(p[&alice].online);
        assert_eq!(p[&alice].last_seen, None, "no last-seen while online");
        assert_eq!(
            e.presence
                .socket_disconnected(&alice, "s3", now)
                .await
                .unwrap(),
            Some(now)
        );
        let p = e
            .presence
            .presence(std::slice::from_ref(&alice))
            .await
            .unwrap();
        assert!(!p[&alice].online);
        assert_eq!(p[&alice].last_seen, Some(now));
        assert_eq!(
            e.presence
                .socket_disconnected(&alice, "s3", now)
                .await
                .unwrap(),
            None,
            "a repeated disconnect is not a second offline"
        );
    }

    pub async fn concurrent_last_disconnects_yield_exactly_one_offline(e: Ephemeral) {
        let bob = user("bob");
        for i in 0..10 {
            e.presence
                .socket_connected(&bob, &format!("s{i}"))
                .await
                .unwrap();
        }
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let (e, bob) = (e.clone(), bob.clone());
                tokio::spawn(async move {
                    e.presence
                        .socket_disconnected(&bob, &format!("s{i}"), Utc::now())
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut offlines = 0;
        for h in handles {
            offlines += usize::from(h.await.unwrap().is_some());
        }
        assert_eq!(offlines, 1);
    }

    pub async fn typing_is_relayed_at_most_once_per_interval(e: Ephemeral) {
        let c = ConversationId::new_random();
        let t = typist(c, "alice");
        let (ttl, interval) = (Duration::from_secs(5), Duration::from_secs(1));
        let t0 = now();
        assert!(e.typing.start_typing(&t, t0, ttl, interval).await.unwrap());
        assert!(
            !e.typing
                .start_typing(&t, t0 + 400, ttl, interval)
                .await
                .unwrap(),
            "within the interval: dropped"
        );
        assert!(
            e.typing
                .start_typing(&t, t0 + 1100, ttl, interval)
                .await
                .unwrap(),
            "after the interval: relayed"
        );
        assert!(
            !e.typing
                .start_typing(&t, t0 + 1500, ttl, interval)
                .await
                .unwrap(),
            "the interval restarts at the relay"
        );
    }

    pub async fn typing_expires_once_after_the_ttl(e: Ephemeral) {
        let c = ConversationId::new_random();
        let t = typist(c, "alice");
        let t0 = now();
        e.typing
            .start_typing(&t, t0, Duration::from_secs(5), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(
            e.typing.typing_in(c, t0 + 10).await.unwrap(),
            vec![t.clone()]
        );
        assert!(
            !e.typing
                .take_expired_typing(t0 + 4900)
                .await
                .unwrap()
                .contains(&t),
            "not yet expired"
        );
        assert_eq!(
            e.typing.typing_in(c, t0 + 5100).await.unwrap(),
            vec![],
            "an expired state is not reported as typing"
        );
        assert!(
            e.typing
                .take_expired_typing(t0 + 5100)
                .await
                .unwrap()
                .contains(&t)
        );
        assert!(
            !e.typing
                .take_expired_typing(t0 + 5200)
                .await
                .unwrap()
                .contains(&t),
            "announced once"
        );
        assert!(
            e.typing
                .typing_conversations_of(&t.user_id)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn a_repeat_extends_typing(e: Ephemeral) {
        let c = ConversationId::new_random();
        let t = typist(c, "alice");
        let t0 = now();
        let (ttl, interval) = (Duration::from_secs(5), Duration::from_secs(1));
        e.typing.start_typing(&t, t0, ttl, interval).await.unwrap();
        e.typing
            .start_typing(&t, t0 + 4000, ttl, interval)
            .await
            .unwrap();
        assert!(
            !e.typing
                .take_expired_typing(t0 + 8000)
                .await
                .unwrap()
                .contains(&t)
        );
        assert!(
            e.typing
                .take_expired_typing(t0 + 9100)
                .await
                .unwrap()
                .contains(&t)
        );
    }

    pub async fn stopping_typing_reports_whether_there_was_a_state(e: Ephemeral) {
        let c = ConversationId::new_random();
        let t = typist(c, "alice");
        e.typing
            .start_typing(&t, now(), Duration::from_secs(5), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(
            e.typing.typing_conversations_of(&t.user_id).await.unwrap(),
            vec![c]
        );
        assert!(e.typing.stop_typing(c, &t.user_id).await.unwrap());
        assert!(
            !e.typing.stop_typing(c, &t.user_id).await.unwrap(),
            "a second stop announces nothing"
        );
        assert!(
            e.typing
                .typing_conversations_of(&t.user_id)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn concurrent_sweeps_announce_each_expiry_once(e: Ephemeral) {
        let c = ConversationId::new_random();
        let t0 = now();
        let typists: Vec<_> = (0..20).map(|i| typist(c, &format!("user{i}"))).collect();
        for t in &typists {
            e.typing
                .start_typing(t, t0, Duration::from_secs(1), Duration::from_secs(1))
                .await
                .unwrap();
        }
        let sweeps: Vec<_> = (0..4)
            .map(|_| {
                let e = e.clone();
                tokio::spawn(async move { e.typing.take_expired_typing(t0 + 2000).await.unwrap() })
            })
            .collect();
        let mut announced = Vec::new();
        for s in sweeps {
            announced.extend(
                s.await
                    .unwrap()
                    .into_iter()
                    .filter(|t| t.conversation_id == c),
            );
        }
        assert_eq!(
            announced.len(),
            typists.len(),
            "each expired state is claimed by exactly one sweep"
        );
    }

    pub async fn unread_counters_count_only_once_present(e: Ephemeral) {
        let (alice, bob) = (user("alice"), user("bob"));
        let (c1, c2) = (ConversationId::new_random(), ConversationId::new_random());
        assert_eq!(
            e.unread.unread(&alice).await.unwrap(),
            None,
            "missing until rebuilt"
        );
        let missing = e
            .unread
            .message_committed(c1, &user("sender"), std::slice::from_ref(&alice))
            .await
            .unwrap()
            .unread;
        assert_eq!(
            missing,
            vec![(alice.clone(), None)],
            "a missing counter asks for a rebuild"
        );
        e.unread
            .replace_unread(&alice, &HashMap::from([(c1, 2)]))
            .await
            .unwrap();
        e.unread
            .replace_unread(&bob, &HashMap::new())
            .await
            .unwrap();
        let updated = e
            .unread
            .message_committed(c2, &user("sender"), &[alice.clone(), bob.clone()])
            .await
            .unwrap()
            .unread;
        assert_eq!(
            updated,
            vec![(alice.clone(), Some((1, 3))), (bob.clone(), Some((1, 1)))]
        );
        assert_eq!(
            e.unread.unread(&alice).await.unwrap(),
            Some(HashMap::from([(c1, 2), (c2, 1)]))
        );
    }

    pub async fn a_committed_message_ends_typing_and_counts_unread_at_once(e: Ephemeral) {
        let c = ConversationId::new_random();
        let (alice, bob, cat) = (user("alice"), user("bob"), user("cat"));
        e.typing
            .start_typing(
                &typist(c, "alice"),
                now(),
                Duration::from_secs(5),
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        e.unread
            .replace_unread(&bob, &HashMap::from([(c, 1)]))
            .await
            .unwrap();
        let effects = e
            .unread
            .message_committed(c, &alice, &[bob.clone(), cat.clone()])
            .await
            .unwrap();
        assert!(effects.sender_was_typing);
        assert_eq!(
            effects.unread,
            vec![(bob.clone(), Some((2, 2))), (cat.clone(), None)]
        );
        assert!(
            e.typing.typing_in(c, now()).await.unwrap().is_empty(),
            "the sender's typing ended"
        );
        let again = e
            .unread
            .message_committed(c, &alice, std::slice::from_ref(&bob))
            .await
            .unwrap();
        assert!(!again.sender_was_typing, "a typing state ends once");
        assert_eq!(again.unread, vec![(bob, Some((3, 3)))]);
    }

    pub async fn a_conversation_count_is_set_on_present_counters_only(e: Ephemeral) {
        let (c, other) = (ConversationId::new_random(), ConversationId::new_random());
        let (alice, bob, cat) = (user("alice"), user("bob"), user("cat"));
        e.unread
            .replace_unread(&alice, &HashMap::from([(c, 3), (other, 2)]))
            .await
            .unwrap();
        e.unread
            .replace_unread(&bob, &HashMap::from([(c, 1)]))
            .await
            .unwrap();
        let changes = e
            .unread
            .set_conversation_unread(c, &[(alice.clone(), 2), (bob.clone(), 0), (cat.clone(), 4)])
            .await
            .unwrap();
        assert_eq!(
            changes,
            vec![
                (alice.clone(), Some((2, 4))),
                (bob.clone(), Some((0, 0))),
                (cat.clone(), None)
            ]
        );
        assert_eq!(
            e.unread.unread(&alice).await.unwrap(),
            Some(HashMap::from([(c, 2), (other, 2)])),
            "other conversations kept"
        );
        assert_eq!(
            e.unread.unread(&bob).await.unwrap(),
            Some(HashMap::new()),
            "present with nothing unread, not missing"
        );
        assert_eq!(
            e.unread.unread(&cat).await.unwrap(),
            None,
            "missing counters are not created"
        );
        assert!(
            e.unread
                .set_conversation_unread(c, &[])
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// Concurrent sends (which Redis takes as one batch) spend a bucket
    /// token by token, whoever's they are.
    pub async fn concurrent_sends_spend_each_token_once(e: Ephemeral) {
        let (alice, bob) = (user("alice"), user("bob"));
        let calls: Vec<_> = (0..12)
            .map(|i| {
                let (e, who) = (
                    e.clone(),
                    if i % 3 == 0 {
                        bob.clone()
                    } else {
                        alice.clone()
                    },
                );
                tokio::spawn(async move {
                    (who.clone(), e.quotas.try_acquire_send(&who).await.unwrap())
                })
            })
            .collect();
        let mut granted: HashMap<UserId, usize> = HashMap::new();
        for c in calls {
            let (who, ok) = c.await.unwrap();
            *granted.entry(who).or_default() += usize::from(ok);
        }
        assert_eq!(granted[&alice], 3, "alice's burst of 3, out of 8 attempts");
        assert_eq!(granted[&bob], 3, "bob's burst of 3, out of 4 attempts");
    }

    /// Concurrent commits (one batch in Redis) count every message once, in
    /// some order, and each caller gets its own conversation's counts.
    pub async fn concurrent_commits_count_every_message(e: Ephemeral) {
        let (bob, carol) = (user("bob"), user("carol"));
        let (c1, c2) = (ConversationId::new_random(), ConversationId::new_random());
        e.unread
            .replace_unread(&bob, &HashMap::new())
            .await
            .unwrap();
        e.unread
            .replace_unread(&carol, &HashMap::new())
            .await
            .unwrap();
        let calls: Vec<_> = (0..10)
            .map(|i| {
                let e = e.clone();
                let (c, recipients) = if i % 2 == 0 {
                    (c1, vec![bob.clone()])
                } else {
                    (c2, vec![bob.clone(), carol.clone()])
                };
                tokio::spawn(async move {
                    let sender = user(&format!("sender{i}"));
                    (
                        c,
                        e.unread
                            .message_committed(c, &sender, &recipients)
                            .await
                            .unwrap(),
                    )
                })
            })
            .collect();
        let mut bob_in = HashMap::from([(c1, Vec::new()), (c2, Vec::new())]);
        let mut carol_counts = Vec::new();
        for call in calls {
            let (c, effects) = call.await.unwrap();
            for (who, counts) in effects.unread {
                let (count, _total) = counts.expect("the counters exist");
                if who == bob {
                    bob_in.get_mut(&c).unwrap().push(count);
                } else {
                    assert_eq!(
                        (who.clone(), c),
                        (carol.clone(), c2),
                        "only carol besides bob"
                    );
                    carol_counts.push(count);
                }
            }
        }
        for counts in bob_in.values_mut().chain([&mut carol_counts]) {
            counts.sort();
            assert_eq!(*counts, vec![1, 2, 3, 4, 5], "every message counted once");
        }
        let bob_now = e.unread.unread(&bob).await.unwrap().unwrap();
        assert_eq!((bob_now[&c1], bob_now[&c2]), (5, 5));
    }

    pub async fn creations_beyond_their_burst_are_refused(e: Ephemeral) {
        let (alice, bob) = (user("alice"), user("bob"));
        assert!(e.quotas.try_acquire_create(&alice).await.unwrap());
        assert!(e.quotas.try_acquire_create(&alice).await.unwrap());
        assert!(
            !e.quotas.try_acquire_create(&alice).await.unwrap(),
            "a burst of two creations"
        );
        assert!(
            e.quotas.try_acquire_send(&alice).await.unwrap(),
            "sends have a bucket of their own"
        );
        assert!(
            e.quotas.try_acquire_create(&bob).await.unwrap(),
            "buckets are per user"
        );
    }

    pub async fn live_sockets_are_counted_per_user(e: Ephemeral) {
        let (alice, bob) = (user("alice"), user("bob"));
        assert_eq!(e.presence.socket_count(&alice).await.unwrap(), 0);
        e.presence.socket_connected(&alice, "a1").await.unwrap();
        e.presence.socket_connected(&alice, "a2").await.unwrap();
        e.presence.socket_connected(&bob, "b1").await.unwrap();
        assert_eq!(e.presence.socket_count(&alice).await.unwrap(), 2);
        e.presence
            .socket_disconnected(&alice, "a1", Utc::now())
            .await
            .unwrap();
        assert_eq!(e.presence.socket_count(&alice).await.unwrap(), 1);
    }

    pub async fn concurrent_admissions_never_pass_the_cap(e: Ephemeral) {
        let alice = user("alice");
        let admits = (0..20).map(|i| {
            let (e, alice) = (e.clone(), alice.clone());
            async move {
                e.presence
                    .admit_socket(&alice, &format!("s{i}"), 5)
                    .await
                    .unwrap()
            }
        });
        let outcomes = futures_util::future::join_all(admits).await;
        let count = |want: SocketAdmission| outcomes.iter().filter(|o| **o == want).count();
        assert_eq!(count(SocketAdmission::First), 1, "{outcomes:?}");
        assert_eq!(count(SocketAdmission::Another), 4, "{outcomes:?}");
        assert_eq!(count(SocketAdmission::OverCap), 15, "{outcomes:?}");
        assert_eq!(e.presence.socket_count(&alice).await.unwrap(), 5);
        // A socket already admitted is admitted again; a freed slot is reused.
        let admitted: Vec<usize> = (0..20)
            .filter(|i| outcomes[*i] != SocketAdmission::OverCap)
            .collect();
        let again = format!("s{}", admitted[0]);
        assert_eq!(
            e.presence.admit_socket(&alice, &again, 5).await.unwrap(),
            SocketAdmission::Another
        );
        e.presence
            .socket_disconnected(&alice, &again, Utc::now())
            .await
            .unwrap();
        assert_eq!(
            e.presence.admit_socket(&alice, "late", 5).await.unwrap(),
            SocketAdmission::Another
        );
        assert_eq!(
            e.presence.admit_socket(&alice, "later", 5).await.unwrap(),
            SocketAdmission::OverCap
        );
    }

    pub async fn present_counters_are_read_for_many_users_at_once(e: Ephemeral) {
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let c = ConversationId::new_random();
        e.unread
            .replace_unread(&alice, &HashMap::from([(c, 3)]))
            .await
            .unwrap();
        e.unread
            .replace_unread(&bob, &HashMap::new())
            .await
            .unwrap();
        let present = e
            .unread
            .unread_of(&[alice.clone(), bob.clone(), carol.clone()])
            .await
            .unwrap();
        assert_eq!(present.get(&alice), Some(&HashMap::from([(c, 3)])));
        assert_eq!(present.get(&bob), Some(&HashMap::new()), "present and zero");
        assert!(!present.contains_key(&carol), "missing");
        assert!(e.unread.unread_of(&[]).await.unwrap().is_empty());
    }

    pub async fn an_unannounced_message_is_taken_once(e: Ephemeral) {
        let (kept, never) = (MessageId::new_v7(), MessageId::new_v7());
        e.unannounced
            .remember_unannounced(kept, Duration::from_secs(60))
            .await
            .unwrap();
        let takes = futures_util::future::join_all((0..8).map(|_| {
            let e = e.clone();
            async move { e.unannounced.take_unannounced(kept).await.unwrap() }
        }))
        .await;
        assert_eq!(takes.iter().filter(|t| **t).count(), 1, "{takes:?}");
        assert!(!e.unannounced.take_unannounced(never).await.unwrap());
    }

    pub async fn sends_beyond_the_burst_are_refused(e: Ephemeral) {
        let alice = user("alice");
        for i in 0..3 {
            assert!(
                e.quotas.try_acquire_send(&alice).await.unwrap(),
                "send {i} is within the burst"
            );
        }
        assert!(!e.quotas.try_acquire_send(&alice).await.unwrap());
        assert!(
            e.quotas.try_acquire_send(&user("bob")).await.unwrap(),
            "buckets are per user"
        );
    }
}

/// Calls `$cases!(case, ...)` with every case of `contract`: the one list of
/// cases each implementation runs.
macro_rules! every_case {
    ($cases:ident) => {
        $cases!(
            a_user_is_online_until_the_last_device_leaves,
            concurrent_last_disconnects_yield_exactly_one_offline,
            typing_is_relayed_at_most_once_per_interval,
            typing_expires_once_after_the_ttl,
            a_repeat_extends_typing,
            stopping_typing_reports_whether_there_was_a_state,
            concurrent_sweeps_announce_each_expiry_once,
            a_committed_message_ends_typing_and_counts_unread_at_once,
            unread_counters_count_only_once_present,
            a_conversation_count_is_set_on_present_counters_only,
            sends_beyond_the_burst_are_refused,
            concurrent_sends_spend_each_token_once,
            concurrent_commits_count_every_message,
            creations_beyond_their_burst_are_refused,
            live_sockets_are_counted_per_user,
            concurrent_admissions_never_pass_the_cap,
            an_unannounced_message_is_taken_once,
            present_counters_are_read_for_many_users_at_once,
        );
    };
}

macro_rules! memory_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            contract::$case(Ephemeral::observed(Arc::new(MemoryEphemeral::new(&limits(1, 3))), "memory")).await;
        }
    )*};
}

macro_rules! redis_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            contract::$case(Ephemeral::observed(Arc::new(fresh_node().await), "redis")).await;
        }
    )*};
}

mod memory {
    use super::*;

    every_case!(memory_cases);
}

/// The Redis cases, for the Redis deployment named by `$url_var`.
macro_rules! redis_suite {
    ($module:ident, $url_var:literal) => {
        mod $module {
            use super::*;

            use chrono::DateTime;
            use fred::prelude::{ClientLike, LuaInterface};
            use parloir::ephemeral::{
                PresenceState as _, Quotas as _, RedisEphemeral, RedisSettings, TypingState as _,
                UnreadCounters as _,
            };
            use secrecy::SecretString;
            use tokio::time::Instant;

            fn redis_url() -> String {
                std::env::var($url_var)
                    .unwrap_or_else(|_| panic!("set {} (scripts/test does)", $url_var))
            }

            /// A plain client of the same deployment, for what a test does to Redis
            /// behind the nodes' backs.
            async fn admin() -> fred::prelude::Client {
                let client = fred::prelude::Builder::from_config(
                    fred::prelude::Config::from_url(&redis_url()).expect("a Redis URL"),
                )
                .build()
                .expect("a client");
                client.init().await.expect("the test Redis is reachable");
                client
            }

            fn settings(url: String) -> RedisSettings {
                RedisSettings {
                    url: SecretString::from(url),
                    pool_size: 2,
                    command_timeout: Duration::from_secs(2),
                    connect_timeout: Duration::from_secs(2),
                }
            }

            /// A key prefix no other test (or earlier run) uses.
            fn fresh_prefix() -> String {
                format!("parloir-test:{}:", uuid::Uuid::new_v4())
            }

            /// One node of a cluster sharing `prefix`, with the contract's limits.
            async fn node(prefix: &str, node_id: &str) -> RedisEphemeral {
                RedisEphemeral::connect(
                    settings(redis_url()),
                    prefix.to_owned(),
                    node_id.to_owned(),
                    &limits(1, 3),
                    &Supervisor::default(),
                )
                .await
                .expect("the test Redis is reachable")
            }

            async fn fresh_node() -> RedisEphemeral {
                node(&fresh_prefix(), "node-a").await
            }

            /// Makes a node's heartbeat lapse now, as Redis does when its TTL runs
            /// out (the heartbeat key is gone), without waiting on the Redis clock.
            async fn lapse_heartbeat(node: &RedisEphemeral, node_id: &str) {
                use fred::prelude::KeysInterface;
                let key = format!("{}presence:node:{node_id}", node.key_prefix());
                let admin = admin().await;
                let deleted: i64 = admin.del(&key).await.expect("DEL runs");
                assert_eq!(deleted, 1, "the heartbeat key {key} existed");
                admin.quit().await.expect("quit");
            }

            every_case!(redis_cases);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_dead_nodes_users_go_offline_once_unless_connected_elsewhere() {
                let prefix = fresh_prefix();
                let (a, b) = (node(&prefix, "node-a").await, node(&prefix, "node-b").await);
                let (alice, bob) = (user("alice"), user("bob"));
                let t0 = now();
                a.heartbeat(t0, Duration::from_secs(1)).await.unwrap();
                assert!(a.socket_connected(&alice, "a-alice").await.unwrap());
                assert!(a.socket_connected(&bob, "a-bob").await.unwrap());
                assert!(!b.socket_connected(&bob, "b-bob").await.unwrap());
                let later = t0 + 5000;
                b.heartbeat(later, Duration::from_secs(30)).await.unwrap();
                assert_eq!(
                    b.sweep_dead_nodes(later).await.unwrap().users,
                    vec![],
                    "liveness is the heartbeat's TTL in Redis, not the caller's clock"
                );

                lapse_heartbeat(&a, "node-a").await;
                let swept = b.sweep_dead_nodes(later).await.unwrap();
                let last_seen = DateTime::from_timestamp_millis(later).unwrap();
                assert_eq!(swept.users, vec![(alice.clone(), last_seen)]);
                assert_eq!(
                    swept.nodes,
                    vec!["node-a".to_owned()],
                    "the dead node is named"
                );
                let p = b.presence(&[alice.clone(), bob.clone()]).await.unwrap();
                assert!(!p[&alice].online);
                assert_eq!(p[&alice].last_seen, Some(last_seen));
                assert!(p[&bob].online, "bob still has a socket on node B");
                assert_eq!(
                    b.sweep_dead_nodes(later).await.unwrap(),
                    Default::default(),
                    "a dead node is swept once"
                );
                let gone = Utc::now();
                assert_eq!(
                    b.socket_disconnected(&bob, "b-bob", gone).await.unwrap(),
                    Some(gone),
                    "bob's socket on the dead node no longer counts"
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_sweepers_each_claim_a_dead_nodes_user_once() {
                let prefix = fresh_prefix();
                let dead = node(&prefix, "node-dead").await;
                dead.heartbeat(now(), Duration::from_secs(30))
                    .await
                    .unwrap();
                let users: Vec<_> = (0..20).map(|i| user(&format!("user{i}"))).collect();
                for (i, u) in users.iter().enumerate() {
                    dead.socket_connected(u, &format!("s{i}")).await.unwrap();
                }
                let mut sweepers = Vec::new();
                for i in 0..4 {
                    sweepers.push(Arc::new(node(&prefix, &format!("node-{i}")).await));
                }
                lapse_heartbeat(&dead, "node-dead").await;

                let t = now();
                let sweeps: Vec<_> = sweepers
                    .into_iter()
                    .map(|s| tokio::spawn(async move { s.sweep_dead_nodes(t).await.unwrap() }))
                    .collect();
                let mut claimed = Vec::new();
                for s in sweeps {
                    claimed.extend(s.await.unwrap().users.into_iter().map(|(u, _)| u));
                }
                claimed.sort();
                let mut expected = users.clone();
                expected.sort();
                assert_eq!(claimed, expected, "every user is claimed exactly once");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn expired_typing_is_claimed_once_across_nodes() {
                let prefix = fresh_prefix();
                let c = ConversationId::new_random();
                let t0 = now();
                let typists: Vec<_> = (0..20).map(|i| typist(c, &format!("user{i}"))).collect();
                let origin = node(&prefix, "node-origin").await;
                for t in &typists {
                    origin
                        .start_typing(t, t0, Duration::from_secs(1), Duration::from_secs(1))
                        .await
                        .unwrap();
                }
                let mut sweeps = Vec::new();
                for i in 0..4 {
                    let sweeper = node(&prefix, &format!("node-{i}")).await;
                    sweeps.push(tokio::spawn(async move {
                        sweeper.take_expired_typing(t0 + 2000).await.unwrap()
                    }));
                }
                let mut announced = Vec::new();
                for s in sweeps {
                    announced.extend(s.await.unwrap());
                }
                announced.sort_by(|x, y| x.user_id.cmp(&y.user_id));
                let mut expected = typists.clone();
                expected.sort_by(|x, y| x.user_id.cmp(&y.user_id));
                assert_eq!(announced, expected, "names included, each exactly once");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_node_learns_when_it_must_record_its_sockets_again() {
                let prefix = fresh_prefix();
                let a = node(&prefix, "node-a").await;
                let ttl = Duration::from_secs(30);
                assert!(
                    a.heartbeat(now(), ttl).await.unwrap(),
                    "the first heartbeat registers"
                );
                assert!(!a.heartbeat(now(), ttl).await.unwrap());
                let alice = user("alice");
                a.socket_connected(&alice, "s1").await.unwrap();
                // A process that restarts under the same node id forgets what
                // the previous one recorded, and registers afresh.
                let again = node(&prefix, "node-a").await;
                let gone = again.forget_own_sockets(now()).await.unwrap();
                assert_eq!(
                    gone.into_iter().map(|(u, _)| u).collect::<Vec<_>>(),
                    vec![alice.clone()]
                );
                assert!(
                    !again.presence(std::slice::from_ref(&alice)).await.unwrap()[&alice].online
                );
                assert!(
                    again.heartbeat(now(), ttl).await.unwrap(),
                    "registered afresh"
                );
                assert_eq!(
                    again.forget_own_sockets(now()).await.unwrap(),
                    vec![],
                    "nothing left"
                );
            }

            /// Keys nobody removes expire: counters are rebuilt when
            /// missing, a last-seen time is kept 90 days.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn state_without_an_owner_expires() {
                use fred::prelude::KeysInterface;
                let e = fresh_node().await;
                let alice = user("alice");
                e.replace_unread(&alice, &HashMap::new()).await.unwrap();
                e.socket_connected(&alice, "s1").await.unwrap();
                e.socket_disconnected(&alice, "s1", Utc::now())
                    .await
                    .unwrap();
                let admin = admin().await;
                for (name, at_least_days) in [("unread", 6), ("presence:lastseen", 89)] {
                    let key = format!("{}{name}:{alice}", e.key_prefix());
                    let ttl: i64 = admin.pttl(&key).await.expect("PTTL runs");
                    assert!(
                        ttl > at_least_days * 24 * 3600 * 1000,
                        "{key} expires (PTTL {ttl})"
                    );
                }
                admin.quit().await.expect("quit");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_send_bucket_is_shared_by_all_nodes() {
                let prefix = fresh_prefix();
                let (a, b) = (node(&prefix, "node-a").await, node(&prefix, "node-b").await);
                let alice = user("alice");
                assert!(a.try_acquire_send(&alice).await.unwrap());
                assert!(b.try_acquire_send(&alice).await.unwrap());
                assert!(a.try_acquire_send(&alice).await.unwrap());
                assert!(
                    !b.try_acquire_send(&alice).await.unwrap(),
                    "the burst of 3 was spent across both nodes"
                );
                assert!(!a.try_acquire_send(&alice).await.unwrap());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn scripts_still_run_after_redis_forgets_them() {
                let e = fresh_node().await;
                let alice = user("alice");
                assert!(e.socket_connected(&alice, "s1").await.unwrap());
                // What a Redis restart or failover does to the script cache. Other
                // tests on this server fall back the same way.
                let admin = admin().await;
                if admin.is_clustered() {
                    admin.script_flush_cluster(false).await.unwrap();
                } else {
                    admin.script_flush(false).await.unwrap();
                }
                admin.quit().await.unwrap();
                assert!(!e.socket_connected(&alice, "s2").await.unwrap());
                assert_eq!(
                    e.socket_disconnected(&alice, "s1", Utc::now())
                        .await
                        .unwrap(),
                    None
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn connecting_to_an_unreachable_redis_fails_within_the_deadline() {
                let started = Instant::now();
                let mut unreachable = settings("redis://127.0.0.1:1".to_owned());
                unreachable.connect_timeout = Duration::from_millis(500);
                let result = RedisEphemeral::connect(
                    unreachable,
                    fresh_prefix(),
                    "node-a".to_owned(),
                    &limits(1, 3),
                    &Supervisor::default(),
                )
                .await;
                assert!(result.is_err());
                assert!(started.elapsed() < Duration::from_secs(2));
            }
        }
    };
}

redis_suite!(redis, "PARLOIR_TEST_REDIS_URL");
redis_suite!(redis_cluster, "PARLOIR_TEST_REDIS_CLUSTER_URL");
