//! The command line: clap definitions only; `settings` turns them into validated `Settings`.

use std::collections::HashMap;
use std::error::Error as _;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// flytube: a private connector that reaches a relay with one outbound SSH connection
/// and serves the relay's remote forwards from inside the network.
#[derive(Debug, Parser)]
#[command(
    name = "flytube",
    version,
    about,
    propagate_version = true,
    args_override_self = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to the relay and serve every forward until stopped.
    Run(Options),
    /// Print the effective settings (secrets masked) and exit.
    Config(Options),
    /// Walk the path to the relay and to every target step by step, then exit.
    Check(CheckOptions),
    /// Print one line on the running daemon's health; exit 0 when it is ready.
    Health(HealthOptions),
}

/// Options of `flytube health`.
#[derive(Debug, Args)]
pub struct HealthOptions {
    /// The daemon's status file [default: $RUNTIME_DIRECTORY/status, else /run/flytube/status].
    #[arg(long, env = "FLYTUBE_STATUS_FILE", value_name = "FILE")]
    pub status_file: Option<PathBuf>,
}

/// Options of `flytube check`.
#[derive(Debug, Args)]
pub struct CheckOptions {
    /// Print the steps as JSON, one object per line.
    #[arg(long)]
    pub json: bool,
    /// The same options as `run`.
    #[command(flatten)]
    pub options: Options,
}

/// Connection options, shared by every subcommand. Each overrides the YAML file.
#[derive(Debug, Clone, Args, Default)]
pub struct Options {
    /// YAML settings file [default: /etc/flytube/flytube.yaml when it exists].
    #[arg(short = 'c', long, env = "FLYTUBE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Relay to connect to, HOST[:PORT] (port 22 by default).
    #[arg(long, env = "FLYTUBE_RELAY", value_name = "HOST[:PORT]")]
    pub relay: Option<String>,

    /// Reach the relay through a proxy: http://[USER[:PASSWORD]@]HOST:PORT (HTTP CONNECT),
    /// socks5://... (SOCKS5) or socks5h://... (the proxy resolves the relay's name); `none`
    /// ignores HTTPS_PROXY and ALL_PROXY too.
    #[arg(
        long,
        env = "FLYTUBE_PROXY",
        value_name = "URL",
        hide_env_values = true
    )]
    pub proxy: Option<String>,

    /// File whose first line is the proxy password (for a URL that names only the user).
    #[arg(long, env = "FLYTUBE_PROXY_PASSWORD_FILE", value_name = "FILE")]
    pub proxy_password_file: Option<PathBuf>,

    /// User name on the relay.
    #[arg(long, env = "FLYTUBE_USER", value_name = "NAME")]
    pub user: Option<String>,

    /// Private key file (OpenSSH format).
    #[arg(short = 'i', long, env = "FLYTUBE_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,

    /// OpenSSH certificate for the key [default: IDENTITY-cert.pub when it exists].
    #[arg(long, env = "FLYTUBE_CERTIFICATE", value_name = "FILE")]
    pub certificate: Option<PathBuf>,

    /// File holding the key's passphrase (or set FLYTUBE_PASSPHRASE).
    #[arg(long, env = "FLYTUBE_PASSPHRASE_FILE", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// known_hosts file that lists the relay's host key.
    #[arg(long, env = "FLYTUBE_KNOWN_HOSTS", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// Pinned SHA256 fingerprint of the relay's host key, as `ssh-keygen -lf` prints it.
    #[arg(long, env = "FLYTUBE_HOST_KEY_FINGERPRINT", value_name = "SHA256:...")]
    pub host_key_fingerprint: Option<String>,

    /// Remote forward [BIND:]SOURCE_PORT:TARGET_HOST:TARGET_PORT, or [BIND:]SOURCE_PORT for a
    /// dynamic (SOCKS/HTTP CONNECT) forward (repeatable; IPv6 in brackets).
    #[arg(short = 'R', long = "forward", value_name = "SPEC")]
    pub forwards: Vec<String>,

    /// A destination dynamic forwards may reach: HOST[:PORT] or HOST:LOW-HIGH, HOST a name,
    /// *.domain, *, an address or CIDR (repeatable; FLYTUBE_ALLOW holds rules separated by
    /// whitespace).
    #[arg(long = "allow", value_name = "RULE")]
    pub allow: Vec<String>,

    /// A destination dynamic forwards must not reach; wins over --allow (repeatable;
    /// FLYTUBE_DENY holds rules separated by whitespace).
    #[arg(long = "deny", value_name = "RULE")]
    pub deny: Vec<String>,

    /// Where -R and SOURCE_PORT targets are dialed from: direct (this machine) or relay
    /// (a direct-tcpip channel over the same SSH session).
    #[arg(long, env = "FLYTUBE_TARGET_VIA", value_name = "WHERE", value_parser = ["direct", "relay"])]
    pub target_via: Option<String>,

    /// Seconds of silence from the relay before flytube probes it.
    #[arg(long, env = "FLYTUBE_KEEPALIVE_INTERVAL", value_name = "SECS")]
    pub keepalive_interval: Option<u64>,

    /// Unanswered probes before the session is declared dead and rebuilt.
    #[arg(long, env = "FLYTUBE_KEEPALIVE_COUNT", value_name = "N")]
    pub keepalive_count: Option<u32>,

    /// Most forwarded connections served at once; more are refused.
    #[arg(long, env = "FLYTUBE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// SSH ciphers in order of preference, comma-separated.
    #[arg(long, env = "FLYTUBE_CIPHERS", value_name = "LIST")]
    pub ciphers: Option<String>,

    /// Allow ciphers weaker than 256-bit AEAD/CTR in --ciphers (for an old relay only).
    #[arg(long, env = "FLYTUBE_ALLOW_WEAKER_CIPHERS")]
    pub allow_weaker_ciphers: bool,

    /// More log output (-v debug, -vv trace).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less log output (-q warnings and errors only, -qq errors only).
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// Serve /metrics, /healthz and /readyz on ADDRESS:PORT (loopback unless the file allows remote).
    #[arg(long, env = "FLYTUBE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Keep a JSON status file here for `flytube health` [default: $RUNTIME_DIRECTORY/status].
    #[arg(long, env = "FLYTUBE_STATUS_FILE", value_name = "FILE")]
    pub status_file: Option<PathBuf>,

    /// Log format: text or json.
    #[arg(long, env = "FLYTUBE_LOG_FORMAT", value_name = "FORMAT",
          value_parser = ["text", "json"])]
    pub log_format: Option<String>,
}

impl Cli {
    /// Parses the command line. A bad value typed on the command line is a usage error
    /// (clap prints it and exits 2); a bad value that came from an environment variable is a
    /// configuration error (exit 78) naming the variable, since nobody typed it.
    pub fn parse_checked(env: &HashMap<String, String>) -> Result<Cli, String> {
        let error = match Cli::try_parse() {
            Ok(cli) => return Ok(cli),
            Err(error) => error,
        };
        if let Some(message) = env_value_error(&error, env) {
            return Err(message);
        }
        error.exit()
    }
}

/// When clap refused a value that no command-line argument carries but an environment
/// variable does, the message that names that variable.
fn env_value_error(error: &clap::Error, env: &HashMap<String, String>) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let value = match error.get(ContextKind::InvalidValue)? {
        ContextValue::String(value) => value.clone(),
        _ => return None,
    };
    let command = Cli::command();
    let run = command.find_subcommand("run")?;
    let arg = run.get_arguments().find(|arg| {
        arg.get_env()
            .and_then(|name| env.get(name.to_str()?))
            .is_some_and(|set| *set == value)
    })?;
    let flag = arg.get_long()?;
    let short = arg.get_short().map(|c| format!("-{c}"));
    let typed = std::env::args().skip(1).any(|given| {
        given == format!("--{flag}")
            || given.starts_with(&format!("--{flag}="))
            || short
                .as_ref()
                .is_some_and(|s| given.starts_with(s.as_str()))
    });
    if typed {
        return None;
    }
    let name = arg.get_env()?.to_string_lossy();
    let reason = error.source().map(|e| format!(": {e}")).unwrap_or_default();
    Some(format!(
        "environment variable {name}={value:?} is not a valid value for --{flag}{reason} \
         (see `flytube run --help`)"
    ))
}

impl Command {
    /// The options, whatever the subcommand.
    pub fn options(&self) -> Option<&Options> {
        match self {
            Command::Run(o) | Command::Config(o) => Some(o),
            Command::Check(c) => Some(&c.options),
            Command::Health(_) => None,
        }
    }
}
