//! Entry point: parse the command line, set up logging, run the subcommand.

use clap::Parser;
use sorcha_peer::cli::{Cli, Command, LogFormat, commands};
use sorcha_peer::config::Config;
use tracing_subscriber::EnvFilter;

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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

async fn serve(args: sorcha_peer::cli::ServeArgs) -> anyhow::Result<i32> {
    let config = Config::load(args.config.as_deref(), args.overrides())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let node = sorcha_peer::app::start(config, listener).await?;
    eprintln!("sorcha-peer listening on http://{}", node.addr);
    let token = node.shutdown_token();
    tokio::select! {
        () = shutdown_signal() => tracing::info!("shutdown requested"),
        () = token.cancelled() => {},
    }
    node.stop().await?;
    Ok(0)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Publish(args) => commands::publish(args).await,
        Command::Deprecate(args) => commands::deprecate(args).await,
        Command::Blueprints { command } => commands::blueprints(command).await,
        Command::Status(args) => commands::status(args).await,
        Command::Watch(args) => commands::watch(args).await,
        Command::Verify(args) => commands::verify(args).await,
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
