//! The change feed of a shared PostgreSQL database: triggers on `tags` and
//! `manifests` send the repository's name on the `berth_manifests` channel
//! when a transaction that changed them commits, and each replica keeps one
//! connection (outside the pool) that `LISTEN`s and hands what it hears to
//! [`ChangeFeed`] subscribers.
//!
//! Notifications are not replayed: while that connection is down, changes
//! go unheard. The feed therefore says [`Change::Lost`] the moment it
//! suspects so (an error, a closed socket, a heartbeat that gets no answer)
//! and [`Change::Live`] once it listens again; a subscriber must not trust
//! anything it cached across the gap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::metadata::{Change, ChangeFeed};

/// Schema step 2 → 3: the triggers that feed the channel. A manifest
/// insert needs no notice (nothing can have cached its absence); a
/// repository's deletion cascades into both tables and so is heard too.
pub(super) const SCHEMA_V3: &str = r#"
CREATE FUNCTION berth_manifest_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('berth_manifests', OLD.repository);
    ELSE
        PERFORM pg_notify('berth_manifests', NEW.repository);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tags_changed AFTER INSERT OR UPDATE OR DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION berth_manifest_changed();
CREATE TRIGGER manifests_changed AFTER UPDATE OR DELETE ON manifests
    FOR EACH ROW EXECUTE FUNCTION berth_manifest_changed();
"#;

const CHANNEL: &str = "berth_manifests";
/// How the listening connection shows in `pg_stat_activity`.
pub(super) const APPLICATION_NAME: &str = "berth change feed";
/// Changes a slow subscriber may fall behind by before it must start over.
const CAPACITY: usize = 4096;
/// How often the listener proves its connection still answers: a
/// half-open TCP connection would otherwise stay silent and look live.
const HEARTBEAT: Duration = Duration::from_secs(2);
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long opening the store waits for the first `LISTEN`, so that a
/// replica normally starts with its cache on.
const FIRST_LISTEN: Duration = Duration::from_secs(5);

/// One replica's listener, shared by every subscriber; stops when dropped.
pub(super) struct Feed {
    sender: broadcast::Sender<Change>,
    live: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Feed {
    /// Starts listening on a connection made from `config` (on the current
    /// Tokio runtime); returns once the first `LISTEN` succeeded or failed.
    pub(super) async fn start(mut config: tokio_postgres::Config) -> Feed {
        config
            .application_name(APPLICATION_NAME)
            .connect_timeout(Duration::from_secs(5))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        let (sender, _) = broadcast::channel(CAPACITY);
        let live = Arc::new(AtomicBool::new(false));
        let (ready, first) = oneshot::channel();
        let task = tokio::spawn(follow(config, sender.clone(), live.clone(), ready));
        let _ = tokio::time::timeout(FIRST_LISTEN, first).await;
        Feed { sender, live, task: task.abort_handle() }
    }

    pub(super) fn subscribe(&self) -> ChangeFeed {
        // Subscribe before reading the flag: a transition after the read is
        // then also in the receiver.
        let receiver = self.sender.subscribe();
        ChangeFeed::new(receiver, self.live.clone())
    }
}

/// Listens, forwards, and on any failure reports the loss and reconnects
/// with a growing delay; runs until aborted.
async fn follow(
    config: tokio_postgres::Config,
    sender: broadcast::Sender<Change>,
    live: Arc<AtomicBool>,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut delay = RETRY_MIN;
    loop {
        match listen(&config).await {
            Ok((client, mut heard)) => {
                // The flag before the message, so that a subscriber reading
                // the flag after subscribing never misses the transition.
                live.store(true, Ordering::Release);
                let _ = sender.send(Change::Live);
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                delay = RETRY_MIN;
                let why = forward(&client, &mut heard, &sender).await;
                tracing::warn!(
                    error = %why,
                    "lost the PostgreSQL change feed; manifests are not cached until it is back"
                );
            }
            Err(e) => tracing::warn!(error = %super::pg(e), "cannot listen for PostgreSQL changes"),
        }
        live.store(false, Ordering::Release);
        let _ = sender.send(Change::Lost);
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// What the listening connection's driver hears: a repository name, or why
/// the connection ended.
type Heard = mpsc::UnboundedReceiver<Result<String, String>>;

/// Connects and issues `LISTEN`; the connection is driven on its own task,
/// which ends when the returned client is dropped.
async fn listen(config: &tokio_postgres::Config) -> Result<(Client, Heard), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, heard) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
            let sent = match message {
                Some(Ok(AsyncMessage::Notification(n))) => tx.send(Ok(n.payload().to_owned())),
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    let _ = tx.send(Err(e.to_string()));
                    break;
                }
                None => break,
            };
            if sent.is_err() {
                break;
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    Ok((client, heard))
}

/// Forwards notifications until the connection fails; returns why.
async fn forward(client: &Client, heard: &mut Heard, sender: &broadcast::Sender<Change>) -> String {
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = heard.recv() => match message {
                Some(Ok(repository)) => {
                    let _ = sender.send(Change::Repository(repository));
                }
                Some(Err(e)) => return e,
                None => return "the connection closed".to_owned(),
            },
            _ = heartbeat.tick() => {
                match tokio::time::timeout(HEARTBEAT, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return e.to_string(),
                    Err(_) => return "a heartbeat got no answer".to_owned(),
                }
            }
        }
    }
}
