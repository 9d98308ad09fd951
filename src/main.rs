//! The `vellum` binary: `serve`, `admin …`, `version`.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Vellum: a self-hosted private certificate authority.
#[derive(Debug, Parser)]
#[command(name = "vellum", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (HTTPS admin API, HTTP CRL/CA distribution).
    Serve {
        /// TOML configuration file (every key can also be set as VELLUM_<KEY>).
        #[arg(long, env = "VELLUM_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Call the admin API of a running server.
    Admin(Box<cli::AdminOpts>),
    /// Write an encrypted, checksummed backup of the database (the server may be running).
    Backup {
        /// The backup file to create (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// TOML configuration file (the server's: data dir, database, master key).
        #[arg(long, env = "VELLUM_CONFIG")]
        config: Option<PathBuf>,
        /// Seal with a passphrase instead of the master key (the master key then travels
        /// inside the backup).
        #[command(flatten)]
        passphrase: Passphrase,
    },
    /// Restore a backup into an empty data dir (and, for PostgreSQL, an empty database).
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The data dir to restore into (default: the configured one). It holds the master
        /// key the backup was made under, unless the backup is passphrase-sealed.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The database to restore into (default: the configured one, else the data dir's
        /// SQLite file).
        #[arg(long)]
        database_url: Option<String>,
        /// TOML configuration file.
        #[arg(long, env = "VELLUM_CONFIG")]
        config: Option<PathBuf>,
        /// The passphrase of a passphrase-sealed backup.
        #[command(flatten)]
        passphrase: Passphrase,
    },
    /// Re-seal every stored private key and secret under a new master key, in one
    /// transaction. Stop every server first.
    RotateMasterKey {
        /// The new key: a file holding 64 hex characters (`openssl rand -hex 32`).
        #[arg(long)]
        new_key_file: PathBuf,
        /// TOML configuration file.
        #[arg(long, env = "VELLUM_CONFIG")]
        config: Option<PathBuf>,
        /// Rotate although a server's lease is still live (only when every server is
        /// known to be stopped).
        #[arg(long)]
        force: bool,
    },
    /// Print the version.
    Version,
}

/// A backup's passphrase (`backup` seals with it, `restore` opens with it).
#[derive(Debug, clap::Args)]
struct Passphrase {
    /// The passphrase in this file (first line).
    #[arg(long, conflicts_with = "passphrase")]
    passphrase_file: Option<PathBuf>,
    /// The passphrase (12 characters or more). Prefer the environment variable or
    /// --passphrase-file: a command line is seen by every user of the machine.
    #[arg(long, env = "VELLUM_BACKUP_PASSPHRASE", hide_env_values = true)]
    passphrase: Option<String>,
}

impl Passphrase {
    fn read(self) -> vellum_core::error::Result<Option<zeroize::Zeroizing<String>>> {
        vellum_server::maintenance::passphrase(self.passphrase_file.as_deref(), self.passphrase)
    }
}

fn init_logging(level: &str, json: bool) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        EnvFilter::try_new(format!("{level},sqlx=warn,hyper=warn,rustls=warn"))
            .unwrap_or_else(|_| EnvFilter::new("info"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Version => {
            println!("vellum {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Serve { config } => {
            let config = match vellum_core::config::Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&config.log.level, config.log.json);
            // One server per process here: with /metrics off, nothing is recorded either.
            vellum_core::metrics::set_recording(config.metrics.enabled);
            match runtime.block_on(vellum_server::serve::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Backup {
            out,
            config,
            passphrase,
        } => maintenance(&runtime, config.as_deref(), |config| async move {
            vellum_server::maintenance::backup(&config, &out, passphrase.read()?).await
        }),
        Command::Restore {
            file,
            data_dir,
            database_url,
            config,
            passphrase,
        } => maintenance(&runtime, config.as_deref(), |mut config| async move {
            if let Some(d) = data_dir {
                config.data_dir = d;
            }
            if let Some(u) = database_url {
                config.database_url = Some(u);
            }
            vellum_server::maintenance::restore(&config, &file, passphrase.read()?).await
        }),
        Command::RotateMasterKey {
            new_key_file,
            config,
            force,
        } => maintenance(&runtime, config.as_deref(), |config| async move {
            vellum_server::maintenance::rotate_master_key(&config, &new_key_file, force).await
        }),
        Command::Admin(opts) => match runtime.block_on(cli::run(*opts)) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs an operator command with the server's configuration; prints its report, or the
/// error (exit 2 for a configuration error, 1 otherwise).
fn maintenance<F, Fut>(
    runtime: &tokio::runtime::Runtime,
    config: Option<&std::path::Path>,
    f: F,
) -> ExitCode
where
    F: FnOnce(vellum_core::config::Config) -> Fut,
    Fut: std::future::Future<Output = vellum_core::error::Result<String>>,
{
    let config = match vellum_core::config::Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(f(config)) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `--help` describes every command, argument and flag (clap's own help and version
    /// flags aside).
    #[test]
    fn every_command_and_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && path.contains(' ') && path.trim() != "vellum" {
                missing.push(format!("{path} (the command)"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &path, missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }

    /// No subcommand defines a flag, or an argument id, that a global flag of its parents
    /// already has (e.g. a second `--url`, or a field named `url` under another flag
    /// name): clap would store one in the other.
    #[test]
    fn no_flag_shadows_a_global_one() {
        fn walk(cmd: &clap::Command, path: &str, globals: &[String], clashes: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            let mut inherited = globals.to_vec();
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                let long = arg.get_long().unwrap_or(id);
                if arg.is_global_set() {
                    for name in [id, long] {
                        if !inherited.iter().any(|g| g == name) {
                            inherited.push(name.to_string());
                        }
                    }
                } else if globals.iter().any(|g| g == long || g == id)
                    // Known clash, older than this test: the share commands' recipient
                    // `--tenant` hides the global act-in-tenant `--tenant` after them.
                    && !(long == "tenant" && cmd.get_name() == "share")
                {
                    clashes.push(format!("{path} --{long}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, &inherited, clashes);
            }
        }
        let mut clashes = Vec::new();
        walk(&super::Cli::command(), "", &[], &mut clashes);
        assert!(
            clashes.is_empty(),
            "flags shadowing a global one: {clashes:#?}"
        );
    }
}
