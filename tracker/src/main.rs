//! `swarmcdn-tracker`: parse the command line, load the configuration, start logging, call
//! the library. Commands and their help live in `cli.rs`.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

/// mimalloc rather than the system allocator: each request allocates a few small buffers
/// (headers, body) that another thread may free, which the system allocator handles with
/// locks and consolidation passes. Measured on the announce benchmark: about a fifth less
/// CPU per announce (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; RUST_LOG overrides the default level (info).
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.print_config {
        print!("{}", swarmcdn_tracker::config::Config::default().to_toml()?);
        return Ok(());
    }
    let config = cli::load_config(&cli)?;
    match cli.command {
        Some(Command::Serve { listen }) => {
            tokio::runtime::Runtime::new()?.block_on(cli::serve(config, listen))
        }
        Some(Command::Publisher(command)) => cli::publisher(&config, command),
        None => anyhow::bail!("no command given; see `swarmcdn-tracker --help`"),
    }
}
