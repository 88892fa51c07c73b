//! placeholder
pub mod config;
pub mod peer;
pub mod scheduler;
pub mod session;
pub mod storage;
pub mod tracker_client;
pub mod webseed;

pub use config::ClientConfig;
pub use session::{DownloadError, PeerInfo, Progress, SessionStats};
