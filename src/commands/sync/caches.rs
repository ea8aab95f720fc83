//! What Sync keeps between requests, in one place on the [`Gateway`](crate::commands::Gateway):
//! listings of paged folders, read-ahead pages, and the last request stored per device.

use dashmap::DashMap;

use super::prefetch::Prefetches;
use super::server_changes::Listings;

#[derive(Default)]
pub struct SyncCaches {
    /// Folder UID listings kept between the pages of a paged Sync.
    pub listings: Listings,
    /// Next pages of paged Syncs, read ahead in the background.
    pub prefetch: Prefetches,
    /// The Sync request last stored per (user, device), to skip storing it again unchanged.
    pub requests: DashMap<String, Vec<u8>>,
}

impl SyncCaches {
    /// Drops read-aheads nobody came back for.
    pub fn sweep(&self) {
        self.prefetch.sweep();
    }
}
