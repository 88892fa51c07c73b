//! Resident memory per tracked peer in the in-memory swarm store.
//!
//! Run with: `cargo bench -p swarmcdn-tracker --bench peer_memory`
//! (or add a shape, e.g. `-- 100000x10` for 100,000 torrents of 10 peers).
//!
//! The target is under 150 bytes of resident memory per peer at a million peers. The bench
//! announces `torrents x peers` distinct IPv4 peers (one in five a seeder, each asking for the
//! default number of peers, as real announces do) into a default-configured `MemoryStore`, and
//! reads the process's resident set size (`VmRSS` in `/proc/self/status`) before and after.
//! The difference covers everything the store allocated, allocator overhead included; the
//! store is the only thing this process allocates in between.
//!
//! Measured when the store was written: 64.7 bytes per peer at 1,000,000 peers (10,000 x 100;
//! 32-byte entries, Vec and index slack included), about 2.3 million announces a second on one
//! thread while filling. Since the binary moved to mimalloc, the bench uses it too: 69.3 bytes
//! per peer (the allocator keeps a little more slack), see docs/BENCHMARKS.md.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swarmcdn_proto::{InfoHash, PeerId};
use swarmcdn_tracker::swarm::{
    AnnounceEvent, AnnounceInput, AnnounceOutput, MemoryStore, PeerStore, StoreConfig, Timestamp,
};

/// The allocator the `swarmcdn-tracker` binary uses (see `src/main.rs`), so that allocator
/// overhead is counted as it is in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The default shape: 10,000 torrents of 100 peers, a million peers.
const DEFAULT_SHAPE: (u32, u32) = (10_000, 100);

/// Resident set size of this process in bytes, from `/proc/self/status`.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// The shape from the first argument of the form `TORRENTSxPEERS`, ignoring the flags cargo
/// passes to bench binaries.
fn shape() -> (u32, u32) {
    std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .find_map(|arg| {
            let (t, p) = arg.split_once('x')?;
            Some((t.parse().ok()?, p.parse().ok()?))
        })
        .unwrap_or(DEFAULT_SHAPE)
}

fn main() {
    let (torrents, peers_per_torrent) = shape();
    let mut rng = StdRng::seed_from_u64(2024);
    let mut out = AnnounceOutput::default();
    let info_hashes: Vec<InfoHash> = (0..torrents)
        .map(|_| {
            let mut bytes = [0u8; 20];
            rng.fill_bytes(&mut bytes);
            InfoHash(bytes)
        })
        .collect();

    let before = resident_bytes();
    let store = MemoryStore::new(StoreConfig::default());
    let started = Instant::now();
    let mut address = 0x0A00_0000u32; // 10.0.0.0 onwards: every peer its own IPv4 address
    for info_hash in &info_hashes {
        for n in 0..peers_per_torrent {
            address += 1;
            let mut peer_id = [0u8; 20];
            rng.fill_bytes(&mut peer_id);
            let input = AnnounceInput {
                info_hash: *info_hash,
                peer_id: PeerId(peer_id),
                addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(address), 6881)),
                event: AnnounceEvent::Started,
                left: if n.is_multiple_of(5) { 0 } else { 1 << 20 },
                numwant: None,
                peer_ids: false,
            };
            if let Err(error) = store.announce(&input, Timestamp::from_secs(0), &mut rng, &mut out)
            {
                eprintln!("announce failed: {error}");
                std::process::exit(1);
            }
        }
    }
    let elapsed = started.elapsed();
    let after = resident_bytes();
    let stats = match store.stats() {
        Ok(stats) => stats,
        Err(error) => {
            eprintln!("stats failed: {error}");
            std::process::exit(1);
        }
    };

    let grown = after.saturating_sub(before);
    let peers = stats.peers.max(1) as u64;
    println!("swarm store resident memory ({torrents} torrents x {peers_per_torrent} IPv4 peers)");
    println!("| measure                 |        value |");
    println!("|-------------------------|-------------:|");
    println!("| torrents                | {:>12} |", stats.torrents);
    println!("| peers                   | {:>12} |", stats.peers);
    println!("| seeders                 | {:>12} |", stats.seeders);
    println!("| RSS before (bytes)      | {before:>12} |");
    println!("| RSS after (bytes)       | {after:>12} |");
    println!("| RSS grown (bytes)       | {grown:>12} |");
    println!(
        "| bytes per peer          | {:>12.1} |",
        grown as f64 / peers as f64
    );
    println!("| target bytes per peer   | {:>12} |", "< 150");
    println!(
        "| announces/s (1 thread)  | {:>12.0} |",
        peers as f64 / elapsed.as_secs_f64()
    );
    // Keep the store alive until after the last measurement.
    drop(store);
}
