//! Run with: `cargo run --release -p swarmcdn-seeder --example build_torrent -- DIR [LOG2_PIECE_LENGTH]`
//!
//! Hashes a folder with the builder `publish` uses (`TorrentBuilder`, all cores) and prints the
//! info-hash and the time taken, without copying anything into a store. It exists so the
//! hashing can be timed on its own against other torrent makers (see `bench/seeder.sh` and
//! `docs/BENCHMARKS.md`): the torrent is named after the folder and the piece length is
//! `2^LOG2_PIECE_LENGTH` (default: the automatic length `publish` picks), so for the same
//! folder and piece length the info-hash equals the one `mktorrent -d -l N DIR` writes.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use swarmcdn_proto::metainfo::TorrentBuilder;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        bail!("usage: build_torrent DIR [LOG2_PIECE_LENGTH]");
    };
    let log2 = match args.next() {
        Some(arg) => Some(
            arg.to_str()
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|n| (14..=24).contains(n))
                .context("LOG2_PIECE_LENGTH is a number from 14 to 24")?,
        ),
        None => None,
    };
    let name = dir
        .canonicalize()
        .with_context(|| format!("cannot open {}", dir.display()))?
        .file_name()
        .and_then(|n| n.to_str())
        .context("the folder has no name, or one that is not UTF-8")?
        .to_owned();

    let start = Instant::now();
    let mut builder = TorrentBuilder::new(name).folder(true).add_dir(&dir)?;
    if let Some(log2) = log2 {
        builder = builder.piece_length(1 << log2);
    }
    let metainfo = builder.build()?;
    let secs = start.elapsed().as_secs_f64();

    let bytes = metainfo.info().total_length();
    println!("info_hash={}", metainfo.info_hash());
    println!("piece_length={}", metainfo.info().piece_length());
    println!("bytes={bytes}");
    println!("seconds={secs:.3}");
    println!("mib_per_sec={:.1}", bytes as f64 / secs / (1024.0 * 1024.0));
    Ok(())
}
