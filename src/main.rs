//! The `parloir` command: `serve` (the default), `migrate`, `retention`, `token`.
//! Parses the command line, loads config, starts telemetry, calls the library.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use parloir::auth::{self, Role};
use parloir::config::RawConfig;
use parloir::domain::{RetentionCounts, RetentionCutoffs, UserId, format_time};
use parloir::service::{RetentionJob, RunOutcome};
use parloir::supervisor::Supervisor;
use parloir::telemetry::{self, LogFormat};
use parloir::{AppBuilder, Config};

/// mimalloc instead of glibc malloc: under `pairs` load glibc's allocator was
/// ~13% of the node's CPU, and it keeps more RSS per idle socket (README,
/// "Performance", has the before/after).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a configuration error (EX_USAGE), before anything binds.
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "parloir",
    version,
    about = "A realtime messaging node (Socket.IO v4 + HTTP API)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: RawConfig,
    /// Log format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Socket.IO and the HTTP API (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Run the retention job once, as a node does every
    /// PARLOIR_RETENTION_INTERVAL_SECS (archive idle conversations, purge and
    /// delete old messages), and print what it changed. Skips if a node runs
    /// it at this moment.
    Retention {
        /// Print what a run would change now, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a token for a dev node (HS256 with JWT_SECRET or the generated dev secret).
    Token {
        #[arg(long)]
        user: String,
        #[arg(long, value_parser = ["client", "salon"])]
        role: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 24)]
        ttl_hours: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.config.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("parloir: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parloir: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    let _telemetry = if matches!(command, Command::Token { .. }) {
        None
    } else {
        // The OTLP exporter spawns onto the runtime, so it starts inside it.
        match runtime.block_on(async { telemetry::init(cli.log_format, &config.otlp) }) {
            Ok(guard) => Some(guard),
            Err(e) => {
                eprintln!("parloir: cannot start telemetry: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    };
    match runtime.block_on(run(command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parloir: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let app = AppBuilder::new(config).build().await?;
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Migrate => {
            parloir::app::open_store(&config, true, &Supervisor::default()).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Retention { dry_run } => retention(&config, dry_run).await,
        Command::Token {
            user,
            role,
            name,
            email,
            ttl_hours,
        } => {
            let secret = parloir::app::signing_secret(&config).await?.context(
                "this node verifies RS256/ES256 tokens with a public key; dev tokens can only be minted for HS256",
            )?;
            let user = UserId::parse("--user", &user)?;
            let role = match role.as_deref() {
                Some("salon") => Some(Role::Salon),
                Some(_) => Some(Role::Client),
                None => None,
            };
            let token = auth::mint_hs256(
                &secret,
                &user,
                role,
                name.as_deref(),
                email.as_deref(),
                chrono::Duration::hours(ttl_hours),
            )?;
            println!("{token}");
            Ok(())
        }
    }
}

/// `parloir retention [--dry-run]`: one run now (or its counts), printed.
async fn retention(config: &Config, dry_run: bool) -> anyhow::Result<()> {
    let store =
        parloir::app::open_store(config, config.migrate_on_start, &Supervisor::default()).await?;
    let job = RetentionJob::new(store, config.retention.policy);
    let now = parloir::domain::now_millis();
    let cutoffs = job.policy().cutoffs(now);
    let at = format_time(&now);
    if dry_run {
        let counts = job
            .dry_run(now)
            .await
            .context("counting what retention would change")?;
        println!("retention at {at}, dry run: nothing was changed");
        print_counts(&cutoffs, &counts);
        return Ok(());
    }
    // Ctrl-C or SIGTERM stops the run between two batches.
    let stop = tokio_util::sync::CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        on_signal.cancel();
    });
    let run = job.run_once(now, &stop).await;
    match run.outcome {
        RunOutcome::Skipped => {
            println!(
                "retention at {at}: skipped, another node is running it (nothing was changed)"
            );
            Ok(())
        }
        RunOutcome::Completed => {
            println!("retention at {at}: completed");
            print_counts(&cutoffs, &run.changed);
            Ok(())
        }
        RunOutcome::Stopped => {
            println!("retention at {at}: stopped before the end (the next run resumes)");
            print_counts(&cutoffs, &run.changed);
            Ok(())
        }
        RunOutcome::Failed(e) => {
            println!("retention at {at}: failed (the next run resumes)");
            print_counts(&cutoffs, &run.changed);
            Err(e).context("retention run")
        }
    }
}

/// One line per action: the rows, and the condition they met.
fn print_counts(cutoffs: &RetentionCutoffs, counts: &RetentionCounts) {
    println!(
        "archived {:>8}  conversations idle since before {}",
        counts.archived,
        format_time(&cutoffs.archive_idle_before)
    );
    println!(
        "purged   {:>8}  messages deleted before {}",
        counts.purged,
        format_time(&cutoffs.purge_deleted_before)
    );
    match cutoffs.delete_sent_before {
        Some(before) => println!(
            "deleted  {:>8}  messages sent before {}",
            counts.deleted,
            format_time(&before)
        ),
        None => println!(
            "deleted  {:>8}  (PARLOIR_MESSAGE_RETENTION_DAYS unset: messages are kept)",
            counts.deleted
        ),
    }
    println!(
        "forgot   {:>8}  offline notifications settled before {}",
        counts.forgotten,
        format_time(&cutoffs.forget_notifications_before)
    );
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
