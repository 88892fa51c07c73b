//! `ClientConfig::get_timeout` bounds a whole `get` or `add_*`: the caller gets a typed
//! `Timeout`, nothing partial is served, and the download goes on in the background so a
//! later `get` succeeds.

use std::time::Duration;

use swarmcdn_client::{AddError, GetError};
use swarmcdn_proto::magnet::Magnet;
use tokio::io::AsyncReadExt;

use crate::common::*;

/// The `get` timeout of these tests: ample for a tracker round trip, the metainfo and a
/// session start on a busy machine, while the download cannot finish at all (its only
/// source is busy or silent), so the timeout always fires.
const GET_TIMEOUT: Duration = Duration::from_secs(2);

/// The only source (a web seed) answers `503` at first: the `get` gives up after the
/// timeout, the session keeps going without a lease, and once the web seed serves again
/// the release completes and the next `get` returns it.
#[tokio::test]
async fn a_get_that_takes_too_long_times_out_and_the_download_goes_on() {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let release = publish_sized(&tracker, &web, "slow-release", 200 * 1024, 64 * 1024).await;
    web.set_mode(SeedMode::Busy);
    let client = test_client()
        .tracker(tracker.url())
        .get_timeout(GET_TIMEOUT)
        .build()
        .await
        .unwrap();

    let result = tokio::time::timeout(WAIT, client.get("slow-release"))
        .await
        .expect("the get timeout did not fire");
    assert!(
        matches!(result, Err(GetError::Timeout { after }) if after == GET_TIMEOUT),
        "{result:?}"
    );
    // The download was not dropped: it completes in the background once the seed serves.
    let running = client
        .torrent(release.info_hash())
        .await
        .expect("the session goes on after the timeout");
    assert!(!running.progress().complete);
    web.set_mode(SeedMode::Good);
    wait_progress(&running.watch(), "background completion", |p| p.complete).await;
    let got = get_within(&client, "slow-release").await;
    release.assert_served_by(&got).await;
    drop((got, running));
    shutdown_clean(client).await;
    web.stop().await;
}

/// A magnet whose only peer accepts the connection and never answers: `add_magnet` gives
/// up after `get_timeout`, long before the metadata timeout.
#[tokio::test]
async fn add_magnet_times_out_on_a_silent_peer() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let release = release_of_size("silent-magnet", 10 * 1024, 16 * 1024, None, Vec::new());
    let mut builder = test_client()
        .bootstrap_peer(silent.local_addr().unwrap())
        .get_timeout(GET_TIMEOUT);
    let mut config = builder.current_config().clone();
    config.metadata_timeout = Duration::from_secs(600);
    builder = builder.config(config);
    let client = builder.build().await.unwrap();
    let result = tokio::time::timeout(
        WAIT,
        client.add_magnet(&Magnet::new(release.info_hash()).to_uri()),
    )
    .await
    .expect("the get timeout did not fire");
    assert!(
        matches!(result, Err(AddError::Timeout { .. })),
        "{result:?}"
    );
    assert!(client.torrent(release.info_hash()).await.is_none());
    shutdown_clean(client).await;
    drop(silent);
}

/// A client whose one tracker takes the connection and never answers (tracker and `get`
/// timeouts of 600 s), a `get` of it in a task, and the tracker's side of that `get`'s
/// lookup once it has come.
async fn get_stuck_in_its_lookup() -> (
    swarmcdn_client::Client,
    tokio::task::JoinHandle<Result<swarmcdn_client::Release, GetError>>,
    tokio::net::TcpStream,
) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut builder = test_client().tracker(format!("http://{}", silent.local_addr().unwrap()));
    let mut config = builder.current_config().clone();
    config.tracker_timeout = Duration::from_secs(600);
    config.get_timeout = Duration::from_secs(600);
    builder = builder.config(config);
    let client = builder.build().await.unwrap();
    let getting = tokio::spawn({
        let client = client.clone();
        async move { client.get("never-answered").await }
    });
    let (lookup, _) = tokio::time::timeout(WAIT, silent.accept())
        .await
        .expect("no lookup came")
        .unwrap();
    (client, getting, lookup)
}

/// Reads `lookup` to its end: the client closed it.
async fn assert_closed(mut lookup: tokio::net::TcpStream, what: &str) {
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, lookup.read_to_end(&mut rest))
        .await
        .expect(what)
        .unwrap();
}

/// A `get` its caller drops (here by aborting the caller's task) ends with it: the lookup
/// it was waiting on is abandoned at once, not left to run to the tracker timeout in the
/// background.
#[tokio::test]
async fn a_get_dropped_by_its_caller_stops_its_lookup() {
    let (client, getting, lookup) = get_stuck_in_its_lookup().await;
    getting.abort();
    assert!(getting.await.unwrap_err().is_cancelled());
    assert_closed(lookup, "the dropped get's lookup is still waiting").await;
    shutdown_clean(client).await;
}

/// `shutdown` ends a `get` still under way (it fails with `Shutdown`, its lookup closed)
/// and returns once it has ended, instead of leaving it to its 600 s tracker timeout.
#[tokio::test]
async fn shutdown_ends_a_get_under_way() {
    let (client, getting, lookup) = get_stuck_in_its_lookup().await;
    tokio::time::timeout(WAIT, client.shutdown())
        .await
        .expect("shutdown waited for the get's lookup");
    assert_eq!(client.task_count(), 0);
    let result = tokio::time::timeout(WAIT, getting)
        .await
        .expect("the get goes on after shutdown")
        .unwrap();
    assert!(matches!(result, Err(GetError::Shutdown)), "{result:?}");
    assert_closed(lookup, "the get's lookup is still open").await;
    // And a get after shutdown says so at once.
    assert!(matches!(
        client.get("never-answered").await,
        Err(GetError::Shutdown)
    ));
}
