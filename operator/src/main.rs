//! `streamjob-operator`: watches StreamJobs (in all namespaces, or in those
//! given) and serves `/metrics` and `/healthz`. Runs as a single replica (no
//! leader election; the Helm chart's Deployment uses `Recreate`).

use std::sync::Arc;

use clap::{Parser, ValueEnum};
use streamjob_operator::controller::{self, Context};
use streamjob_operator::runtime_api::HttpRuntime;

#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Watch only this namespace (repeat for several); all when absent.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Where `/metrics` and `/healthz` listen.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_address: String,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env(streamjob_api::flags::LOG_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let client = kube::Client::try_default().await?;
    let ctx = Arc::new(Context::new(client, Arc::new(HttpRuntime::default())));
    let metrics = tokio::spawn(streamjob_operator::metrics::serve(
        args.metrics_address.clone(),
        Arc::clone(&ctx.metrics),
    ));
    let namespaces: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.into_iter().map(Some).collect()
    };
    let controllers = namespaces
        .into_iter()
        .map(|ns| controller::run(Arc::clone(&ctx), ns));
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        served = metrics => served??,
    }
    Ok(())
}
