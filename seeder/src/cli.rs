//! The command line of `swarmcdn-seeder`: arguments and their help.
//!
//! Every setting can come from the configuration file, an `SWARMCDN_*` environment variable
//! or a flag; a flag or variable overrides the file. The commands themselves are in
//! `commands.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use swarmcdn_proto::manifest::{ReleaseName, Version};

const EXAMPLES: &str = "\
Examples:
  # once: make the publisher's key, then have it registered at the tracker
  swarmcdn-seeder keygen --out publisher.key

  # publish ./dist as share-button (next patch version), then serve it
  export SWARMCDN_TOKEN=...            # the token the tracker's operator gave you
  swarmcdn-seeder publish ./dist --name share-button --key publisher.key \\
      --tracker https://tracker.example.com --webseed-url https://origin.example.com
  swarmcdn-seeder serve --listen 0.0.0.0:7070

  # what is stored, is it intact, withdraw a release
  swarmcdn-seeder list
  swarmcdn-seeder verify
  swarmcdn-seeder unpublish share-button 1.0.3

  # start a configuration file from the defaults
  swarmcdn-seeder --print-config > seeder.toml";

/// The swarmcdn seeder: publish a folder as a signed, versioned release, and serve it as the
/// origin (HTTP web seed, with an upload cap).
///
/// A publisher goes from a folder to a served release with two commands: `keygen` once (and
/// registering the public key at the tracker), then `publish` for every release. `serve`
/// serves everything in the store and picks up new releases without a restart.
#[derive(Debug, Parser)]
#[command(name = "swarmcdn-seeder", version, about, long_about, after_help = EXAMPLES)]
pub(crate) struct Cli {
    /// TOML configuration file (`--print-config` prints one to start from). Flags and
    /// SWARMCDN_* variables override its values; without it, the defaults apply.
    #[arg(long, global = true, value_name = "FILE", env = "SWARMCDN_CONFIG")]
    pub(crate) config: Option<PathBuf>,

    /// The store folder holding published releases (`store`; default ./swarmcdn-store).
    /// `publish` writes into it, `serve` serves from it: give both the same folder.
    #[arg(long, global = true, value_name = "DIR", env = "SWARMCDN_STORE")]
    pub(crate) store: Option<PathBuf>,

    /// Print the configuration in effect (the defaults, with --config and --store applied) as
    /// TOML, and exit.
    #[arg(long)]
    pub(crate) print_config: bool,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create the publisher's Ed25519 signing key (once) and print its public key.
    ///
    /// The key file is written with mode 0600 and never overwrites an existing file. Register
    /// the printed public key at the tracker and pin it in the sites that use your releases.
    ///
    /// Example: swarmcdn-seeder keygen --out publisher.key
    Keygen {
        /// Where to write the key (`key`; default ./swarmcdn-publisher.key). Must not exist.
        #[arg(long, value_name = "FILE", env = "SWARMCDN_KEY")]
        out: Option<PathBuf>,
    },

    /// Publish a folder as a new release: hash, sign, store, register at the tracker.
    ///
    /// Every file below DIR becomes part of the release (symbolic links must stay inside it;
    /// at most 1 GiB in all by default). If anything fails, nothing is published: the store
    /// and the tracker are left as they were.
    ///
    /// Example: swarmcdn-seeder publish ./dist --name share-button --version 1.4.0
    Publish(PublishArgs),

    /// Serve every stored release as a web seed, with /metrics and /healthz, until SIGINT or
    /// SIGTERM. Releases published or unpublished meanwhile are picked up without a restart.
    ///
    /// Example: swarmcdn-seeder serve --listen 0.0.0.0:7070 --upload-limit 12500000
    Serve(ServeArgs),

    /// List the releases in the store.
    List,

    /// Withdraw a release: tell the tracker, stop serving it, and delete its content (unless
    /// --keep-content).
    ///
    /// Example: swarmcdn-seeder unpublish share-button 1.0.3
    Unpublish(UnpublishArgs),

    /// Re-hash every stored release (pieces against the torrent, files against the signed
    /// manifest) and report damage file by file; exits non-zero if anything is damaged.
    Verify,
}

/// `publish` arguments.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The folder whose files make up the release.
    #[arg(value_name = "DIR")]
    pub(crate) dir: PathBuf,

    /// The release name: lowercase a-z, 0-9, '-', '_', '.' (e.g. share-button).
    #[arg(long, value_name = "NAME")]
    pub(crate) name: ReleaseName,

    /// The version (Semantic Versioning, e.g. 1.4.0). Without it, the tracker's latest
    /// version of NAME with its patch bumped (1.4.2 -> 1.4.3), or 1.0.0 for a first release.
    #[arg(long, value_name = "VERSION")]
    pub(crate) version: Option<Version>,

    #[command(flatten)]
    pub(crate) tracker: TrackerArgs,

    /// The signing key made by `keygen` (`key`; default ./swarmcdn-publisher.key). Must
    /// not be readable by group or others.
    #[arg(long, value_name = "FILE", env = "SWARMCDN_KEY")]
    pub(crate) key: Option<PathBuf>,

    /// This seeder's public base URL, as clients will reach `serve` (`webseed_url`; e.g.
    /// https://origin.example.com). Written into the torrent as its web seed; "" for none.
    #[arg(long, value_name = "URL", env = "SWARMCDN_WEBSEED_URL")]
    pub(crate) webseed_url: Option<String>,

    /// The largest release accepted, in bytes (`max_release_bytes`; default 1 GiB).
    #[arg(long, value_name = "BYTES", env = "SWARMCDN_MAX_RELEASE_BYTES")]
    pub(crate) max_release_bytes: Option<u64>,

    /// Do not draw progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub(crate) no_progress: bool,
}

/// How to reach the tracker's API.
#[derive(Debug, Args)]
pub(crate) struct TrackerArgs {
    /// The tracker's base URL (`tracker`; default http://127.0.0.1:6969).
    #[arg(long, value_name = "URL", env = "SWARMCDN_TRACKER")]
    pub(crate) tracker: Option<String>,

    /// Your publisher token, issued by the tracker's operator. Prefer the SWARMCDN_TOKEN
    /// variable: a flag shows up in the process list.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SWARMCDN_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: String,

    /// Seconds to wait for each answer from the tracker (`tracker_timeout_secs`; default 30).
    #[arg(long, value_name = "SECS", env = "SWARMCDN_TRACKER_TIMEOUT_SECS")]
    pub(crate) tracker_timeout_secs: Option<u64>,
}

/// `serve` arguments.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (`listen`; default 127.0.0.1:7070), e.g. 0.0.0.0:7070.
    #[arg(long, value_name = "ADDR", env = "SWARMCDN_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,

    /// Address to accept peer-wire connections on, for seeding to the swarm
    /// (`peer_listen`; default 0.0.0.0:6881).
    #[arg(long, value_name = "ADDR", env = "SWARMCDN_PEER_LISTEN")]
    pub(crate) peer_listen: Option<SocketAddr>,

    /// Upload cap in bytes per second, shared by web seed and peers
    /// (`upload_limit_bytes_per_sec`; 0, the default, for none).
    #[arg(long, value_name = "BYTES_PER_SEC", env = "SWARMCDN_UPLOAD_LIMIT")]
    pub(crate) upload_limit: Option<u64>,

    /// The web seed's share of the upload cap in percent (`webseed_share_percent`; default
    /// 50). Beyond it, new web-seed requests get 503 with Retry-After.
    #[arg(long, value_name = "PERCENT", env = "SWARMCDN_WEBSEED_SHARE")]
    pub(crate) webseed_share: Option<u8>,

    /// Milliseconds between looks at the store for new or removed releases
    /// (`store_poll_interval_ms`; default 2000).
    #[arg(long, value_name = "MS", env = "SWARMCDN_POLL_INTERVAL_MS")]
    pub(crate) poll_interval_ms: Option<u64>,

    /// Do not re-hash the stored releases at start (`verify_on_start = false`). With peer
    /// seeding on, the peer engine checks them anyway, and that is the one verify pass.
    #[arg(long)]
    pub(crate) no_verify: bool,

    /// The most web-seed bodies sent at once; more requests wait (`max_concurrent_requests`;
    /// default 1024).
    #[arg(long, value_name = "N", env = "SWARMCDN_MAX_CONCURRENT_REQUESTS")]
    pub(crate) max_concurrent_requests: Option<usize>,

    /// Seconds of web-seed traffic (at its share of the cap) that may be promised before new
    /// requests get 503 (`webseed_backlog_secs`; default 2).
    #[arg(long, value_name = "SECS", env = "SWARMCDN_WEBSEED_BACKLOG_SECS")]
    pub(crate) webseed_backlog_secs: Option<u32>,

    /// The longest Retry-After sent with a 503, in seconds (`max_retry_after_secs`; default
    /// 60).
    #[arg(long, value_name = "SECS", env = "SWARMCDN_MAX_RETRY_AFTER_SECS")]
    pub(crate) max_retry_after_secs: Option<u32>,
}

/// `unpublish` arguments.
#[derive(Debug, Args)]
pub(crate) struct UnpublishArgs {
    /// The release name.
    #[arg(value_name = "NAME")]
    pub(crate) name: ReleaseName,

    /// The version to withdraw.
    #[arg(value_name = "VERSION")]
    pub(crate) version: Version,

    /// Keep the content in the store (listed as withdrawn, no longer served).
    #[arg(long)]
    pub(crate) keep_content: bool,

    #[command(flatten)]
    pub(crate) tracker: TrackerArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
