//! `bmsctl`: operator commands against a running `bmsd`, over the control
//! socket in the site's state directory.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use bmshost::api::{call, hash_credential, Request};
use bmshost::config::SiteConfig;

#[derive(Parser)]
#[command(name = "bmsctl", version, about = "Operate a running bmsd")]
struct Cli {
    /// Site configuration of the running daemon (locates its socket).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Control socket path (instead of --config).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Protection status: contactors, allowed currents, latched faults.
    Status,
    /// The protection event record.
    Events {
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Reset latched protection faults (only once their conditions cleared).
    Reset {
        /// The operator credential; default: $BMS_RESET_CREDENTIAL.
        #[arg(long, env = "BMS_RESET_CREDENTIAL", hide_env_values = true)]
        credential: String,
    },
    /// Print the sha256 to put in `[operator] reset_credential_sha256`.
    HashCredential { credential: String },
}

fn socket(cli: &Cli) -> Result<PathBuf> {
    if let Some(s) = &cli.socket {
        return Ok(s.clone());
    }
    let Some(cfg) = &cli.config else {
        bail!("give --config SITE.toml (or --socket PATH) to find the daemon");
    };
    let cfg = SiteConfig::load(cfg)?;
    Ok(cfg.resolve(&cfg.site.state_dir).join("bmsd.sock"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let req = match &cli.command {
        Command::HashCredential { credential } => {
            println!("{}", hash_credential(credential));
            return Ok(());
        }
        Command::Status => Request::Status,
        Command::Events { since } => Request::Events { since_seq: *since },
        Command::Reset { credential } => Request::Reset {
            credential: credential.clone(),
        },
    };
    let path = socket(&cli)?;
    let resp = call(&path, &req)
        .with_context(|| format!("talking to bmsd at {} (is it running?)", path.display()))?;
    if !resp.ok {
        bail!("{}", resp.error.unwrap_or_else(|| "request failed".into()));
    }
    let result = resp.result.unwrap_or_default();
    match cli.command {
        Command::Events { .. } => {
            let recs: Vec<bmshost::protection::events::EventRecord> =
                serde_json::from_value(result)?;
            for r in &recs {
                println!("{}", bmshost::telemetry::event_line(r));
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&result)?),
    }
    Ok(())
}
