//! Finding the interop harness and the client programs it drives, and building the command
//! lines of its `seed-with.sh` / `fetch-with.sh` scripts.
//!
//! The harness lives outside the repository (`<repo>/../shared/interop`), so a clone without
//! it, or a machine without a client, must not turn the whole test run red for a developer:
//! outside CI such a test prints a loud SKIPPED and passes. Under CI (env `CI` set) the same
//! absence is a failure that names the Debian package to install, so a broken CI image cannot
//! silently skip the interop coverage.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A program a test needs: the command looked up on `PATH` and the Debian package that
/// provides it (named in the SKIPPED or failure message).
pub type Tool = (&'static str, &'static str);

/// Commands the harness scripts themselves need, whatever the client.
pub const BASE_TOOLS: &[Tool] = &[
    ("bash", "bash"),
    ("python3", "python3"),
    ("curl", "curl"),
    ("ss", "iproute2"),
    ("stdbuf", "coreutils"),
    ("timeout", "coreutils"),
];

/// The programs behind one harness client name (the `CLIENT` argument of the scripts).
///
/// Known names: `aria2`, `transmission` (daemon + remote), `transmission-cli`,
/// `qbittorrent`. Any other name panics: it is a typo in a test.
pub fn client_tools(client: &str) -> &'static [Tool] {
    match client {
        "aria2" => &[("aria2c", "aria2")],
        "transmission" => &[
            ("transmission-daemon", "transmission-daemon"),
            ("transmission-remote", "transmission-cli"),
        ],
        "transmission-cli" => &[("transmission-cli", "transmission-cli")],
        "qbittorrent" => &[("qbittorrent-nox", "qbittorrent-nox")],
        other => panic!("unknown interop client {other:?}"),
    }
}

/// The interop harness folder: `$SWARMCDN_INTEROP` when set, else `shared/interop` beside
/// the repository (every workspace member sits one level below the repository root).
pub fn interop_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWARMCDN_INTEROP") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/interop")
}

/// Whether `command` is an existing file in one of the `PATH` folders.
pub fn on_path(command: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
}

/// Whether the test named `test` can run: the harness, [`BASE_TOOLS`] and every one of
/// `tools` present.
///
/// When something is missing: panics (naming what and its package) if env `CI` is set;
/// otherwise prints `*** SKIPPED real-client test ... ***` straight to stderr and returns
/// `false`, and the caller returns early.
pub fn tools_present(test: &str, tools: &[Tool]) -> bool {
    let harness = interop_dir();
    let mut missing: Vec<String> = BASE_TOOLS
        .iter()
        .chain(tools)
        .filter(|(command, _)| !on_path(command))
        .map(|(command, package)| format!("`{command}` (Debian package {package})"))
        .collect();
    if !harness.join("seed-with.sh").is_file() {
        missing.push(format!(
            "the interop harness at {} (set SWARMCDN_INTEROP to its folder)",
            harness.display()
        ));
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test}: missing {}", missing.join(", "));
    if std::env::var_os("CI").is_some() {
        panic!(
            "{message}; .ci/run installs the packages, and CI runs with shared/ beside the clone"
        );
    }
    crate::say(&format!("\n*** SKIPPED real-client test {message} ***\n"));
    false
}

/// [`tools_present`] for harness client names: `require_clients("t", &["aria2",
/// "transmission"])` checks aria2c, transmission-daemon and transmission-remote.
pub fn require_clients(test: &str, clients: &[&str]) -> bool {
    let tools: Vec<Tool> = clients
        .iter()
        .flat_map(|client| client_tools(client).iter().copied())
        .collect();
    tools_present(test, &tools)
}

/// A free peer port `p` on 127.0.0.1 whose control port `p + 1000` (the harness's default
/// `CTRL_PORT`) is free too, with neither clashing with a port in `avoid` (ports already
/// handed to other clients of the same test, whose control ports are `avoid + 1000`).
///
/// The ports are free when checked, not reserved: the client binds them moments later.
pub fn free_port_pair(avoid: &[u16]) -> u16 {
    loop {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        if port > 64_000
            || avoid
                .iter()
                .any(|a| a.abs_diff(port) == 0 || a.abs_diff(port) == 1000)
        {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 1000)).is_ok() {
            return port;
        }
    }
}

/// `bash seed-with.sh CLIENT TORRENT DATA_DIR PEER_PORT MAX_SECS`: seeds the data that
/// already exists at `data_dir/<torrent name>` until `max_secs` (a backstop; the test stops
/// it first) or SIGTERM.
///
/// Add harness variables with `.env(..)` before spawning, e.g. `READY_FILE` (written once
/// the client has checked its data and seeds; see [`crate::payload::wait_for_file`]) or
/// `REANNOUNCE_EVERY`.
pub fn seed_command(
    client: &str,
    torrent: &Path,
    data_dir: &Path,
    peer_port: u16,
    max_secs: u64,
) -> Command {
    harness_script(
        "seed-with.sh",
        [client.as_ref(), torrent.as_ref(), data_dir.as_ref()],
        [peer_port.into(), max_secs],
    )
}

/// `bash fetch-with.sh CLIENT TORRENT OUT_DIR TIMEOUT_SECS PEER_PORT`: downloads into
/// `out_dir/<torrent name>` and exits once complete (0), on a digest mismatch (3), on
/// timeout (124) or when the client died (1).
///
/// Set `EXPECT_SHA256` (see [`crate::payload::sha256_hex`]) with `.env(..)` to have the
/// harness check the bytes too.
pub fn fetch_command(
    client: &str,
    torrent: &Path,
    out_dir: &Path,
    timeout_secs: u64,
    peer_port: u16,
) -> Command {
    harness_script(
        "fetch-with.sh",
        [client.as_ref(), torrent.as_ref(), out_dir.as_ref()],
        [timeout_secs, peer_port.into()],
    )
}

/// `bash <harness>/SCRIPT CLIENT TORRENT DIR N M`: the argument shape both scripts share.
fn harness_script(script: &str, paths: [&std::ffi::OsStr; 3], numbers: [u64; 2]) -> Command {
    let mut command = Command::new("bash");
    command.arg(interop_dir().join(script)).args(paths);
    command.args(numbers.map(|n| n.to_string()));
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_pair_avoids_given_ports_and_their_control_ports() {
        let first = free_port_pair(&[]);
        let second = free_port_pair(&[first]);
        assert!(second != first && second.abs_diff(first) != 1000);
        assert!(second <= 64_000);
    }

    #[test]
    fn client_names_map_to_their_programs() {
        assert_eq!(client_tools("aria2"), &[("aria2c", "aria2")]);
        assert_eq!(client_tools("transmission").len(), 2);
        let command = seed_command("aria2", Path::new("t.torrent"), Path::new("d"), 7000, 9);
        let args: Vec<_> = command.get_args().map(|a| a.to_str().unwrap()).collect();
        assert!(args[0].ends_with("seed-with.sh"));
        assert_eq!(&args[1..], ["aria2", "t.torrent", "d", "7000", "9"]);
        let command = fetch_command("aria2", Path::new("t.torrent"), Path::new("o"), 120, 7001);
        let args: Vec<_> = command.get_args().map(|a| a.to_str().unwrap()).collect();
        assert!(args[0].ends_with("fetch-with.sh"));
        assert_eq!(&args[1..], ["aria2", "t.torrent", "o", "120", "7001"]);
    }
}
