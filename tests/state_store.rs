//! `StateStore` conformance tests.
//!
//! The bodies in `conformance` are generic over `impl StateStore` so that
//! every implementation (SQLite and PostgreSQL) runs the same checks; each
//! expects a fresh, empty store (the two-handle bodies: two handles on one
//! fresh database, standing in for two gateway nodes). The `sqlite_*` and
//! `pg_*` tests at the bottom cover what is specific to each store.
//!
//! The PostgreSQL tests need a server: `deploy/dev/postgres.sh start` runs a
//! private one and prints its URL, which they read from `EAS_TEST_PG_URL`
//! (`deploy/dev/test.sh` does both). Each test creates its own database and
//! drops it afterwards.

use std::time::Duration;

use eas_gateway::state::cluster::MAX_EVENT_LEN;
use eas_gateway::state::{
    Cluster, CollectionView, DraftVersion, FolderEntry, LeaseKey, PgStore, PingParams, PolicyState,
    SendClaim, SendPhase, SqliteStore, StateStore, Store, StoreError, WipeState,
};
use tempfile::TempDir;

mod conformance {
    use super::*;
    use std::collections::HashSet;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn folder(id: &str, name: &str) -> FolderEntry {
        FolderEntry {
            server_id: id.into(),
            parent_id: "0".into(),
            display_name: name.into(),
            folder_type: 12,
        }
    }

    fn view(key: u32) -> CollectionView {
        CollectionView {
            key,
            uid_validity: 1_700_000_000,
            uids: format!("1:{key}"),
            highest_modseq: u64::from(key) * 10,
            flags: Some(format!("{key}:\\Seen")),
            filter_start: Some(1_600_000_000),
            more_available: key.is_multiple_of(2),
        }
    }

    async fn touch(store: &impl StateStore, user: &str, device: &str, now: i64) {
        store
            .touch_device(user, device, "iPhone", None, Some("16.1"), "Ping", now)
            .await
            .unwrap();
    }

    pub async fn device_lifecycle(store: impl StateStore) {
        assert_eq!(store.device("alice", "D1").await.unwrap(), None);

        let d = store
            .touch_device(
                "alice",
                "D1",
                "iPhone",
                Some("Apple-iPhone/1"),
                Some("14.1"),
                "Provision",
                100,
            )
            .await
            .unwrap();
        assert_eq!(d.user, "alice");
        assert_eq!(d.device_id, "D1");
        assert_eq!(d.device_type, "iPhone");
        assert_eq!(d.user_agent.as_deref(), Some("Apple-iPhone/1"));
        assert_eq!(d.protocol_version.as_deref(), Some("14.1"));
        assert_eq!(d.policy, PolicyState::None);
        assert_eq!(d.policy_key, 0);
        assert_eq!(d.policy_hash, None);
        assert!(d.device_info.is_empty());
        assert_eq!((d.first_seen, d.last_seen), (100, 100));
        assert_eq!(d.wipe, WipeState::None);
        assert_eq!(d.last_command.as_deref(), Some("Provision"));
        assert_eq!(store.device("alice", "D1").await.unwrap(), Some(d.clone()));

        // Update: absent agent / version keep the stored values.
        let d2 = store
            .touch_device("alice", "D1", "iPad", None, None, "Sync", 200)
            .await
            .unwrap();
        assert_eq!(d2.device_type, "iPad");
        assert_eq!(d2.user_agent.as_deref(), Some("Apple-iPhone/1"));
        assert_eq!(d2.protocol_version.as_deref(), Some("14.1"));
        assert_eq!((d2.first_seen, d2.last_seen), (100, 200));
        assert_eq!(d2.last_command.as_deref(), Some("Sync"));

        // A node with a lagging clock does not move last_seen backwards.
        let d3 = store
            .touch_device(
                "alice",
                "D1",
                "iPad",
                Some("Apple-iPad/2"),
                Some("16.1"),
                "Ping",
                150,
            )
            .await
            .unwrap();
        assert_eq!(d3.last_seen, 200);
        assert_eq!(d3.user_agent.as_deref(), Some("Apple-iPad/2"));
        assert_eq!(d3.protocol_version.as_deref(), Some("16.1"));
        assert_eq!(d3.last_command.as_deref(), Some("Ping"));

        // Listing order: user, then device id.
        touch(&store, "bob", "B1", 10).await;
        touch(&store, "alice", "A0", 10).await;
        let all: Vec<(String, String)> = store
            .devices(None)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.user, d.device_id))
            .collect();
        assert_eq!(
            all,
            vec![
                ("alice".into(), "A0".into()),
                ("alice".into(), "D1".into()),
                ("bob".into(), "B1".into()),
            ]
        );
        let alice = store.devices(Some("alice")).await.unwrap();
        assert_eq!(alice.len(), 2);
        assert_eq!(
            alice[1],
            store.device("alice", "D1").await.unwrap().unwrap()
        );
        assert!(store.devices(Some("nobody")).await.unwrap().is_empty());

        // Delete removes the device and everything hanging off it.
        store
            .set_device_info("alice", "D1", &[("Model".into(), "X".into())])
            .await
            .unwrap();
        store
            .commit_hierarchy("alice", "D1", 1, &[folder("1", "Inbox")])
            .await
            .unwrap();
        store
            .commit_collection("alice", "D1", "1", &view(1), Some(b"opts"))
            .await
            .unwrap();
        store
            .set_cached_sync_request("alice", "D1", Some(b"req"))
            .await
            .unwrap();
        assert!(store.delete_device("alice", "D1").await.unwrap());
        assert!(!store.delete_device("alice", "D1").await.unwrap());
        assert_eq!(store.device("alice", "D1").await.unwrap(), None);
        assert_eq!(store.hierarchy("alice", "D1").await.unwrap(), None);
        assert_eq!(
            store.collection_state("alice", "D1", "1").await.unwrap(),
            None
        );
        assert_eq!(
            store.cached_sync_request("alice", "D1").await.unwrap(),
            None
        );
        assert_eq!(store.devices(Some("alice")).await.unwrap().len(), 1);

        // Seen again: a brand-new record.
        let again = store
            .touch_device("alice", "D1", "iPhone", None, None, "FolderSync", 500)
            .await
            .unwrap();
        assert_eq!((again.first_seen, again.last_seen), (500, 500));
        assert!(again.device_info.is_empty());
        assert_eq!(again.user_agent, None);
    }

    pub async fn policy(store: impl StateStore) {
        assert_eq!(
            store
                .set_policy("alice", "D1", PolicyState::Pending, 7, None)
                .await,
            Err(StoreError::DeviceNotFound)
        );
        touch(&store, "alice", "D1", 1).await;

        store
            .set_policy("alice", "D1", PolicyState::Pending, 1234, None)
            .await
            .unwrap();
        let d = store.device("alice", "D1").await.unwrap().unwrap();
        assert_eq!(
            (d.policy, d.policy_key, d.policy_hash),
            (PolicyState::Pending, 1234, None)
        );

        store
            .set_policy(
                "alice",
                "D1",
                PolicyState::Provisioned,
                u32::MAX,
                Some("sha256:ab"),
            )
            .await
            .unwrap();
        let d = store.device("alice", "D1").await.unwrap().unwrap();
        assert_eq!(d.policy, PolicyState::Provisioned);
        assert_eq!(d.policy_key, u32::MAX);
        assert_eq!(d.policy_hash.as_deref(), Some("sha256:ab"));

        // Touching does not disturb provisioning.
        let d = store
            .touch_device("alice", "D1", "iPhone", None, None, "Sync", 2)
            .await
            .unwrap();
        assert_eq!(d.policy, PolicyState::Provisioned);

        store
            .set_policy("alice", "D1", PolicyState::None, 0, None)
            .await
            .unwrap();
        let d = store.device("alice", "D1").await.unwrap().unwrap();
        assert_eq!(
            (d.policy, d.policy_key, d.policy_hash),
            (PolicyState::None, 0, None)
        );
    }

    pub async fn device_info_and_wipe(store: impl StateStore) {
        assert_eq!(
            store.set_device_info("alice", "D1", &[]).await,
            Err(StoreError::DeviceNotFound)
        );
        assert_eq!(
            store.set_wipe("alice", "D1", WipeState::Requested).await,
            Err(StoreError::DeviceNotFound)
        );
        touch(&store, "alice", "D1", 1).await;

        let info: Vec<(String, String)> = [
            ("Model", "iPhone15,2"),
            ("IMEI", "3500000000000"),
            ("FriendlyName", "Alice's phone"),
            ("OS", "iOS 17.1"),
            ("OSLanguage", "de-CH"),
            ("PhoneNumber", "+41 79 000 00 00"),
            ("UserAgent", "Apple-iPhone15C2/2101.9"),
            ("EnableOutboundSMS", "0"),
            ("MobileOperator", "Ünïcødé 'quoted' \"x\""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        store.set_device_info("alice", "D1", &info).await.unwrap();
        assert_eq!(
            store
                .device("alice", "D1")
                .await
                .unwrap()
                .unwrap()
                .device_info,
            info
        );

        // Replaces, keeping the given order.
        let replaced = vec![
            ("OS".to_string(), "iOS 18".to_string()),
            ("Model".to_string(), "iPhone16,1".to_string()),
        ];
        store
            .set_device_info("alice", "D1", &replaced)
            .await
            .unwrap();
        assert_eq!(
            store
                .device("alice", "D1")
                .await
                .unwrap()
                .unwrap()
                .device_info,
            replaced
        );
        store.set_device_info("alice", "D1", &[]).await.unwrap();
        assert!(store
            .device("alice", "D1")
            .await
            .unwrap()
            .unwrap()
            .device_info
            .is_empty());

        for w in [
            WipeState::Requested,
            WipeState::AccountOnlyRequested,
            WipeState::Acknowledged,
            WipeState::None,
        ] {
            store.set_wipe("alice", "D1", w).await.unwrap();
            assert_eq!(store.device("alice", "D1").await.unwrap().unwrap().wipe, w);
        }
    }

    pub async fn folder_ids(store: impl StateStore) {
        let first = store
            .folder_server_ids("alice", &ids(&["guid:A", "guid:B", "uv:5:Archive"]))
            .await
            .unwrap();
        assert_eq!(first, ids(&["1", "2", "3"]));

        // Stable, same order as the input, new ones appended to the counter.
        let again = store
            .folder_server_ids(
                "alice",
                &ids(&["uv:5:Archive", "guid:C", "guid:A", "guid:C", "guid:B"]),
            )
            .await
            .unwrap();
        assert_eq!(again, ids(&["3", "4", "1", "4", "2"]));
        assert!(store
            .folder_server_ids("alice", &[])
            .await
            .unwrap()
            .is_empty());

        // Per user: shared by all of a user's devices, independent between users.
        let bob = store
            .folder_server_ids("bob", &ids(&["guid:C", "guid:A"]))
            .await
            .unwrap();
        assert_eq!(bob, ids(&["1", "2"]));
        assert_eq!(
            store
                .folder_server_ids("alice", &ids(&["guid:C"]))
                .await
                .unwrap(),
            ids(&["4"])
        );

        // Ids reveal nothing about the folder.
        for id in again.iter().chain(&bob) {
            assert!(id.bytes().all(|b| b.is_ascii_digit()) && id != "0", "{id}");
        }

        // Retired ids are never handed out again, not even to the same identity.
        assert_eq!(
            store
                .retire_folder_ids("alice", &ids(&["guid:C", "guid:unknown"]))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .folder_server_ids("alice", &ids(&["guid:D", "guid:C"]))
                .await
                .unwrap(),
            ids(&["5", "6"])
        );

        // Rebinding a fallback identity after a rename keeps the ServerId.
        assert_eq!(
            store
                .rebind_folder_identity("alice", "uv:5:Archive", "uv:5:Archive 2024")
                .await
                .unwrap(),
            Some("3".to_string())
        );
        assert_eq!(
            store
                .folder_server_ids("alice", &ids(&["uv:5:Archive 2024", "uv:5:Archive"]))
                .await
                .unwrap(),
            ids(&["3", "7"])
        );
        assert_eq!(
            store
                .rebind_folder_identity("alice", "uv:9:nope", "uv:9:other")
                .await
                .unwrap(),
            None
        );
        assert!(matches!(
            store
                .rebind_folder_identity("alice", "guid:A", "guid:B")
                .await,
            Err(StoreError::Conflict(_))
        ));
        // The failed rebind changed nothing.
        assert_eq!(
            store
                .folder_server_ids("alice", &ids(&["guid:A", "guid:B"]))
                .await
                .unwrap(),
            ids(&["1", "2"])
        );
        // Bob's mapping is untouched by all of the above.
        assert_eq!(
            store
                .folder_server_ids("bob", &ids(&["guid:A", "guid:C", "uv:5:Archive"]))
                .await
                .unwrap(),
            ids(&["2", "1", "3"])
        );

        assert!(matches!(
            store
                .folder_server_ids("alice", &ids(&["guid:A", ""]))
                .await,
            Err(StoreError::InvalidInput(_))
        ));
    }

    pub async fn hierarchy(store: impl StateStore) {
        let f1 = vec![folder("1", "Inbox"), folder("2", "Sent")];
        assert_eq!(
            store.commit_hierarchy("alice", "D1", 1, &f1).await,
            Err(StoreError::DeviceNotFound)
        );
        touch(&store, "alice", "D1", 1).await;
        touch(&store, "alice", "D2", 1).await;
        assert_eq!(store.hierarchy("alice", "D1").await.unwrap(), None);
        assert!(matches!(
            store.commit_hierarchy("alice", "D1", 0, &f1).await,
            Err(StoreError::InvalidInput(_))
        ));

        store.commit_hierarchy("alice", "D1", 1, &f1).await.unwrap();
        let h = store.hierarchy("alice", "D1").await.unwrap().unwrap();
        assert_eq!((h.key, &h.folders, &h.previous), (1, &f1, &None));

        let mut f2 = f1.clone();
        f2.push(FolderEntry {
            server_id: "3".into(),
            parent_id: "1".into(),
            display_name: "Inbox/Sub".into(),
            folder_type: 1,
        });
        store.commit_hierarchy("alice", "D1", 2, &f2).await.unwrap();
        let h = store.hierarchy("alice", "D1").await.unwrap().unwrap();
        assert_eq!(h.key, 2);
        assert_eq!(h.folders, f2);
        assert_eq!(h.previous, Some((1, f1.clone())));

        // Exactly two keys are kept.
        let f3 = vec![folder("2", "Sent Items")];
        store.commit_hierarchy("alice", "D1", 3, &f3).await.unwrap();
        let h = store.hierarchy("alice", "D1").await.unwrap().unwrap();
        assert_eq!(h.key, 3);
        assert_eq!(h.folders, f3);
        assert_eq!(h.previous, Some((2, f2.clone())));

        // Re-committing the current key replaces it and keeps the previous.
        let f3b = vec![folder("2", "Sent Items"), folder("4", "Drafts")];
        store
            .commit_hierarchy("alice", "D1", 3, &f3b)
            .await
            .unwrap();
        let h = store.hierarchy("alice", "D1").await.unwrap().unwrap();
        assert_eq!((h.key, &h.folders), (3, &f3b));
        assert_eq!(h.previous, Some((2, f2.clone())));

        // Empty hierarchy and the largest key.
        store
            .commit_hierarchy("alice", "D1", u32::MAX, &[])
            .await
            .unwrap();
        let h = store.hierarchy("alice", "D1").await.unwrap().unwrap();
        assert_eq!((h.key, h.folders.len()), (u32::MAX, 0));
        assert_eq!(h.previous, Some((3, f3b)));

        // Other devices of the same user are independent.
        assert_eq!(store.hierarchy("alice", "D2").await.unwrap(), None);

        // Reset (sync key 0) keeps the device and its provisioning.
        store
            .set_policy("alice", "D1", PolicyState::Provisioned, 9, None)
            .await
            .unwrap();
        store
            .commit_collection("alice", "D1", "1", &view(1), None)
            .await
            .unwrap();
        store
            .set_cached_sync_request("alice", "D1", Some(b"r"))
            .await
            .unwrap();
        store.reset_sync_state("alice", "D1").await.unwrap();
        assert_eq!(store.hierarchy("alice", "D1").await.unwrap(), None);
        assert_eq!(
            store.collection_state("alice", "D1", "1").await.unwrap(),
            None
        );
        assert_eq!(
            store.cached_sync_request("alice", "D1").await.unwrap(),
            None
        );
        let d = store.device("alice", "D1").await.unwrap().unwrap();
        assert_eq!((d.policy, d.policy_key), (PolicyState::Provisioned, 9));
        store.reset_sync_state("alice", "unknown").await.unwrap();
    }

    pub async fn collections(store: impl StateStore) {
        assert_eq!(
            store
                .commit_collection("alice", "D1", "1", &view(1), None)
                .await,
            Err(StoreError::DeviceNotFound)
        );
        touch(&store, "alice", "D1", 1).await;
        assert_eq!(
            store.collection_state("alice", "D1", "1").await.unwrap(),
            None
        );
        assert!(matches!(
            store
                .commit_collection("alice", "D1", "1", &view(0), None)
                .await,
            Err(StoreError::InvalidInput(_))
        ));
        let mut huge = view(1);
        huge.highest_modseq = u64::MAX;
        assert!(matches!(
            store
                .commit_collection("alice", "D1", "1", &huge, None)
                .await,
            Err(StoreError::InvalidInput(_))
        ));

        store
            .commit_collection("alice", "D1", "1", &view(1), Some(b"\x00opts\xff"))
            .await
            .unwrap();
        let s = store
            .collection_state("alice", "D1", "1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.current, view(1));
        assert_eq!(s.previous, None);
        assert_eq!(s.options.as_deref(), Some(&b"\x00opts\xff"[..]));

        // None keeps the cached options.
        store
            .commit_collection("alice", "D1", "1", &view(2), None)
            .await
            .unwrap();
        let s = store
            .collection_state("alice", "D1", "1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((s.current, s.previous), (view(2), Some(view(1))));
        assert_eq!(s.options.as_deref(), Some(&b"\x00opts\xff"[..]));

        let mut v3 = view(3);
        v3.flags = None;
        v3.filter_start = None;
        v3.highest_modseq = i64::MAX as u64;
        v3.uid_validity = u32::MAX;
        store
            .commit_collection("alice", "D1", "1", &v3, Some(b"new"))
            .await
            .unwrap();
        let s = store
            .collection_state("alice", "D1", "1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&s.current, &s.previous), (&v3, &Some(view(2))));
        assert_eq!(s.options.as_deref(), Some(&b"new"[..]));

        // Same key again: replaced in place, previous kept.
        let mut v3b = v3.clone();
        v3b.uids = "1:3,7".into();
        store
            .commit_collection("alice", "D1", "1", &v3b, None)
            .await
            .unwrap();
        let s = store
            .collection_state("alice", "D1", "1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&s.current, &s.previous), (&v3b, &Some(view(2))));

        // Collections are independent of each other.
        store
            .commit_collection("alice", "D1", "2", &view(1), None)
            .await
            .unwrap();
        let s2 = store
            .collection_state("alice", "D1", "2")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((s2.current, s2.previous, s2.options), (view(1), None, None));

        assert!(store.reset_collection("alice", "D1", "1").await.unwrap());
        assert!(!store.reset_collection("alice", "D1", "1").await.unwrap());
        assert_eq!(
            store.collection_state("alice", "D1", "1").await.unwrap(),
            None
        );
        assert!(store
            .collection_state("alice", "D1", "2")
            .await
            .unwrap()
            .is_some());

        // Cached Sync request.
        assert_eq!(
            store
                .set_cached_sync_request("alice", "DX", Some(b"x"))
                .await,
            Err(StoreError::DeviceNotFound)
        );
        assert_eq!(
            store.cached_sync_request("alice", "D1").await.unwrap(),
            None
        );
        store
            .set_cached_sync_request("alice", "D1", Some(b"<Sync/>"))
            .await
            .unwrap();
        store
            .set_cached_sync_request("alice", "D1", Some(b"<Sync>2</Sync>"))
            .await
            .unwrap();
        assert_eq!(
            store.cached_sync_request("alice", "D1").await.unwrap(),
            Some(b"<Sync>2</Sync>".to_vec())
        );
        store
            .set_cached_sync_request("alice", "D1", None)
            .await
            .unwrap();
        assert_eq!(
            store.cached_sync_request("alice", "D1").await.unwrap(),
            None
        );
    }

    /// Same device id under two users: nothing one user does is visible to
    /// or changes the other.
    pub async fn user_isolation(store: impl StateStore) {
        for user in ["alice", "bob"] {
            touch(&store, user, "SAME", 1).await;
        }
        store
            .set_policy("alice", "SAME", PolicyState::Provisioned, 42, Some("h"))
            .await
            .unwrap();
        store
            .set_device_info("alice", "SAME", &[("Model".into(), "A".into())])
            .await
            .unwrap();
        store
            .set_wipe("alice", "SAME", WipeState::Requested)
            .await
            .unwrap();
        store
            .commit_hierarchy("alice", "SAME", 5, &[folder("1", "Secret")])
            .await
            .unwrap();
        store
            .commit_collection("alice", "SAME", "1", &view(5), Some(b"o"))
            .await
            .unwrap();
        store
            .set_cached_sync_request("alice", "SAME", Some(b"r"))
            .await
            .unwrap();
        store
            .folder_server_ids("alice", &ids(&["guid:secret"]))
            .await
            .unwrap();

        let bob = store.device("bob", "SAME").await.unwrap().unwrap();
        assert_eq!(bob.user, "bob");
        assert_eq!(
            (bob.policy, bob.policy_key, &bob.policy_hash),
            (PolicyState::None, 0, &None)
        );
        assert!(bob.device_info.is_empty());
        assert_eq!(bob.wipe, WipeState::None);
        assert_eq!(store.hierarchy("bob", "SAME").await.unwrap(), None);
        assert_eq!(
            store.collection_state("bob", "SAME", "1").await.unwrap(),
            None
        );
        assert_eq!(
            store.cached_sync_request("bob", "SAME").await.unwrap(),
            None
        );
        assert_eq!(
            store
                .folder_server_ids("bob", &ids(&["guid:other"]))
                .await
                .unwrap(),
            ids(&["1"])
        );
        assert!(!store.reset_collection("bob", "SAME", "1").await.unwrap());
        assert_eq!(
            store
                .retire_folder_ids("bob", &ids(&["guid:secret"]))
                .await
                .unwrap(),
            0
        );
        let listed = store.devices(Some("bob")).await.unwrap();
        assert_eq!(listed, vec![bob]);

        // Deleting bob's device leaves alice's intact.
        assert!(store.delete_device("bob", "SAME").await.unwrap());
        store.reset_sync_state("bob", "SAME").await.unwrap();
        let alice = store.device("alice", "SAME").await.unwrap().unwrap();
        assert_eq!(alice.policy_key, 42);
        assert_eq!(alice.wipe, WipeState::Requested);
        assert_eq!(alice.device_info.len(), 1);
        assert_eq!(
            store.hierarchy("alice", "SAME").await.unwrap().unwrap().key,
            5
        );
        assert!(store
            .collection_state("alice", "SAME", "1")
            .await
            .unwrap()
            .is_some());
        assert!(store
            .cached_sync_request("alice", "SAME")
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            store
                .folder_server_ids("alice", &ids(&["guid:secret"]))
                .await
                .unwrap(),
            ids(&["1"])
        );
    }

    /// 20 tasks commit concurrently: to their own devices, to one shared
    /// device and one shared collection, and assign overlapping folder ids.
    pub async fn concurrent_commits(store: impl StateStore) {
        const TASKS: u32 = 20;
        touch(&store, "alice", "shared", 0).await;

        let mut handles = Vec::new();
        for t in 0..TASKS {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let own = format!("dev{t}");
                for round in 1..=5u32 {
                    store
                        .touch_device(
                            "alice",
                            &own,
                            "Android",
                            None,
                            None,
                            "Sync",
                            i64::from(round),
                        )
                        .await
                        .unwrap();
                    let key = t * 100 + round;
                    let folders = vec![folder(&key.to_string(), &format!("k{key}"))];
                    store
                        .commit_hierarchy("alice", &own, key, &folders)
                        .await
                        .unwrap();
                    store
                        .commit_hierarchy("alice", "shared", key, &folders)
                        .await
                        .unwrap();
                    store
                        .commit_collection("alice", "shared", "1", &view(key), None)
                        .await
                        .unwrap();
                    // Overlapping identities, in varying order.
                    let mut idents: Vec<String> = (0..10)
                        .map(|i| format!("guid:{}", (i + t + round) % 30))
                        .collect();
                    if t.is_multiple_of(2) {
                        idents.reverse();
                    }
                    let assigned = store.folder_server_ids("alice", &idents).await.unwrap();
                    assert_eq!(assigned.len(), idents.len());
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }

        // Each own device: exactly its last two commits.
        for t in 0..TASKS {
            let h = store
                .hierarchy("alice", &format!("dev{t}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(h.key, t * 100 + 5);
            assert_eq!(
                h.folders,
                vec![folder(&h.key.to_string(), &format!("k{}", h.key))]
            );
            let (pkey, pfolders) = h.previous.unwrap();
            assert_eq!(pkey, t * 100 + 4);
            assert_eq!(
                pfolders,
                vec![folder(&pkey.to_string(), &format!("k{pkey}"))]
            );
        }

        // Shared device: some interleaving, but each snapshot is intact.
        let h = store.hierarchy("alice", "shared").await.unwrap().unwrap();
        assert_eq!(
            h.folders,
            vec![folder(&h.key.to_string(), &format!("k{}", h.key))]
        );
        let (pkey, pfolders) = h.previous.unwrap();
        assert_ne!(pkey, h.key);
        assert_eq!(
            pfolders,
            vec![folder(&pkey.to_string(), &format!("k{pkey}"))]
        );
        let c = store
            .collection_state("alice", "shared", "1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.current, view(c.current.key));
        assert_eq!(c.previous.clone().map(|p| view(p.key)), c.previous);

        // Folder ids: one id per identity, all distinct, exactly 1..=30.
        let all: Vec<String> = (0..30).map(|i| format!("guid:{i}")).collect();
        let assigned = store.folder_server_ids("alice", &all).await.unwrap();
        let mut numbers: Vec<u32> = assigned.iter().map(|s| s.parse().unwrap()).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=30).collect::<Vec<_>>());
        assert_eq!(assigned.iter().collect::<HashSet<_>>().len(), 30);

        assert_eq!(
            store.devices(Some("alice")).await.unwrap().len(),
            TASKS as usize + 1
        );
    }

    pub async fn ping_params(store: impl StateStore) {
        let p = PingParams {
            heartbeat_secs: 480,
            folders: vec![
                ("7".into(), "Email".into()),
                ("12".into(), "Calendar".into()),
            ],
        };
        assert!(matches!(
            store.set_ping_params("alice", "d1", &p).await,
            Err(StoreError::DeviceNotFound)
        ));
        for dev in ["d1", "d2"] {
            store
                .touch_device("alice", dev, "t", None, None, "Ping", 1)
                .await
                .unwrap();
        }
        assert_eq!(store.ping_params("alice", "d1").await.unwrap(), None);
        store.set_ping_params("alice", "d1", &p).await.unwrap();
        assert_eq!(
            store.ping_params("alice", "d1").await.unwrap(),
            Some(p.clone())
        );
        assert_eq!(store.ping_params("alice", "d2").await.unwrap(), None);
        assert_eq!(store.ping_params("bob", "d1").await.unwrap(), None);

        let q = PingParams {
            heartbeat_secs: 60,
            folders: vec![],
        };
        store.set_ping_params("alice", "d1", &q).await.unwrap();
        assert_eq!(store.ping_params("alice", "d1").await.unwrap(), Some(q));

        let bad = PingParams {
            heartbeat_secs: 60,
            folders: vec![("1\t2".into(), "Email".into())],
        };
        assert!(matches!(
            store.set_ping_params("alice", "d1", &bad).await,
            Err(StoreError::InvalidInput(_))
        ));

        assert!(store.delete_device("alice", "d1").await.unwrap());
        assert_eq!(store.ping_params("alice", "d1").await.unwrap(), None);
    }

    pub async fn send_records(store: impl StateStore) {
        let claim = |user: &'static str, key: &'static str, owner: &'static str, now: i64| {
            let store = store.clone();
            async move {
                store
                    .claim_send(user, key, owner, now, now + 30, now + 100)
                    .await
                    .unwrap()
            }
        };
        let phase = |key: &'static str, owner: &'static str, phase: SendPhase| {
            let store = store.clone();
            async move {
                store
                    .set_send_phase("alice", key, owner, phase)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(claim("alice", "k", "o1", 1000).await, SendClaim::New);
        assert_eq!(claim("alice", "k", "o2", 1001).await, SendClaim::InFlight);
        assert_eq!(
            claim("bob", "k", "o2", 1001).await,
            SendClaim::New,
            "per user"
        );
        assert!(phase("k", "o1", SendPhase::Sent).await);
        assert_eq!(claim("alice", "k", "o2", 1002).await, SendClaim::Done);
        assert_eq!(
            claim("alice", "k", "o3", 1100).await,
            SendClaim::New,
            "an expired record counts as absent"
        );
        store.release_send("alice", "k", "o4").await.unwrap();
        assert_eq!(
            claim("alice", "k", "o4", 1101).await,
            SendClaim::InFlight,
            "only the owner releases"
        );
        store.release_send("alice", "k", "o3").await.unwrap();
        assert_eq!(claim("alice", "k", "o4", 1101).await, SendClaim::New);
        // Unknown keys are no-ops.
        assert!(!phase("nope", "o1", SendPhase::Sent).await);
        store.release_send("alice", "nope", "o1").await.unwrap();
        assert_eq!(claim("alice", "nope", "o1", 1101).await, SendClaim::New);

        // A lease that runs out before DATA passes the claim on; the old owner is fenced off.
        assert_eq!(claim("alice", "l", "o1", 2000).await, SendClaim::New);
        assert!(store.renew_send("alice", "l", "o1", 2040).await.unwrap());
        assert_eq!(claim("alice", "l", "o2", 2035).await, SendClaim::InFlight);
        assert_eq!(claim("alice", "l", "o2", 2040).await, SendClaim::New);
        assert!(!phase("l", "o1", SendPhase::Data).await, "taken over");
        assert!(!store.renew_send("alice", "l", "o1", 2100).await.unwrap());
        assert!(phase("l", "o2", SendPhase::Data).await);
        assert!(!phase("l", "o2", SendPhase::Data).await, "once");
        assert_eq!(claim("alice", "l", "o3", 2069).await, SendClaim::InFlight);
        // After DATA, a lease that runs out makes the outcome unknown, for good.
        assert_eq!(claim("alice", "l", "o3", 2070).await, SendClaim::Unknown);
        assert_eq!(claim("alice", "l", "o4", 2071).await, SendClaim::Unknown);
        assert!(!store.renew_send("alice", "l", "o2", 2200).await.unwrap());
        // The owner's own answer still settles it.
        assert!(phase("l", "o2", SendPhase::Sent).await);
        assert_eq!(claim("alice", "l", "o4", 2072).await, SendClaim::Done);
        // An owner that learns the outcome is unknown records it.
        assert_eq!(claim("alice", "u", "o1", 3000).await, SendClaim::New);
        assert!(phase("u", "o1", SendPhase::Data).await);
        assert!(phase("u", "o1", SendPhase::Unknown).await);
        assert_eq!(claim("alice", "u", "o2", 3001).await, SendClaim::Unknown);

        // Concurrent claims of one key: exactly one wins.
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .claim_send("carol", "race", &format!("o{i}"), 5, 20, 50)
                    .await
                    .unwrap()
            }));
        }
        let mut news = 0;
        for t in tasks {
            if t.await.unwrap() == SendClaim::New {
                news += 1;
            }
        }
        assert_eq!(news, 1);
    }

    pub async fn draft_versions(store: impl StateStore) {
        let v = |uid: u32, item: u32, mid: &str| DraftVersion {
            uid,
            item,
            message_id: Some(mid.to_string()),
        };
        let first = store
            .record_draft_version("alice", "4", 9, &v(10, 10, "<a@x>"), Some("d1 c1"))
            .await
            .unwrap();
        assert_eq!(first, v(10, 10, "<a@x>"));
        // A recorded UID keeps its item.
        assert_eq!(
            store
                .record_draft_version("alice", "4", 9, &v(10, 99, "<other@x>"), None)
                .await
                .unwrap(),
            v(10, 10, "<a@x>")
        );
        store
            .record_draft_version("alice", "4", 9, &v(12, 10, "<a@x>"), None)
            .await
            .unwrap();
        store
            .record_draft_version("alice", "4", 9, &v(11, 11, "<b@x>"), None)
            .await
            .unwrap();
        assert_eq!(
            store
                .draft_item_versions("alice", "4", 9, 10)
                .await
                .unwrap(),
            vec![v(10, 10, "<a@x>"), v(12, 10, "<a@x>")]
        );
        assert_eq!(
            store
                .draft_versions("alice", "4", 9, &[12, 11, 50])
                .await
                .unwrap(),
            vec![v(11, 11, "<b@x>"), v(12, 10, "<a@x>")]
        );
        assert_eq!(
            store
                .draft_versions_by_message_id("alice", "4", 9, "<a@x>")
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            store
                .draft_by_client_key("alice", "4", 9, "d1 c1")
                .await
                .unwrap(),
            Some(v(10, 10, "<a@x>"))
        );
        // Scoped by user, collection and UIDVALIDITY.
        assert!(store
            .draft_versions("bob", "4", 9, &[10])
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .draft_versions("alice", "5", 9, &[10])
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .draft_versions("alice", "4", 8, &[10])
            .await
            .unwrap()
            .is_empty());
        store.forget_draft("alice", "4", 9, 10).await.unwrap();
        assert!(store
            .draft_item_versions("alice", "4", 9, 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .draft_by_client_key("alice", "4", 9, "d1 c1")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store.draft_versions("alice", "4", 9, &[11]).await.unwrap(),
            vec![v(11, 11, "<b@x>")]
        );
    }

    const LONG: Duration = Duration::from_secs(600);

    fn lease<'a>(user: &'a str, device_id: &'a str, collection_id: &'a str) -> LeaseKey<'a> {
        LeaseKey {
            user,
            device_id,
            collection_id,
        }
    }

    /// Take, refuse while held, re-take by the holder, release, take over an expired lease.
    pub async fn leases(store: impl StateStore) {
        let k = lease("alice", "D1", "5");
        assert!(store.acquire_lease(k, "node-a/1", LONG).await.unwrap());
        assert!(!store.acquire_lease(k, "node-b/1", LONG).await.unwrap());
        // The holder may take it again (that extends it), and renew it; nobody else may.
        assert!(store.acquire_lease(k, "node-a/1", LONG).await.unwrap());
        assert!(store.renew_lease(k, "node-a/1", LONG).await.unwrap());
        assert!(!store.renew_lease(k, "node-b/1", LONG).await.unwrap());
        // Owners compare exactly.
        assert!(!store.acquire_lease(k, "node-a/2", LONG).await.unwrap());

        // Other collections, devices and users are other leases.
        for other in [
            lease("alice", "D1", "6"),
            lease("alice", "D2", "5"),
            lease("bob", "D1", "5"),
        ] {
            assert!(store.acquire_lease(other, "node-b/1", LONG).await.unwrap());
        }

        // Only the holder releases it.
        store.release_lease(k, "node-b/1").await.unwrap();
        assert!(!store.acquire_lease(k, "node-b/1", LONG).await.unwrap());
        store.release_lease(k, "node-a/1").await.unwrap();
        assert!(!store.renew_lease(k, "node-a/1", LONG).await.unwrap());
        assert!(store.acquire_lease(k, "node-b/1", LONG).await.unwrap());

        // A lease that has run out is taken over; its old holder can no longer renew it.
        let k = lease("alice", "D1", "7");
        assert!(store
            .acquire_lease(k, "node-a/1", Duration::ZERO)
            .await
            .unwrap());
        assert!(store.acquire_lease(k, "node-b/1", LONG).await.unwrap());
        assert!(!store.renew_lease(k, "node-a/1", LONG).await.unwrap());
        assert!(!store.acquire_lease(k, "node-a/1", LONG).await.unwrap());
        // The old holder's release does not free the new holder's lease.
        store.release_lease(k, "node-a/1").await.unwrap();
        assert!(!store.acquire_lease(k, "node-c/1", LONG).await.unwrap());

        // Expired but not taken over: still the holder's to renew.
        let k = lease("alice", "D1", "8");
        assert!(store
            .acquire_lease(k, "node-a/1", Duration::ZERO)
            .await
            .unwrap());
        assert!(store.renew_lease(k, "node-a/1", LONG).await.unwrap());
        assert!(!store.acquire_lease(k, "node-b/1", LONG).await.unwrap());

        // A ttl of more than a day is refused.
        assert!(matches!(
            store
                .acquire_lease(
                    lease("alice", "D1", "9"),
                    "node-a/1",
                    Duration::from_secs(86_401)
                )
                .await,
            Err(StoreError::InvalidInput(_))
        ));
    }

    /// Two handles (two nodes): a lease taken on one is refused on the other, and a node
    /// that goes away without releasing leaves the lease locked until its ttl runs out.
    pub async fn leases_across_nodes(a: impl StateStore, b: impl StateStore) {
        let k = lease("alice", "D1", "5");
        assert!(a.acquire_lease(k, "node-a", LONG).await.unwrap());
        assert!(!b.acquire_lease(k, "node-b", LONG).await.unwrap());
        a.release_lease(k, "node-a").await.unwrap();
        assert!(b.acquire_lease(k, "node-b", LONG).await.unwrap());
        assert!(!a.acquire_lease(k, "node-a", LONG).await.unwrap());

        let k = lease("alice", "D1", "6");
        assert!(a
            .acquire_lease(k, "node-a", Duration::from_millis(300))
            .await
            .unwrap());
        drop(a);
        // The dead node's lease runs out by the clock (waiting well past its ttl).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(b.acquire_lease(k, "node-b", LONG).await.unwrap());

        // Two nodes racing for one free lease: exactly one wins.
        let k = lease("alice", "D1", "7");
        let mut tasks = Vec::new();
        for n in 0..10 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                b.acquire_lease(lease("alice", "D1", "7"), &format!("node-{n}"), LONG)
                    .await
                    .unwrap()
            }));
        }
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1);
        assert!(!b.acquire_lease(k, "node-x", LONG).await.unwrap());
    }

    /// An event published on one handle reaches the subscribers of both.
    pub async fn events_across_nodes(a: impl StateStore, b: impl StateStore) {
        async fn next(rx: &mut tokio::sync::broadcast::Receiver<String>) -> String {
            tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("no event within 20 s")
                .unwrap()
        }
        let mut on_a = a.subscribe();
        let mut on_b = b.subscribe();
        a.publish("wake alice@example.test").await.unwrap();
        assert_eq!(next(&mut on_b).await, "wake alice@example.test");
        assert_eq!(next(&mut on_a).await, "wake alice@example.test");
        b.publish("supersede alice@example.test D1").await.unwrap();
        assert_eq!(next(&mut on_a).await, "supersede alice@example.test D1");
        assert_eq!(next(&mut on_b).await, "supersede alice@example.test D1");
        // In order, and only to subscribers that were there.
        let mut late = b.subscribe();
        for n in 0..5 {
            a.publish(&format!("wake u{n}")).await.unwrap();
        }
        for n in 0..5 {
            assert_eq!(next(&mut late).await, format!("wake u{n}"));
        }
        assert_eq!(next(&mut on_b).await, "wake u0");

        let long = "x".repeat(MAX_EVENT_LEN + 1);
        assert!(matches!(
            a.publish(&long).await,
            Err(StoreError::InvalidInput(_))
        ));
        assert!(matches!(
            a.publish("a\0b").await,
            Err(StoreError::InvalidInput(_))
        ));
        a.publish(&"x".repeat(MAX_EVENT_LEN)).await.unwrap();
        assert_eq!(next(&mut late).await.len(), MAX_EVENT_LEN);
    }
}

// ---- SQLite --------------------------------------------------------------------

fn temp_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    (dir, store)
}

macro_rules! sqlite_conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite_conformance {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let (_dir, store) = temp_store();
                    conformance::$name(store).await;
                }
            )*
        }
    };
}

sqlite_conformance!(
    device_lifecycle,
    policy,
    device_info_and_wipe,
    folder_ids,
    hierarchy,
    collections,
    user_isolation,
    concurrent_commits,
    ping_params,
    send_records,
    draft_versions,
    leases,
);

/// Two handles on one file: one node's leases and events (SQLite serves one node).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_leases_across_handles() {
    let (dir, a) = temp_store();
    let b = SqliteStore::open(&dir.path().join("./state.db")).unwrap();
    conformance::leases_across_nodes(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_events_across_handles() {
    let (dir, a) = temp_store();
    let b = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    conformance::events_across_nodes(a, b).await;
}

#[tokio::test]
async fn sqlite_in_memory_passes_conformance() {
    conformance::hierarchy(SqliteStore::open_url("sqlite::memory:").unwrap()).await;
    conformance::folder_ids(SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test]
async fn sqlite_reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/state.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .touch_device(
                "alice",
                "D1",
                "iPhone",
                Some("ua"),
                Some("16.1"),
                "Provision",
                10,
            )
            .await
            .unwrap();
        store
            .set_policy("alice", "D1", PolicyState::Provisioned, 77, Some("h1"))
            .await
            .unwrap();
        store
            .set_device_info("alice", "D1", &[("Model".into(), "X".into())])
            .await
            .unwrap();
        store
            .folder_server_ids("alice", &["guid:A".to_string(), "guid:B".to_string()])
            .await
            .unwrap();
        let f = FolderEntry {
            server_id: "1".into(),
            parent_id: "0".into(),
            display_name: "Inbox".into(),
            folder_type: 2,
        };
        store.commit_hierarchy("alice", "D1", 1, &[]).await.unwrap();
        store
            .commit_hierarchy("alice", "D1", 2, &[f])
            .await
            .unwrap();
    }
    let before = {
        let store = SqliteStore::open(&path).unwrap();
        (
            store.device("alice", "D1").await.unwrap(),
            store.hierarchy("alice", "D1").await.unwrap(),
        )
    };
    // Opening again (migrations already applied) changes nothing.
    let store = SqliteStore::open_url(&format!("sqlite://{}", path.display())).unwrap();
    let d = store.device("alice", "D1").await.unwrap().unwrap();
    assert_eq!((d.policy, d.policy_key), (PolicyState::Provisioned, 77));
    assert_eq!(d.device_info, vec![("Model".to_string(), "X".to_string())]);
    let h = store.hierarchy("alice", "D1").await.unwrap().unwrap();
    assert_eq!((h.key, h.folders.len()), (2, 1));
    assert_eq!(h.previous, Some((1, vec![])));
    assert_eq!(before, (Some(d), Some(h)));
    // The per-user counter survives too: no id is reused.
    assert_eq!(
        store
            .folder_server_ids("alice", &["guid:B".to_string(), "guid:C".to_string()])
            .await
            .unwrap(),
        vec!["2".to_string(), "3".to_string()]
    );
}

#[tokio::test]
async fn sqlite_file_settings() {
    let (dir, store) = temp_store();
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert!(version >= 2);
}

/// Two stores on one file stand in for two gateway nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_nodes_share_one_file() {
    let (dir, a) = temp_store();
    let b = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let mut handles = Vec::new();
    for t in 0..20u32 {
        let store = if t.is_multiple_of(2) {
            a.clone()
        } else {
            b.clone()
        };
        handles.push(tokio::spawn(async move {
            let idents: Vec<String> = (0..8)
                .map(|i| format!("guid:{}", (i * 3 + t) % 16))
                .collect();
            let got = store.folder_server_ids("alice", &idents).await.unwrap();
            store
                .touch_device("alice", "D", "t", None, None, "Sync", i64::from(t))
                .await
                .unwrap();
            store
                .commit_hierarchy("alice", "D", t + 1, &[])
                .await
                .unwrap();
            idents.into_iter().zip(got).collect::<Vec<_>>()
        }));
    }
    let mut seen = std::collections::HashMap::new();
    for h in handles {
        for (ident, id) in h.await.unwrap() {
            assert_eq!(seen.entry(ident).or_insert_with(|| id.clone()), &id);
        }
    }
    let distinct: std::collections::HashSet<_> = seen.values().collect();
    assert_eq!(distinct.len(), seen.len());
    assert_eq!(seen.len(), 16);
    let h = b.hierarchy("alice", "D").await.unwrap().unwrap();
    assert!(h.previous.is_some());
    assert_eq!(a.device("alice", "D").await.unwrap().unwrap().last_seen, 19);
}

#[tokio::test]
async fn sqlite_open_url_forms() {
    let dir = tempfile::tempdir().unwrap();
    let abs = dir.path().join("abs.db");
    let store = SqliteStore::open_url(&format!("sqlite://{}", abs.display())).unwrap();
    assert!(abs.is_file());
    assert_eq!(store.location(), abs.display().to_string());
    assert!(SqliteStore::open_url("sqlite::memory:").is_ok());

    let err = SqliteStore::open_url("postgres://gw:s3cret@db/eas").unwrap_err();
    assert!(matches!(err, StoreError::Config(_)));
    assert!(!err.to_string().contains("s3cret"));
    assert!(matches!(
        SqliteStore::open_url("sqlite://"),
        Err(StoreError::Config(_))
    ));
}

#[tokio::test]
async fn sqlite_rejects_foreign_and_newer_files() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    assert!(matches!(
        SqliteStore::open(&junk),
        Err(StoreError::Corrupt(_))
    ));

    let newer = dir.path().join("newer.db");
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 1000)
        .unwrap();
    assert!(matches!(
        SqliteStore::open(&newer),
        Err(StoreError::SchemaTooNew { found: 1000, .. })
    ));
}

// ---- PostgreSQL ----------------------------------------------------------------

/// The server the PostgreSQL tests use (`deploy/dev/postgres.sh` prints it).
fn pg_server_url() -> String {
    match std::env::var("EAS_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "EAS_TEST_PG_URL is not set: the PostgreSQL store tests need a server. Start one \
             with `deploy/dev/postgres.sh start` and export EAS_TEST_PG_URL=\"$(deploy/dev/postgres.sh url)\" \
             (deploy/dev/test.sh does both)"
        ),
    }
}

/// The server URL with another database name.
fn pg_url_for(server: &str, db: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

async fn pg_admin(server: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to EAS_TEST_PG_URL ({e}); is deploy/dev/postgres.sh running?")
        });
    tokio::spawn(conn);
    client
}

/// Runs `body` with the URL of a fresh database, dropped afterwards (also when `body`
/// fails).
async fn with_pg_db<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures::FutureExt as _;
    let server = pg_server_url();
    let name = format!("t_{:016x}", rand::random::<u64>());
    pg_admin(&server)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let outcome = std::panic::AssertUnwindSafe(body(pg_url_for(&server, &name)))
        .catch_unwind()
        .await;
    pg_admin(&server)
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

macro_rules! pg_conformance {
    ($($name:ident),* $(,)?) => {
        mod pg_conformance {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    with_pg_db(|url| async move {
                        let store = PgStore::open_url(&url).await.unwrap();
                        conformance::$name(store).await;
                    })
                    .await;
                }
            )*
        }
    };
}

pg_conformance!(
    device_lifecycle,
    policy,
    device_info_and_wipe,
    folder_ids,
    hierarchy,
    collections,
    user_isolation,
    concurrent_commits,
    ping_params,
    send_records,
    draft_versions,
    leases,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_leases_across_nodes() {
    with_pg_db(|url| async move {
        let a = PgStore::open_url(&url).await.unwrap();
        let b = PgStore::open_url(&url).await.unwrap();
        conformance::leases_across_nodes(a, b).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_events_across_nodes() {
    with_pg_db(|url| async move {
        let a = PgStore::open_url(&url).await.unwrap();
        let b = PgStore::open_url(&url).await.unwrap();
        conformance::events_across_nodes(a, b).await;
    })
    .await;
}

/// The listening connection comes back after it is lost, and events reach the store again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_events_survive_a_lost_listening_connection() {
    with_pg_db(|url| async move {
        let store = PgStore::open_url(&url).await.unwrap();
        let mut rx = store.subscribe();
        let admin = pg_admin(&url).await;
        let listeners = || async {
            admin
                .query(
                    "SELECT pid FROM pg_stat_activity
                     WHERE datname = current_database() AND query = 'LISTEN eas_gateway_events'",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i32>(0))
                .collect::<Vec<i32>>()
        };
        let old = listeners().await;
        assert_eq!(old.len(), 1, "one listening connection per store");
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&old[0]])
            .await
            .unwrap();
        // Wait (30 s at most; it reconnects after about 1 s) for the new listening connection.
        let mut waited = 0;
        loop {
            let now = listeners().await;
            if now.len() == 1 && now[0] != old[0] {
                break;
            }
            waited += 1;
            assert!(
                waited < 300,
                "no new listening connection after 30 s: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while rx.try_recv().is_ok() {}
        store.publish("wake alice").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("no event within 20 s")
            .unwrap();
        assert_eq!(got, "wake alice");
    })
    .await;
}

/// Two nodes on one database: what one commits, the other reads; folder ids assigned
/// concurrently by both are one set.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_two_nodes_share_one_database() {
    with_pg_db(|url| async move {
        let (a, b) = tokio::join!(PgStore::open_url(&url), PgStore::open_url(&url));
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut handles = Vec::new();
        for t in 0..20u32 {
            let store = if t.is_multiple_of(2) {
                a.clone()
            } else {
                b.clone()
            };
            handles.push(tokio::spawn(async move {
                let idents: Vec<String> = (0..8)
                    .map(|i| format!("guid:{}", (i * 3 + t) % 16))
                    .collect();
                let got = store.folder_server_ids("alice", &idents).await.unwrap();
                store
                    .touch_device("alice", "D", "t", None, None, "Sync", i64::from(t))
                    .await
                    .unwrap();
                store
                    .commit_hierarchy("alice", "D", t + 1, &[])
                    .await
                    .unwrap();
                idents.into_iter().zip(got).collect::<Vec<_>>()
            }));
        }
        let mut seen = std::collections::HashMap::new();
        for h in handles {
            for (ident, id) in h.await.unwrap() {
                assert_eq!(seen.entry(ident).or_insert_with(|| id.clone()), &id);
            }
        }
        let distinct: std::collections::HashSet<_> = seen.values().collect();
        assert_eq!((distinct.len(), seen.len()), (16, 16));
        assert!(b
            .hierarchy("alice", "D")
            .await
            .unwrap()
            .unwrap()
            .previous
            .is_some());
        assert_eq!(a.device("alice", "D").await.unwrap().unwrap().last_seen, 19);
    })
    .await;
}

/// Nodes starting at once on an empty database: one applies each migration, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_concurrent_startup_migrates_once() {
    with_pg_db(|url| async move {
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { PgStore::open_url(&url).await })
            })
            .collect();
        for o in opens {
            o.await.unwrap().unwrap();
        }
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let versions: Vec<i64> = client
            .query(
                "SELECT version FROM eas_schema_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, (1..=8).collect::<Vec<i64>>());
        // Reopening changes nothing and keeps data.
        let store = PgStore::open_url(&url).await.unwrap();
        store
            .touch_device("alice", "D1", "iPhone", None, None, "Sync", 5)
            .await
            .unwrap();
        drop(store);
        let store = PgStore::open_url(&url).await.unwrap();
        assert_eq!(store.devices(None).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn pg_rejects_newer_schema() {
    with_pg_db(|url| async move {
        drop(PgStore::open_url(&url).await.unwrap());
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(
                "INSERT INTO eas_schema_migrations (version, description) VALUES (1000, 'future')",
            )
            .await
            .unwrap();
        assert!(matches!(
            PgStore::open_url(&url).await,
            Err(StoreError::SchemaTooNew { found: 1000, .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn pg_errors_do_not_echo_the_url() {
    // Nothing listens on port 1.
    let err = PgStore::open_url("postgres://gw:s3cret@127.0.0.1:1/eas")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
    let err = PgStore::open_url("postgres://gw:s3cret@127.0.0.1:1/eas?sslmode=bogus")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

/// `Store::open_url` picks the store by the URL's scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_open_url_picks_by_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Store::open_url(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(matches!(store, Store::Sqlite(_)));
    assert!(path.is_file());
    assert!(matches!(
        Store::open_url("sqlite::memory:").await.unwrap(),
        Store::Sqlite(_)
    ));
    with_pg_db(|url| async move {
        let store = Store::open_url(&url).await.unwrap();
        assert!(matches!(store, Store::Postgres(_)));
        assert!(!store.location().is_empty());
        conformance::device_lifecycle(store).await;
        let store = Store::open_url(&url.replacen("postgres://", "postgresql://", 1))
            .await
            .unwrap();
        assert!(matches!(store, Store::Postgres(_)));
        store.check_writable().await.unwrap();
    })
    .await;
    assert!(matches!(
        Store::open_url("mysql://x@y/z").await,
        Err(StoreError::Config(_))
    ));
}

// ---- PostgreSQL over TLS ---------------------------------------------------------

/// A private PostgreSQL server with `ssl=on`, a CA and a server certificate (for
/// `localhost` and `127.0.0.1`) made for it, and a password for its `postgres` role; TCP
/// connections must use TLS and the password (`hostssl ... scram-sha-256`), the Unix socket
/// is open (`trust`) for checks. Stopped and removed on drop.
mod tls_server {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const BIN: &str = "/usr/lib/postgresql/15/bin";
    pub const PASSWORD: &str = "pg-tls-s3cret";

    pub struct TlsPg {
        dir: tempfile::TempDir,
        pub port: u16,
        /// The CA that signed the server's certificate (PEM file).
        pub ca: PathBuf,
        /// Another CA (PEM file), which signed nothing the server has.
        pub wrong_ca: PathBuf,
    }

    /// Runs a server binary as the `postgres` user when this process is root (PostgreSQL
    /// refuses to run as root).
    fn as_pg(program: &str) -> Command {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &format!("{BIN}/{program}")]);
            c
        } else {
            Command::new(format!("{BIN}/{program}"))
        }
    }

    fn run(mut c: Command, what: &str, log: Option<&Path>) {
        let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        if !out.status.success() {
            let log = log
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            panic!(
                "{what} failed: {}{}\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        (params.self_signed(&key).unwrap(), key)
    }

    impl TlsPg {
        pub fn start() -> TlsPg {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_path_buf();
            let pg_uid = Command::new("id")
                .args(["-u", "postgres"])
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .and_then(|s| s.trim().parse::<u32>().ok());
            let give = |p: &Path| {
                if let Some(uid) = pg_uid {
                    let _ = std::os::unix::fs::chown(p, Some(uid), None);
                }
            };
            give(&path);

            let (ca_cert, ca_key) = ca("eas-gateway test CA");
            let (wrong_cert, _) = ca("eas-gateway other CA");
            let server_key = rcgen::KeyPair::generate().unwrap();
            let server_cert =
                rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])
                    .unwrap()
                    .signed_by(&server_key, &ca_cert, &ca_key)
                    .unwrap();
            let write = |name: &str, text: &str, mode: u32| {
                use std::os::unix::fs::PermissionsExt as _;
                let p = path.join(name);
                std::fs::write(&p, text).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
                give(&p);
                p
            };
            let ca = write("ca.pem", &ca_cert.pem(), 0o644);
            let wrong_ca = write("wrong-ca.pem", &wrong_cert.pem(), 0o644);
            let cert = write("server.crt", &server_cert.pem(), 0o644);
            let key = write("server.key", &server_key.serialize_pem(), 0o600);
            let pwfile = write("pw", PASSWORD, 0o600);

            let data = path.join("data");
            let mut initdb = as_pg("initdb");
            initdb
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .args(["--encoding=UTF8", "--locale=C.UTF-8"]);
            run(initdb, "initdb", None);
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
            )
            .unwrap();

            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = path.join("postgres.log");
            std::fs::write(&log, "").unwrap();
            give(&log);
            let mut start = as_pg("pg_ctl");
            start
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o"])
                .arg(format!(
                    "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c ssl=on \
                     -c ssl_cert_file={} -c ssl_key_file={}",
                    path.display(),
                    cert.display(),
                    key.display()
                ))
                .arg("start");
            run(start, "pg_ctl start", Some(&log));
            TlsPg {
                dir,
                port,
                ca,
                wrong_ca,
            }
        }

        /// `postgres://postgres:PASSWORD@HOST:PORT/postgres?QUERY`.
        pub fn url(&self, host: &str, query: &str) -> String {
            format!(
                "postgres://postgres:{PASSWORD}@{host}:{}/postgres?{query}",
                self.port
            )
        }

        /// A connection over the Unix socket (no TLS, trust), for checks.
        pub async fn admin(&self) -> tokio_postgres::Client {
            let mut config = tokio_postgres::Config::new();
            config
                .host_path(self.dir.path())
                .port(self.port)
                .user("postgres")
                .dbname("postgres");
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client
        }
    }

    impl Drop for TlsPg {
        fn drop(&mut self) {
            let mut stop = as_pg("pg_ctl");
            stop.arg("-D").arg(self.dir.path().join("data")).args([
                "-m",
                "immediate",
                "-w",
                "stop",
            ]);
            let _ = stop.output();
        }
    }
}

/// `sslmode=verify-full` with the server's CA: the pool and the listening connection both
/// run over TLS, and the store works. With another CA, or with `verify-full` for a name the
/// certificate does not hold, opening fails with a TLS error that does not hold the
/// password; `verify-ca` takes the chain without the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_tls_verifies_the_server() {
    let server = tls_server::TlsPg::start();
    let ca = server.ca.display().to_string();
    let store = PgStore::open_url(&server.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    let mut events = store.subscribe();
    store.publish("over tls").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("the event came back")
        .unwrap();
    assert_eq!(got, "over tls");
    conformance::device_lifecycle(store.clone()).await;

    // Every connection of the store (pooled and listening) is encrypted.
    let rows = server
        .admin()
        .await
        .query(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid
             WHERE a.application_name = 'eas-gateway'",
            &[],
        )
        .await
        .unwrap();
    let ssl: Vec<bool> = rows.iter().map(|r| r.get(0)).collect();
    assert!(ssl.len() >= 2, "{ssl:?}");
    assert!(ssl.iter().all(|s| *s), "{ssl:?}");
    drop(store);

    let wrong = format!(
        "sslmode=verify-full&sslrootcert={}",
        server.wrong_ca.display()
    );
    let err = PgStore::open_url(&server.url("127.0.0.1", &wrong))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("TLS") && text.contains("certificate"),
        "{text}"
    );
    assert!(!text.contains(tls_server::PASSWORD), "{text}");

    // The certificate is for localhost and 127.0.0.1, not for other.test (reached at
    // 127.0.0.1 through `hostaddr`): verify-full refuses, verify-ca takes it.
    let err = PgStore::open_url(&server.url(
        "other.test",
        &format!("hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("TLS") && text.contains("certificate"),
        "{text}"
    );
    assert!(!text.contains(tls_server::PASSWORD), "{text}");
    let store = PgStore::open_url(&server.url(
        "other.test",
        &format!("hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    store.check_writable().await.unwrap();
}

/// `sslmode=require` against a server without TLS fails; the error names TLS and not the
/// password.
#[tokio::test]
async fn pg_tls_required_but_not_offered() {
    let server = pg_server_url();
    let (base, _) = server.split_once('?').unwrap_or((&server, ""));
    let with_password = base.replacen("postgres://postgres@", "postgres://postgres:s3cret@", 1);
    let err = PgStore::open_url(&format!("{with_password}?sslmode=require"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("TLS"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}
