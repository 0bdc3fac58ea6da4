//! `bmsctl`: operator commands against a running `bmsd`, over the control
//! socket in the site's state directory.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use bmshost::api::{call, Request, Response, Who};
use bmshost::config::SiteConfig;
use bmshost::io::modbus::mode::Mode;
use bmshost::plugins::events::PluginEvent;
use bmshost::plugins::slot::SlotStatus;
use bmshost::plugins::Role;

#[derive(Parser)]
#[command(name = "bmsctl", version, about = "Operate a running bmsd")]
struct Cli {
    /// Site configuration of the running daemon (locates its socket).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Control socket path (instead of --config).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// On a bank site: the rack to talk to (each rack has its own
    /// protection, plugins and control socket).
    #[arg(long, global = true)]
    rack: Option<String>,
    /// Print the daemon's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Who you are (a user of `[operator] users_file`), for reset, reload
    /// and rollback. The secret is never an argument: it comes from
    /// $BMS_SECRET, --secret-file, or a prompt.
    #[arg(long, global = true, env = "BMS_USER")]
    user: Option<String>,
    /// A file whose first line is your secret (keep it 0600).
    #[arg(long, global = true)]
    secret_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Protection status: contactors, allowed currents, latched faults.
    Status,
    /// The protection event record, then the plugin runtime's record.
    Events {
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Reset latched protection faults (only once their conditions
    /// cleared). Needs an operator.
    Reset,
    /// Hold the contactors open. Never refused: no secret needed (the user,
    /// if given, is recorded).
    Open {
        /// Why (recorded and shown in the hold).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Withdraw the `open` hold: protection closes again on its own
    /// conditions. Needs an operator.
    Release,
    /// The audit record: every attempt to change the site.
    Audit {
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Read a secret (prompt, or the first line of stdin when it is not a
    /// terminal) and print a `[[user]]` entry for the users file.
    HashSecret {
        /// The user's name.
        name: String,
        /// viewer, operator or admin.
        #[arg(long, default_value = "operator")]
        role: String,
    },
    /// Per role: plugin, version, sha256, state, crashes, last swap, canary.
    Plugins,
    /// Re-read the site file and swap the role's plugin (validated and
    /// canaried first; the running version stays if anything fails).
    /// Also lifts a quarantine.
    Reload { role: Role },
    /// Return the role to the version before its last swap.
    Rollback { role: Role },
    /// Local or remote control (SunSpec `LocRemCtl`). Without a mode,
    /// print it; `local` refuses every Modbus write but a disconnect,
    /// `remote` allows them again. Switching needs an operator.
    Control { mode: Option<ControlArg> },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ControlArg {
    Local,
    Remote,
}

fn socket(cli: &Cli) -> Result<PathBuf> {
    if let Some(s) = &cli.socket {
        return Ok(s.clone());
    }
    let Some(cfg) = &cli.config else {
        bail!("give --config SITE.toml (or --socket PATH) to find the daemon");
    };
    let cfg = SiteConfig::load(cfg)?;
    let state = cfg.resolve(&cfg.site.state_dir);
    match (&cfg.bank, &cli.rack) {
        (None, None) => Ok(state.join("bmsd.sock")),
        (None, Some(r)) => bail!("--rack {r}: this site has a single rack (no [bank])"),
        (Some(b), rack) => {
            let names: Vec<&str> = b.racks.iter().map(|r| r.name.as_str()).collect();
            match rack {
                Some(r) if names.contains(&r.as_str()) => {
                    Ok(state.join("racks").join(r).join("bmsd.sock"))
                }
                Some(r) => bail!("no rack `{r}` in [bank]; racks: {}", names.join(", ")),
                None => bail!(
                    "this site is a bank: give --rack (one of {})",
                    names.join(", ")
                ),
            }
        }
    }
}

/// The caller's user and secret, for requests that need a role.
fn who(cli: &Cli) -> Result<Who> {
    let Some(user) = cli.user.clone() else {
        bail!("this needs an operator: give --user NAME (or $BMS_USER)");
    };
    let secret = if let Ok(s) = std::env::var("BMS_SECRET") {
        s
    } else if let Some(f) = &cli.secret_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading --secret-file {}", f.display()))?;
        text.lines().next().unwrap_or_default().to_string()
    } else {
        rpassword::prompt_password(format!("secret for {user}: "))
            .context("reading the secret from the terminal")?
    };
    Ok(Who { user, secret })
}

fn read_new_secret() -> Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("new secret: ")?;
        let b = rpassword::prompt_password("again: ")?;
        if a != b {
            bail!("the two entries differ");
        }
        Ok(a)
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

fn ask(path: &std::path::Path, req: &Request) -> Result<serde_json::Value> {
    let resp: Response = call(path, req)
        .with_context(|| format!("talking to bmsd at {} (is it running?)", path.display()))?;
    if !resp.ok {
        bail!("{}", resp.error.unwrap_or_else(|| "request failed".into()));
    }
    Ok(resp.result.unwrap_or_default())
}

/// What a command sends: one request, or a record read a page at a time
/// from a sequence number.
enum Ask {
    One(Request),
    Pages(u64, fn(u64) -> Request),
}

/// Every record after `since`, a page at a time.
fn all_pages(
    path: &std::path::Path,
    since: u64,
    request: impl Fn(u64) -> Request,
) -> Result<serde_json::Value> {
    let mut all = Vec::new();
    let mut after = since;
    loop {
        let page = ask(path, &request(after))?;
        let page = page.as_array().cloned().unwrap_or_default();
        let n = page.len();
        if let Some(seq) = page.last().and_then(|r| r["seq"].as_u64()) {
            after = seq;
        }
        all.extend(page);
        if n < bmshost::api::PAGE {
            return Ok(serde_json::Value::Array(all));
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let req = match &cli.command {
        Command::HashSecret { name, role } => {
            if !["viewer", "operator", "admin"].contains(&role.as_str()) {
                bail!("--role {role}: expected viewer, operator or admin");
            }
            let secret = read_new_secret()?;
            if secret.len() < 8 {
                bail!("the secret is {} characters; use at least 8", secret.len());
            }
            println!(
                "[[user]]\nname = \"{name}\"\nrole = \"{role}\"\nargon2id = \"{}\"",
                bmshost::auth::hash_secret(&secret)
            );
            return Ok(());
        }
        Command::Status => Ask::One(Request::Status),
        Command::Events { since } => Ask::Pages(*since, |s| Request::Events {
            since_seq: s,
            limit: bmshost::api::PAGE,
        }),
        Command::Audit { since } => Ask::Pages(*since, |s| Request::Audit {
            since_seq: s,
            limit: bmshost::api::PAGE,
        }),
        Command::Open { reason } => Ask::One(Request::Open {
            reason: reason.clone(),
            user: cli.user.clone().unwrap_or_default(),
        }),
        Command::Release => Ask::One(Request::Release { who: who(&cli)? }),
        Command::Reset => Ask::One(Request::Reset { who: who(&cli)? }),
        Command::Plugins => Ask::One(Request::Plugins),
        Command::Reload { role } => Ask::One(Request::Reload {
            role: *role,
            who: who(&cli)?,
        }),
        Command::Rollback { role } => Ask::One(Request::Rollback {
            role: *role,
            who: who(&cli)?,
        }),
        Command::Control { mode: None } => Ask::One(Request::Control {
            mode: None,
            who: Who::default(),
        }),
        Command::Control { mode: Some(m) } => Ask::One(Request::Control {
            mode: Some(match m {
                ControlArg::Local => Mode::Local,
                ControlArg::Remote => Mode::Remote,
            }),
            who: who(&cli)?,
        }),
    };
    let path = socket(&cli)?;
    let result = match req {
        Ask::One(r) => ask(&path, &r)?,
        Ask::Pages(since, request) => all_pages(&path, since, request)?,
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(());
    }
    match cli.command {
        Command::Events { since } => {
            let recs: Vec<bmshost::protection::events::EventRecord> =
                serde_json::from_value(result)?;
            println!("protection events:");
            for r in &recs {
                println!("  {}", bmshost::telemetry::event_line(r));
            }
            let recs: Vec<PluginEvent> =
                serde_json::from_value(all_pages(&path, since, |s| Request::PluginEvents {
                    since_seq: s,
                    limit: bmshost::api::PAGE,
                })?)?;
            println!("plugin events:");
            for r in &recs {
                println!("  {}", bmshost::telemetry::plugin_event_line(r));
            }
        }
        Command::Plugins => {
            let slots: Vec<SlotStatus> = serde_json::from_value(result)?;
            print_plugins(&slots);
        }
        Command::Reload { .. }
        | Command::Rollback { .. }
        | Command::Open { .. }
        | Command::Control { .. }
        | Command::Release => {
            println!("{}", result.as_str().unwrap_or_default());
        }
        _ => println!("{}", serde_json::to_string_pretty(&result)?),
    }
    Ok(())
}

fn print_plugins(slots: &[SlotStatus]) {
    println!(
        "{:<9} {:<20} {:<9} {:<12} {:<12} {:>7} {:>8}  last swap / canary",
        "ROLE", "PLUGIN", "VERSION", "SHA256", "STATE", "CRASHES", "RESTARTS"
    );
    for s in slots {
        let swap = s.last_swap.as_ref().map_or("-".to_string(), |w| {
            format!(
                "{} {} -> {} at {:.1} s",
                w.kind,
                w.from,
                w.to,
                w.time_ms as f64 / 1000.0
            )
        });
        println!(
            "{:<9} {:<20} {:<9} {:<12} {:<12} {:>7} {:>8}  {}",
            s.role.to_string(),
            s.name.as_deref().unwrap_or("-"),
            s.version.as_deref().unwrap_or("-"),
            s.sha256.as_deref().map_or("-", |h| &h[..12.min(h.len())]),
            s.state.name(),
            s.crashes,
            s.restarts,
            swap
        );
        if let Some(c) = &s.canary {
            println!("{:<9} canary: {}", "", c.summary());
        }
        if let Some(a) = &s.alarm {
            println!("{:<9} ALARM: {a}", "");
        } else if let (Some(e), false) = (&s.last_error, s.state.name() == "active") {
            println!("{:<9} reason: {e}", "");
        }
    }
}
