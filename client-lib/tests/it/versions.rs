//! Which release `get` and `get_version` fetch, and the errors for names that do not exist.

use swarmcdn_client::GetError;
use swarmcdn_proto::manifest::Version;

use crate::common::*;

#[tokio::test]
async fn get_fetches_the_latest_version_and_get_version_an_exact_one() {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let files = |seed: u64| vec![("widget.js", random_bytes(seed, 30_000))];
    let old = publish_files(&tracker, &web, "versioned", "1.0.0", files(1), 16 * 1024).await;
    let new = publish_files(&tracker, &web, "versioned", "1.1.0", files(2), 16 * 1024).await;

    let client = test_client().tracker(tracker.url()).build().await.unwrap();
    let latest = client.get("versioned").await.unwrap();
    assert_eq!(latest.version(), &Version::new(1, 1, 0));
    new.assert_served_by(&latest).await;
    let exact = client
        .get_version("versioned", &Version::new(1, 0, 0))
        .await
        .unwrap();
    assert_eq!(exact.name(), "versioned");
    old.assert_served_by(&exact).await;

    match client.get("no-such-widget").await {
        Err(GetError::NotFound { name, version }) => {
            assert_eq!(name.as_str(), "no-such-widget");
            assert_eq!(version, None);
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        client
            .get_version("versioned", &Version::new(9, 0, 0))
            .await,
        Err(GetError::NotFound {
            version: Some(_),
            ..
        })
    ));
    assert!(matches!(
        client.get("Not A Name").await,
        Err(GetError::InvalidName(_))
    ));

    shutdown_clean(client).await;
    web.stop().await;
}
