//! The `swarmcdn-tracker` binary: configuration printing, publisher management, serving
//! until SIGTERM, and errors that say what to do.

use std::process::{Command, Output};
use std::time::Duration;

use swarmcdn_proto::manifest::{public_key_to_string, signing_key_from_seed};
use swarmcdn_tracker::config::Config;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_swarmcdn-tracker");

fn tracker(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SWARMCDN_TRACKER_CONFIG")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The 64-hex-digit token in a command's output.
fn token_in(text: &str) -> String {
    text.split_whitespace()
        .find(|word| word.len() == 64 && word.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no token in {text}"))
        .to_owned()
}

#[test]
fn print_config_prints_the_defaults_as_toml() {
    let output = tracker(&["--print-config"]);
    assert!(output.status.success());
    assert_eq!(
        Config::from_toml(&stdout(&output)).unwrap(),
        Config::default()
    );
    let help = tracker(&["--help"]);
    assert!(stdout(&help).contains("publisher add NAME --public-key HEX"));
}

#[test]
fn publishers_are_added_listed_rotated_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("registry.sqlite3");
    let db = db.to_str().unwrap();
    let key = public_key_to_string(&signing_key_from_seed([3; 32]).verifying_key());

    let added = tracker(&["publisher", "add", "acme", "--public-key", &key, "--db", db]);
    assert!(added.status.success(), "{}", stderr(&added));
    let token = token_in(&stdout(&added));
    assert!(stdout(&added).contains("Store this token"));
    let registry = swarmcdn_tracker::registry::Registry::open(db).unwrap();
    assert_eq!(registry.authenticate(&token).unwrap().unwrap().name, "acme");

    let listed = tracker(&["publisher", "list", "--db", db]);
    assert!(
        stdout(&listed).contains(&format!("acme\t{key}")),
        "{}",
        stdout(&listed)
    );

    let rotated = tracker(&["publisher", "rotate-token", "acme", "--db", db]);
    assert!(rotated.status.success());
    let new_token = token_in(&stdout(&rotated));
    assert_ne!(new_token, token);
    assert!(registry.authenticate(&token).unwrap().is_none());
    assert!(registry.authenticate(&new_token).unwrap().is_some());

    let removed = tracker(&["publisher", "remove", "acme", "--db", db]);
    assert!(removed.status.success());
    // It says when a running tracker notices (the default re-read period).
    assert!(
        stdout(&removed).contains("within 30 s"),
        "{}",
        stdout(&removed)
    );
    assert!(registry.list_publishers().unwrap().is_empty());

    // Errors exit non-zero and say what is wrong.
    let bad_key = tracker(&["publisher", "add", "x", "--public-key", "abcd", "--db", db]);
    assert!(!bad_key.status.success());
    assert!(
        stderr(&bad_key).contains("64 hex digits"),
        "{}",
        stderr(&bad_key)
    );
    let bad_name = tracker(&[
        "publisher",
        "add",
        "Bad Name",
        "--public-key",
        &key,
        "--db",
        db,
    ]);
    assert!(!bad_name.status.success());
    assert!(
        stderr(&bad_name).contains("invalid name"),
        "{}",
        stderr(&bad_name)
    );
    let missing = tracker(&["publisher", "remove", "nobody", "--db", db]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("no publisher"));
    let no_file = tracker(&["serve", "--config", "/nonexistent/tracker.toml"]);
    assert!(!no_file.status.success());
    assert!(
        stderr(&no_file).contains("--print-config"),
        "{}",
        stderr(&no_file)
    );
    let in_memory = tracker(&["publisher", "list", "--db", ":memory:"]);
    assert!(!in_memory.status.success());
    let nothing = tracker(&[]);
    assert!(!nothing.status.success());
    assert!(stderr(&nothing).contains("--help"));
}

#[tokio::test]
async fn serve_runs_until_sigterm_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("tracker.toml");
    let config = Config {
        database: dir.path().join("registry.sqlite3"),
        ..Config::default()
    };
    std::fs::write(&config_path, config.to_toml().unwrap()).unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line
                .split("address=")
                .nth(1)
                .filter(|_| line.contains("listening"))
            {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("the tracker exited without listening");
    })
    .await
    .expect("no `tracker listening` line within 20 s");
    let health = reqwest::get(format!("http://{address}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the tracker did not exit within 15 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(rest.contains("tracker stopped"), "{rest}");
}
