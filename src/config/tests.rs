//! Validation of the settings, flag by flag (the environment is ignored).

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    raw: RawConfig,
}

/// Parses flags only: the environment is ignored (tests run with
/// `DATABASE_URL` and friends exported by scripts/test).
fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    use clap::{CommandFactory, FromArgMatches};
    let mut argv = vec!["parloir"];
    argv.extend_from_slice(args);
    let matches = Cli::command()
        .mut_args(|a| a.env(None::<&'static str>))
        .try_get_matches_from(argv)
        .expect("flags parse");
    Cli::from_arg_matches(&matches)
        .expect("flags map")
        .raw
        .validate()
}

#[test]
fn raw_settings_never_print_their_secrets() {
    use clap::{CommandFactory, FromArgMatches};
    let argv = [
        "parloir",
        "--database-url",
        "postgres://parloir:db-password-1@db/parloir",
        "--redis-url",
        "redis://:redis-password-2@redis:6379",
        "--jwt-secret",
        "jwt-secret-3-jwt-secret-3-jwt-secret-3",
    ];
    let matches = Cli::command()
        .mut_args(|a| a.env(None::<&'static str>))
        .try_get_matches_from(argv)
        .expect("flags parse");
    let raw = Cli::from_arg_matches(&matches).expect("flags map").raw;
    let printed = format!("{raw:?}");
    for secret in ["db-password-1", "redis-password-2", "jwt-secret-3"] {
        assert!(!printed.contains(secret), "{secret} printed: {printed}");
    }
}

#[test]
fn defaults_are_the_embedded_dev_node() {
    let c = parse(&[]).unwrap();
    assert!(c.dev_mode);
    assert!(matches!(c.store, StoreConfig::Sqlite { .. }));
    assert_eq!(c.cors, CorsOrigins::Any);
    assert!(c.limits.allow_http_attachments);
    assert_eq!(c.bind.port(), 3000);
}

#[test]
fn dev_mode_listens_on_loopback_unless_asked_for() {
    let err = parse(&["--bind", "0.0.0.0:3000"]).unwrap_err();
    assert!(err.to_string().starts_with("JWT_SECRET:"), "{err}");
    assert!(err.to_string().contains("PARLOIR_DEV_MODE=true"), "{err}");
    assert!(parse(&["--bind", "[::1]:3000"]).is_ok());
    assert!(parse(&["--bind", "0.0.0.0:3000", "--dev-mode", "true"]).is_ok());
    let secret = "s".repeat(32);
    assert!(parse(&["--bind", "0.0.0.0:3000", "--jwt-secret", &secret]).is_ok());
}

#[test]
fn short_secret_names_the_variable() {
    let err = parse(&["--jwt-secret", "short"]).unwrap_err();
    assert!(err.to_string().starts_with("JWT_SECRET:"), "{err}");
}

#[test]
fn redis_urls_name_one_redis_or_a_cluster() {
    let pg = ["--database-url", "postgres://localhost/parloir"];
    for url in [
        "redis://127.0.0.1:6379",
        "rediss://user:pw@redis.example:6380",
        "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002",
        "rediss-cluster://redis.example:7000",
    ] {
        let c = parse(&[&pg[..], &["--redis-url", url]].concat())
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(matches!(c.shared, SharedState::Redis(_)), "{url}");
    }
    let err = parse(&[&pg[..], &["--redis-url", "http://127.0.0.1"]].concat()).unwrap_err();
    assert!(err.to_string().contains("REDIS_URL"), "{err}");
    let err = parse(
        &[
            &pg[..],
            &[
                "--redis-url",
                "redis://127.0.0.1",
                "--redis-prefix",
                "{app}:",
            ],
        ]
        .concat(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("PARLOIR_REDIS_PREFIX"), "{err}");
}

#[test]
fn redis_with_sqlite_is_refused() {
    let err = parse(&["--redis-url", "redis://127.0.0.1"]).unwrap_err();
    assert!(matches!(err, ConfigError::RedisNeedsPostgres));
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let c = parse(&[
        "--jwt-secret",
        &"s3cr3t".repeat(8),
        "--database-url",
        "postgres://u:hunter2@db/x",
    ])
    .unwrap();
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("s3cr3t") && !debug.contains("hunter2"),
        "{debug}"
    );
    assert!(!c.dev_mode);
    assert_eq!(c.cors, CorsOrigins::List(vec![]));
}

#[test]
fn notification_channels_need_their_companions_and_valid_values() {
    let c = parse(&[]).unwrap();
    assert!(!c.notify.enabled(), "no channel unless configured");

    let hook = ["--webhook-url", "https://hooks.example/parloir?token=t0p"];
    let err = parse(&hook).unwrap_err();
    assert!(
        err.to_string().starts_with("PARLOIR_WEBHOOK_SECRET:"),
        "{err}"
    );
    let err = parse(&[&hook[..], &["--webhook-secret", "short"]].concat()).unwrap_err();
    assert!(err.to_string().contains("at least 16 bytes"), "{err}");
    let err = parse(&[&hook[..], &["--webhook-secret", "whsec_!!"]].concat()).unwrap_err();
    assert!(err.to_string().contains("base64"), "{err}");
    let secret = ["--webhook-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"];
    let c = parse(&[&hook[..], &secret[..]].concat()).unwrap();
    assert!(c.notify.enabled());
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("t0p") && !debug.contains("MfKQ9r8"),
        "{debug}"
    );
    let err = parse(&[&["--webhook-url", "ftp://x"][..], &secret[..]].concat()).unwrap_err();
    assert!(err.to_string().starts_with("PARLOIR_WEBHOOK_URL:"), "{err}");
    let err = parse(&[&hook[..], &secret[..], &["--notify-lease-secs", "5"]].concat()).unwrap_err();
    assert!(
        err.to_string().starts_with("PARLOIR_NOTIFY_LEASE_SECS:"),
        "{err}"
    );

    let smtp = [
        "--smtp-url",
        "smtp://user:hunter2@mail.example:587?tls=required",
    ];
    let err = parse(&smtp).unwrap_err();
    assert!(err.to_string().starts_with("PARLOIR_SMTP_FROM:"), "{err}");
    let err = parse(&[&smtp[..], &["--smtp-from", "not an address"]].concat()).unwrap_err();
    assert!(err.to_string().starts_with("PARLOIR_SMTP_FROM:"), "{err}");
    let c =
        parse(&[&smtp[..], &["--smtp-from", "parloir <noreply@example.com>"]].concat()).unwrap();
    assert!(c.notify.smtp.is_some());
    assert!(!format!("{c:?}").contains("hunter2"));
    let err = parse(&[
        "--smtp-url",
        "http://mail.example",
        "--smtp-from",
        "noreply@example.com",
    ])
    .unwrap_err();
    assert!(err.to_string().starts_with("PARLOIR_SMTP_URL:"), "{err}");
}

#[test]
fn retention_settings_default_and_are_range_checked() {
    use chrono::TimeDelta;
    let c = parse(&[]).unwrap();
    assert_eq!(c.retention, RetentionConfig::default());
    assert_eq!(c.retention.policy.archive_after, TimeDelta::days(90));
    assert_eq!(c.retention.policy.purge_deleted_after, TimeDelta::days(30));
    assert_eq!(c.retention.policy.delete_after, None);
    assert_eq!(c.retention.policy.batch, 500);
    assert_eq!(c.retention.every, Duration::from_secs(3600));

    let c = parse(&[
        "--archive-after-days",
        "7",
        "--purge-deleted-after-days",
        "0",
        "--message-retention-days",
        "365",
        "--retention-interval-secs",
        "60",
        "--retention-batch",
        "10",
    ])
    .unwrap();
    assert_eq!(c.retention.policy.archive_after, TimeDelta::days(7));
    assert_eq!(c.retention.policy.purge_deleted_after, TimeDelta::zero());
    assert_eq!(c.retention.policy.delete_after, Some(TimeDelta::days(365)));
    assert_eq!(c.retention.policy.batch, 10);
    assert_eq!(c.retention.every, Duration::from_secs(60));
    // Empty is unset: messages are kept.
    let c = parse(&["--message-retention-days", ""]).unwrap();
    assert_eq!(c.retention.policy.delete_after, None);

    for (flag, value, var) in [
        ("--archive-after-days", "0", "PARLOIR_ARCHIVE_AFTER_DAYS"),
        (
            "--archive-after-days",
            "36501",
            "PARLOIR_ARCHIVE_AFTER_DAYS",
        ),
        (
            "--purge-deleted-after-days",
            "36501",
            "PARLOIR_PURGE_DELETED_AFTER_DAYS",
        ),
        (
            "--message-retention-days",
            "0",
            "PARLOIR_MESSAGE_RETENTION_DAYS",
        ),
        (
            "--retention-interval-secs",
            "59",
            "PARLOIR_RETENTION_INTERVAL_SECS",
        ),
        (
            "--message-retention-days",
            "a year",
            "PARLOIR_MESSAGE_RETENTION_DAYS",
        ),
        ("--retention-batch", "0", "PARLOIR_RETENTION_BATCH"),
        ("--retention-batch", "10001", "PARLOIR_RETENTION_BATCH"),
    ] {
        let err = parse(&[flag, value]).unwrap_err();
        assert!(err.to_string().starts_with(&format!("{var}:")), "{err}");
    }
}

#[test]
fn out_of_range_limit_is_refused() {
    let err = parse(&["--max-participants", "1"]).unwrap_err();
    assert!(
        err.to_string().starts_with("PARLOIR_MAX_PARTICIPANTS:"),
        "{err}"
    );
}

#[test]
fn a_public_key_needs_an_issuer_and_an_audience_unless_waived() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "not read by validation").expect("a key file");
    let key = key.to_str().expect("a UTF-8 path");
    let error = parse(&["--jwt-public-key-file", key]).unwrap_err();
    assert!(error.to_string().starts_with("JWT_ISSUER:"), "{error}");
    let error = parse(&["--jwt-public-key-file", key, "--jwt-issuer", "https://id"]).unwrap_err();
    assert!(error.to_string().starts_with("JWT_AUDIENCE:"), "{error}");
    let scoped = parse(&[
        "--jwt-public-key-file",
        key,
        "--jwt-issuer",
        "https://id",
        "--jwt-audience",
        "parloir",
    ])
    .expect("both set");
    assert_eq!(scoped.jwt.audience.as_deref(), Some("parloir"));
    parse(&[
        "--jwt-public-key-file",
        key,
        "--jwt-accept-any-audience",
        "true",
    ])
    .expect("waived explicitly");
    // A shared secret is this service's own: nothing else can mint with it.
    parse(&["--jwt-secret", "0123456789abcdef0123456789abcdef"]).expect("HS256 alone");
}

#[test]
fn listening_beyond_loopback_without_trusted_proxies_is_warned_of() {
    let secret = ["--jwt-secret", "0123456789abcdef0123456789abcdef"];
    let on = |bind: &str, extra: &[&str]| {
        let mut args = vec!["--bind", bind];
        args.extend_from_slice(&secret);
        args.extend_from_slice(extra);
        parse(&args).expect("valid settings").warnings()
    };
    assert!(on("127.0.0.1:3000", &[]).is_empty());
    let warned = on("0.0.0.0:3000", &[]);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("PARLOIR_TRUSTED_PROXIES"), "{warned:?}");
    assert!(on("0.0.0.0:3000", &["--trusted-proxies", "10.0.0.0/8"]).is_empty());
}
