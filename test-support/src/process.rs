//! A client process owned by a test and stopped by PID, whatever happens to the test.
//!
//! Tests that start programs must stop them also when an assertion panics, or a failing run
//! leaves seeders holding ports for minutes. So the guard stops its child on drop: SIGTERM
//! first (the harness scripts trap it and stop their client gracefully, which matters for
//! daemons that would otherwise outlive the script), SIGKILL after a grace period.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a process may take to exit after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(30);
/// Lines of the log [`ClientProcess::tail`] returns.
const TAIL_LINES: usize = 25;
/// Poll interval of the waits.
const POLL: Duration = Duration::from_millis(200);

/// A child process (usually a harness script) with stdout and stderr in a log file, stopped
/// by PID when dropped.
#[derive(Debug)]
pub struct ClientProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ClientProcess {
    /// Starts `command` with stdin closed and stdout + stderr appended to `log` (created or
    /// truncated). `name` appears in messages. Panics if the program cannot be started.
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// The process id, or `None` once the process has been reaped (exited and waited for,
    /// or stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// Waits for the process to exit by itself, polling without blocking a runtime worker;
    /// `None` on timeout (it is then still running) or when it was already reaped.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_reap() {
                return status;
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `Some(status)` when the wait is over: `Some(Some(exit))` if it exited now, `Some(None)`
    /// if there is no child any more; `None` while it runs.
    fn try_reap(&mut self) -> Option<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Some(None);
        };
        let status = child.try_wait().unwrap()?;
        self.child = None;
        Some(Some(status))
    }

    /// The last lines of the process's log, for failure messages.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }

    /// Stops the process by PID (SIGTERM, then SIGKILL after 30 s) and reaps it. Does nothing
    /// if it already exited. Also done on drop.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        crate::say(&format!(
            "{} ignored SIGTERM for {TERM_GRACE:?}; killing it",
            self.name
        ));
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_ends_a_running_process_and_drop_after_exit_is_quiet() {
        let dir = std::env::temp_dir().join(format!("swarmcdn-ts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", "echo started; exec sleep 60"]);
        let mut process = ClientProcess::spawn("sleeper", command, dir.join("sleep.log"));
        let pid = process.pid().unwrap();
        assert!(process.is_running());
        assert_eq!(process.wait_exit(Duration::from_millis(300)).await, None);
        process.stop();
        assert!(!process.is_running());
        assert_eq!(process.pid(), None);
        // The PID is gone (reaped), not merely signalled.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert!(process.tail().contains("started"));

        let mut command = Command::new("sh");
        command.args(["-c", "exit 3"]);
        let mut quick = ClientProcess::spawn("quick", command, dir.join("quick.log"));
        let status = quick.wait_exit(Duration::from_secs(30)).await.unwrap();
        assert_eq!(status.code(), Some(3));
        drop(quick);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
