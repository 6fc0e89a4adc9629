//! Entry point: parse the command line, set up logging, run the subcommand.

use clap::Parser;
use sorcha_peer::cli::{Cli, Command, LogFormat, commands};
use sorcha_peer::config::Config;
use sorcha_peer::telemetry::{self, Telemetry};

// jemalloc, not the system allocator: documents come and go in buffers of up to 16 MiB, and
// glibc's malloc kept such freed buffers in its arenas (a hub under the `bigdocs` workload
// peaked at 980 MiB of RSS with glibc, 565 MiB with jemalloc, whose decay returns them).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn init_telemetry(format: LogFormat, node_id: &str) -> Telemetry {
    let format = match format {
        LogFormat::Text => telemetry::LogFormat::Text,
        LogFormat::Json => telemetry::LogFormat::Json,
    };
    telemetry::init(format, node_id)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn serve(args: sorcha_peer::cli::ServeArgs, log_format: LogFormat) -> anyhow::Result<i32> {
    let config = Config::load(args.config.as_deref(), args.overrides())?;
    let node_id = config.node_id_or_hostname(&sorcha_peer::role::system_hostname());
    let telemetry = init_telemetry(log_format, &node_id);
    let listener = sorcha_peer::serve::bind(config.listen, config.limits.listen_backlog)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let node = sorcha_peer::app::start(config, listener).await?;
    telemetry.export_metrics(&node.state.metrics);
    let scheme = if node.state.config.tls.enabled() {
        "https"
    } else {
        "http"
    };
    eprintln!("sorcha-peer listening on {scheme}://{}", node.addr);
    let token = node.shutdown_token();
    let asked = tokio::select! {
        () = shutdown_signal() => true,
        () = token.cancelled() => false,
    };
    if asked {
        tracing::info!("shutdown requested");
        // A hub first sends its peers elsewhere; a second signal cuts that short.
        tokio::select! {
            () = node.drain() => {}
            () = shutdown_signal() => tracing::warn!("second signal: stopping without finishing the drain"),
            () = token.cancelled() => {}
        }
    }
    let stopped = node.stop().await;
    telemetry.shutdown();
    stopped?;
    Ok(0)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // Client commands log to stderr only; they have nothing to export.
        init_telemetry(cli.log_format, "cli");
    }
    let result = match cli.command {
        Command::Serve(args) => serve(*args, cli.log_format).await,
        Command::Publish(args) => commands::publish(args).await,
        Command::Deprecate(args) => commands::deprecate(args).await,
        Command::Blueprints { command } => commands::blueprints(command).await,
        Command::Status(args) => commands::status(args).await,
        Command::Fleet(args) => sorcha_peer::cli::fleet::list(args).await,
        Command::Watch(args) => commands::watch(args).await,
        Command::Verify(args) => commands::verify(args).await,
        Command::Keygen(args) => sorcha_peer::cli::signing::keygen(&args),
        Command::Checkpoint(args) => sorcha_peer::cli::signing::checkpoint(args).await,
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
