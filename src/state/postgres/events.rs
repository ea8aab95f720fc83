//! [`Cluster`] for the PostgreSQL store: leases in `sync_leases`, events over
//! `LISTEN`/`NOTIFY`.

use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::sql::{execute, query, query_opt};
use super::PgStore;
use crate::state::cluster::{check_payload, check_ttl, Cluster, LeaseKey};
use crate::state::StoreError;

/// The `LISTEN`/`NOTIFY` channel of gateway events.
const EVENT_CHANNEL: &str = "eas_gateway_events";

/// One listening connection: the client (keep it to keep the connection) and the task that
/// drives the connection and forwards notifications; the task ends when the connection does.
pub(super) type Listening = (tokio_postgres::Client, JoinHandle<()>);

pub(super) async fn listen(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    events: broadcast::Sender<String>,
) -> Result<Listening, StoreError> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    // No subscriber is no error.
                    let _ = events.send(n.payload().to_owned());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "state database event connection failed");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {EVENT_CHANNEL}"))
        .await?;
    Ok((client, driver))
}

/// Keeps one listening connection up: when it ends, connects again (after 1 s, doubling up
/// to 30 s while connecting fails). Events published in between are not seen here.
pub(super) async fn keep_listening(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    events: broadcast::Sender<String>,
    first: Listening,
) {
    let (mut _client, mut driver) = first;
    loop {
        let _ = (&mut driver).await;
        let mut backoff = Duration::from_secs(1);
        loop {
            tokio::time::sleep(backoff).await;
            match listen(&config, &tls, events.clone()).await {
                Ok((c, d)) => {
                    tracing::info!("state database event connection re-established");
                    (_client, driver) = (c, d);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "state database event connection: reconnecting");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

impl Cluster for PgStore {
    async fn acquire_lease(
        &self,
        key: LeaseKey<'_>,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ms = check_ttl(ttl)?;
        let c = self.conn().await?;
        // One statement: the upsert takes the row lock, so two nodes racing for a free or
        // expired lease cannot both win.
        let taken = query_opt(
            &c,
            "INSERT INTO sync_leases (user_name, device_id, collection_id, owner, expires_at)
             VALUES ($1, $2, $3, $4, clock_timestamp() + $5::bigint * interval '1 millisecond')
             ON CONFLICT (user_name, device_id, collection_id) DO UPDATE SET
                 owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
             WHERE sync_leases.owner = EXCLUDED.owner
                OR sync_leases.expires_at <= clock_timestamp()
             RETURNING 1",
            &[&key.user, &key.device_id, &key.collection_id, &owner, &ms],
        )
        .await?;
        Ok(taken.is_some())
    }

    async fn renew_lease(
        &self,
        key: LeaseKey<'_>,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ms = check_ttl(ttl)?;
        let c = self.conn().await?;
        let n = execute(
            &c,
            "UPDATE sync_leases
             SET expires_at = clock_timestamp() + $5::bigint * interval '1 millisecond'
             WHERE user_name = $1 AND device_id = $2 AND collection_id = $3 AND owner = $4",
            &[&key.user, &key.device_id, &key.collection_id, &owner, &ms],
        )
        .await?;
        Ok(n == 1)
    }

    async fn release_lease(&self, key: LeaseKey<'_>, owner: &str) -> Result<(), StoreError> {
        let c = self.conn().await?;
        execute(
            &c,
            "DELETE FROM sync_leases
             WHERE user_name = $1 AND device_id = $2 AND collection_id = $3 AND owner = $4",
            &[&key.user, &key.device_id, &key.collection_id, &owner],
        )
        .await?;
        Ok(())
    }

    async fn publish(&self, payload: &str) -> Result<(), StoreError> {
        check_payload(payload)?;
        let c = self.conn().await?;
        query(&c, "SELECT pg_notify($1, $2)", &[&EVENT_CHANNEL, &payload]).await?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.inner.events.subscribe()
    }
}
