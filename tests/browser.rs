//! The browser test: the demo's sites, loaded in headless Chromium.
//!
//! What it guards is the whole point of the system: a visitor's browser loads a site's page,
//! and the share button on it arrives from the swarm as HTML, CSS, JS and an SVG, rendered
//! and running, never as a `.torrent` download. So it checks, in a real browser: the button
//! element is in the DOM, its script ran (the marker `window.swarmShareButton.ready`), its
//! stylesheet and icon loaded, a click posts the page's URL to the site's share endpoint, and
//! no response the page got was a torrent (by the browser's resource list, fetched again
//! from here to read each `Content-Type`, and by the site's own log of what it sent).
//!
//! Chromium is driven through chromedriver's W3C WebDriver HTTP API. The few commands used
//! (session, navigate, execute script, screenshot) are plain JSON over HTTP, so they are
//! spoken here with `reqwest` rather than through a WebDriver crate (the ones available
//! pull in a second TLS stack with a C build). The test starts Chromium itself, with the
//! flags this machine needs and a fresh profile, and lets chromedriver attach to it, so both
//! processes are its own children and are stopped by PID whatever happens.
//!
//! Chromium missing: the test fails when `CI` is set and prints `SKIPPED` otherwise.
//!
//! `SWARMCDN_SCREENSHOT=docs/demo.png cargo test -p swarmcdn --test browser` also saves the
//! screenshot the README shows.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use swarmcdn::demo::{Demo, DemoOptions};

/// The flags Chromium needs here (no sandbox as root, no GPU, no calls to outside hosts).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
];

/// The longest any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(60);

/// The media type a browser must never receive.
const TORRENT_TYPE: &str = "application/x-bittorrent";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A child process that is killed (by its PID) and reaped when dropped.
struct ChildGuard {
    what: &'static str,
    child: Child,
}

impl ChildGuard {
    /// Kills the process and waits for it; an error if it had already died.
    fn stop(mut self) -> Result<()> {
        let running = self.child.try_wait()?.is_none();
        self.child.kill().ok();
        self.child.wait()?;
        ensure!(running, "{} exited before the test stopped it", self.what);
        Ok(())
    }

    /// Waits for the process to exit by itself; kills it and fails if it does not in time.
    async fn exited_within(mut self, limit: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        while self.child.try_wait()?.is_none() {
            if tokio::time::Instant::now() >= deadline {
                self.child.kill().ok();
                self.child.wait()?;
                bail!("{} did not exit when asked", self.what);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Chromium on a fresh profile with a DevTools port the OS picks; returns it and the
/// DevTools address chromedriver attaches to.
async fn start_chromium(binary: &Path, profile: &Path, log: &Path) -> Result<(ChildGuard, String)> {
    let log = std::fs::File::create(log)?;
    let child = Command::new(binary)
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--remote-debugging-port=0")
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut guard = ChildGuard {
        what: "chromium",
        child,
    };
    // Chromium writes the port it bound into the profile once DevTools listens.
    let port_file = profile.join("DevToolsActivePort");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && let Some(port) = text
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<u16>().ok())
        {
            return Ok((guard, format!("127.0.0.1:{port}")));
        }
        if let Some(status) = guard.child.try_wait()? {
            bail!("chromium exited at start ({status})");
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "chromium did not open its DevTools port"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts chromedriver on a port the OS picks; returns it and its base URL.
async fn start_chromedriver(binary: &Path) -> Result<(ChildGuard, String)> {
    let mut child = Command::new(binary)
        .arg("--port=0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    // Its error output is read (so it never blocks) and kept for the failure message.
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if text.len() < 4096 {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    });
    let stdout = child.stdout.take().context("no stdout")?;
    let guard = ChildGuard {
        what: "chromedriver",
        child,
    };
    // It says "... started successfully on port N."; the reader then drains the rest of its
    // output until it exits, so it never blocks on a full pipe.
    let (port_tx, port_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut port_tx = Some(port_tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let port = line
                .split("started successfully on port ")
                .nth(1)
                .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok());
            if let Some(port) = port
                && let Some(tx) = port_tx.take()
            {
                let _ = tx.send(port);
            }
        }
    });
    let port = tokio::time::timeout(WAIT, port_rx)
        .await
        .context("chromedriver did not say its port")?
        .map_err(|_| {
            let said = if errors.is_finished() {
                errors.join().unwrap_or_default()
            } else {
                String::new()
            };
            anyhow!("chromedriver exited at start: {}", said.trim())
        })?;
    Ok((guard, format!("http://127.0.0.1:{port}")))
}

/// A WebDriver session: the handful of W3C commands the test needs.
struct WebDriver {
    http: reqwest::Client,
    session: String,
}

impl WebDriver {
    async fn call(
        http: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("WebDriver {url}"))?;
        let status = response.status();
        let mut body: Value = response
            .json()
            .await
            .context("WebDriver answered no JSON")?;
        let value = body["value"].take();
        ensure!(status.is_success(), "WebDriver {url}: {status}: {value}");
        Ok(value)
    }

    /// A session on the Chromium whose DevTools listen at `debugger`.
    async fn attach(base: &str, debugger: &str) -> Result<Self> {
        let http = reqwest::Client::builder().timeout(WAIT).build()?;
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "debuggerAddress": debugger },
        }}});
        let value = Self::call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/session"),
            Some(capabilities),
        )
        .await?;
        let id = value["sessionId"].as_str().context("no session id")?;
        Ok(WebDriver {
            http,
            session: format!("{base}/session/{id}"),
        })
    }

    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        Self::call(&self.http, method, &format!("{}{path}", self.session), body).await
    }

    async fn navigate(&self, url: &str) -> Result<()> {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await?;
        Ok(())
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    async fn run(&self, script: &str) -> Result<Value> {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Runs `script` until it returns `true`, for at most [`WAIT`].
    async fn wait_for(&self, what: &str, script: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if self.run(script).await? == Value::Bool(true) {
                return Ok(());
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self) -> Result<Vec<u8>> {
        let value = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await?;
        let text = value.as_str().context("the screenshot is not a string")?;
        Ok(data_encoding::BASE64.decode(text.as_bytes())?)
    }
}

/// Whether a response (by URL and type) would hand the browser a torrent.
fn is_torrent(url: &str, content_type: &str) -> bool {
    url.split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase()
        .ends_with(".torrent")
        || content_type
            .trim()
            .to_ascii_lowercase()
            .starts_with(TORRENT_TYPE)
}

/// Loads site `index`'s page and checks what the module docs list.
async fn check_site(driver: &WebDriver, demo: &Demo, index: usize) -> Result<()> {
    let url = &demo.site_urls()[index];
    driver.navigate(url).await?;
    driver
        .wait_for(
            "the share button's marker",
            "return document.readyState === 'complete' && !!window.swarmShareButton \
             && window.swarmShareButton.ready === true;",
        )
        .await?;

    let dom = driver
        .run(
            "const root = document.querySelector('.swarm-share');
             const button = root && root.querySelector('button.swarm-share__button');
             const icon = root && root.querySelector('img.swarm-share__icon');
             return {
               buttons: document.querySelectorAll('.swarm-share button.swarm-share__button').length,
               ready: root ? root.dataset.swarmShareReady : null,
               label: button ? button.textContent.trim() : null,
               radius: button ? getComputedStyle(button).borderTopLeftRadius : null,
               icon: icon ? icon.complete && icon.naturalWidth > 0 : false,
             };",
        )
        .await?;
    ensure!(dom["buttons"] == 1, "one share button in the DOM: {dom}");
    ensure!(
        dom["ready"] == "true",
        "the script rendered the button: {dom}"
    );
    ensure!(
        dom["label"] == "Share this page",
        "the button's label: {dom}"
    );
    ensure!(
        dom["radius"] != "0px",
        "the button's stylesheet applied: {dom}"
    );
    ensure!(dom["icon"] == true, "the icon loaded: {dom}");

    // Every response the page got, by the browser's own list, fetched again to read its type.
    let entries = driver
        .run(
            "return performance.getEntriesByType('resource').map(e => ({
               name: e.name, contentType: e.contentType || '', status: e.responseStatus || 0 }));",
        )
        .await?;
    let entries = entries
        .as_array()
        .context("the resource list is not a list")?;
    for file in ["button.js", "button.css", "icons/share.svg"] {
        let wanted = format!("{url}widgets/share-button@{}/{file}", demo.version());
        ensure!(
            entries.iter().any(|e| e["name"] == wanted.as_str()),
            "the page loaded {wanted}: {entries:?}"
        );
    }
    let http = reqwest::Client::new();
    let mut urls: Vec<String> = entries
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect();
    urls.push(url.clone());
    for entry in entries {
        let content_type = entry["contentType"].as_str().unwrap_or_default();
        let name = entry["name"].as_str().unwrap_or_default();
        ensure!(
            !is_torrent(name, content_type),
            "the browser got a torrent: {entry}"
        );
    }
    for resource in &urls {
        let response = http.get(resource).send().await?;
        // The browser may ask for more than the page names (`/favicon.ico`, a 404 here).
        ensure!(
            response.status().is_success() || !resource.contains("/widgets/"),
            "{resource}: {}",
            response.status()
        );
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        ensure!(!content_type.is_empty(), "{resource} has no content type");
        ensure!(
            !is_torrent(resource, &content_type),
            "{resource} is a torrent ({content_type})"
        );
    }

    // And by the site's own log of what it sent.
    let served = demo.served(index);
    ensure!(
        served.iter().any(|s| s.path
            == format!("/widgets/share-button@{}/button.js", demo.version())
            && s.status == 200
            && s.content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("text/javascript"))),
        "the site served the script: {served:?}"
    );
    for response in &served {
        let content_type = response.content_type.as_deref().unwrap_or_default();
        ensure!(
            !is_torrent(&response.path, content_type),
            "the site sent a torrent: {response:?}"
        );
    }
    Ok(())
}

/// Clicks the button and waits for the count the share endpoint answers.
async fn check_share(driver: &WebDriver, demo: &Demo, index: usize) -> Result<()> {
    let before = demo.stats().await[index].shares;
    driver
        .run("document.querySelector('.swarm-share__button').click(); return true;")
        .await?;
    driver
        .wait_for(
            "the share count",
            "const count = document.querySelector('.swarm-share__count');
             return !!count && !count.hidden && count.textContent === '1';",
        )
        .await?;
    let after = demo.stats().await[index].shares;
    ensure!(
        after == before + 1,
        "the site counted the share: {before} then {after}"
    );
    Ok(())
}

async fn browse(demo: &Demo, chromium: &Path, chromedriver: &Path) -> Result<()> {
    let profile = tempfile::tempdir()?;
    let logs = tempfile::tempdir()?;
    let (chromium, debugger) =
        start_chromium(chromium, profile.path(), &logs.path().join("chromium.log")).await?;
    // chromedriver picks its IPv4 port, then binds the same number on IPv6; on a busy
    // machine that number is sometimes taken there and it exits at start. Try again.
    let mut attempts = 0;
    let (chromedriver, base) = loop {
        attempts += 1;
        match start_chromedriver(chromedriver).await {
            Ok(started) => break started,
            Err(error) if attempts < 3 => eprintln!("chromedriver attempt {attempts}: {error:#}"),
            Err(error) => return Err(error),
        }
    };
    let driver = WebDriver::attach(&base, &debugger).await?;
    driver
        .command(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": 960, "height": 720 })),
        )
        .await?;

    for index in 0..demo.site_urls().len() {
        check_site(&driver, demo, index).await?;
    }
    // The screenshot shows site A as a visitor first sees it.
    driver.navigate(&demo.site_urls()[0]).await?;
    driver
        .wait_for(
            "the share button",
            "return !!(window.swarmShareButton && window.swarmShareButton.ready);",
        )
        .await?;
    let png = driver.screenshot().await?;
    ensure!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG"
    );
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo.png"),
        &png,
    )?;
    if let Some(path) = std::env::var_os("SWARMCDN_SCREENSHOT") {
        std::fs::write(&path, &png)?;
        println!("screenshot saved to {}", Path::new(&path).display());
    }
    check_share(&driver, demo, 0).await?;

    // Chromium closes itself when asked over DevTools, helper processes included; the
    // session ends with it. The answer to the command itself may be lost as the browser goes
    // ("target frame detached"): what counts is that Chromium exits.
    let closed = driver
        .command(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({ "cmd": "Browser.close", "params": {} })),
        )
        .await;
    chromium
        .exited_within(WAIT)
        .await
        .with_context(|| format!("Chromium did not exit after Browser.close ({closed:?})"))?;
    chromedriver.stop()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_button_renders_in_chromium_and_no_torrent_reaches_the_browser() -> Result<()> {
    let chromium = find_program(&["chromium", "chromium-browser"]);
    let chromedriver = find_program(&["chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        if std::env::var_os("CI").is_some() {
            bail!("chromium and chromedriver are needed (Debian: chromium chromium-driver)");
        }
        println!("SKIPPED: chromium or chromedriver not found (Debian: chromium chromium-driver)");
        return Ok(());
    };

    let demo = tokio::time::timeout(WAIT * 2, Demo::start(DemoOptions::default()))
        .await
        .map_err(|_| anyhow!("the demo did not start in time"))??;
    let browsed = tokio::time::timeout(WAIT * 3, browse(&demo, &chromium, &chromedriver))
        .await
        .map_err(|_| anyhow!("the browser checks did not finish in time"));
    // Stop the demo whatever happened in the browser.
    let stopped = tokio::time::timeout(WAIT, demo.shutdown()).await;
    browsed??;
    stopped
        .map_err(|_| anyhow!("the demo did not stop in time"))?
        .context("the demo did not stop cleanly")?;
    Ok(())
}
