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
    #[command(subcommand)]
    command: Option<Command>,
    /// Watch only this namespace (repeat for several); all when absent.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Where `/metrics` and `/healthz` listen.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_address: String,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Who may reach the jobs' control port, as a JSON list of
    /// NetworkPolicy peers (the Helm chart passes the operator's own pods);
    /// with it, each job gets a NetworkPolicy admitting only them.
    #[arg(long, global = true, value_parser = control_clients)]
    control_clients: Option<ControlClients>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Print the objects the operator would apply for a StreamJob (its
    /// first deployment) as YAML, without a cluster; with
    /// `--control-clients`, its NetworkPolicy too.
    Render {
        /// A StreamJob manifest.
        file: std::path::PathBuf,
    },
}

/// `--control-clients`: NetworkPolicy peers.
#[derive(Clone)]
struct ControlClients(Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>);

fn control_clients(json: &str) -> Result<ControlClients, String> {
    let peers: Vec<_> = serde_json::from_str(json)
        .map_err(|e| format!("expected a JSON list of NetworkPolicy peers: {e}"))?;
    if peers.is_empty() {
        return Err("name at least one peer (an empty list would admit nobody)".into());
    }
    Ok(ControlClients(peers))
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Render { file }) = &args.command {
        return render(file, args.control_clients.as_ref().map(|c| &c.0[..]));
    }
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
    let mut ctx = Context::new(client, Arc::new(HttpRuntime::default()));
    ctx.control_clients = args.control_clients.map(|c| c.0);
    let ctx = Arc::new(ctx);
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

/// `streamjob-operator render FILE`.
fn render(
    file: &std::path::Path,
    control_clients: Option<&[k8s_openapi::api::networking::v1::NetworkPolicyPeer]>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let job: streamjob_operator::crd::StreamJob = serde_yaml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a StreamJob: {e}", file.display()))?;
    let yaml = streamjob_operator::render::render(&job, control_clients)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    print!("{yaml}");
    Ok(())
}
