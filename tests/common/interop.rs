//! Driving real BitTorrent clients through the interop harness (`shared/interop/`, beside
//! the repository): finding it, requiring the clients, and running `fetch-with.sh` as a
//! child process stopped by PID.
//!
//! A missing tool fails the test when `CI` is set (naming the Debian package to install) and
//! skips it loudly otherwise.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A command the harness needs and the Debian package that provides it.
pub(crate) type Tool = (&'static str, &'static str);

/// What every harness script needs.
const BASE_TOOLS: &[Tool] = &[
    ("bash", "bash"),
    ("python3", "python3"),
    ("ss", "iproute2"),
    ("stdbuf", "coreutils"),
    ("timeout", "coreutils"),
    ("sha256sum", "coreutils"),
];

/// The commands one client of the harness (its `CLIENT` name) needs.
pub(crate) fn client_tools(client: &str) -> &'static [Tool] {
    match client {
        "aria2" => &[("aria2c", "aria2")],
        "transmission-cli" => &[("transmission-cli", "transmission-cli")],
        _ => panic!("no tool list for client {client}"),
    }
}

/// The interop harness: `$SWARMCDN_INTEROP`, else the first `shared/interop` found in a
/// folder above the workspace (the repository's parent in CI; further up for a worktree).
pub(crate) fn interop_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWARMCDN_INTEROP") {
        return PathBuf::from(dir);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    workspace
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/interop"))
        .find(|dir| dir.join("fetch-with.sh").is_file())
        .unwrap_or_else(|| workspace.join("../shared/interop"))
}

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
}

/// Whether the test can run: the harness and every tool for `clients` present, or (outside
/// CI) a loud skip. In CI a missing tool fails the test.
pub(crate) fn require_clients(test: &str, clients: &[&str]) -> bool {
    let mut missing: Vec<String> = BASE_TOOLS
        .iter()
        .chain(clients.iter().flat_map(|c| client_tools(c)))
        .filter(|(command, _)| !on_path(command))
        .map(|(command, package)| format!("`{command}` (Debian package {package})"))
        .collect();
    let harness = interop_dir();
    if !harness.join("fetch-with.sh").is_file() {
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
    // Straight to stderr: the test harness hides `eprintln!` of a passing test, and a skip
    // must be seen.
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {message} ***\n");
    false
}

/// A peer port `p` with `p + 1000` (the harness's control port) also free.
pub(crate) fn free_port_pair() -> u16 {
    loop {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        if port > 64_000 {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 1000)).is_ok() {
            return port;
        }
    }
}

/// A harness script run as a child process, stopped by PID when dropped: SIGTERM (the
/// scripts then stop their client), then SIGKILL if it is still there after a grace period.
pub(crate) struct Script {
    child: Option<Child>,
    log: PathBuf,
}

impl Script {
    /// Starts `bash <harness>/<script> <args>` with `env`, its output in `log`.
    pub(crate) fn spawn(script: &str, args: &[&str], env: &[(&str, &str)], log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut command = Command::new("bash");
        command
            .arg(interop_dir().join(script))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {script}: {e}"));
        Self {
            child: Some(child),
            log,
        }
    }

    /// Waits for the script to exit by itself; `None` on timeout (it is then still running).
    pub(crate) async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The script's output so far.
    pub(crate) fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..300 {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.stop();
    }
}
