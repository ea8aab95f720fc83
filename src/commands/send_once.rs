//! Sending a message exactly once: SendMail (MS-ASCMD 2.2.1.17), SmartReply (2.2.1.20),
//! SmartForward (2.2.1.19) and the Send of a draft (MS-ASEMAIL `email2:Send`, through
//! [`claimed`]) all send through here: claim the retry record, submit, keep the Sent Items
//! copy, settle the record.
//!
//! One message, in this order:
//! 1. the request, in either shape ([`ComposeRequest`]); a message over [`MAX_MESSAGE_BYTES`]
//!    answers Status 122 (14.0+) or HTTP 413 (12.x), logged;
//! 2. the retry check (a retry record in the state store, [`StateStore::claim_send`]): a 14.0+ ClientId already sent by this user and device
//!    answers Status 118 and sends nothing (HTTP 503 while the first request is still
//!    sending); a 12.x message (no ClientId) is recognised by its
//!    Message-ID, or by the SHA-256 of its bytes when it has none, for [`RETRY_WINDOW`], and the
//!    retry answers success (HTTP 200) without sending again. The claim is leased (see
//!    "Claims" below);
//! 3. SmartReply / SmartForward: the original is read (BODY.PEEK, so it stays unread) and
//!    quoted or attached ([`crate::compose::smart`]) unless ReplaceMime;
//! 4. [`compose::prepare`]: From/Sender must be the user's address or an alias (else Status
//!    130 AccessDenied / HTTP 500), recipients from To, Cc, Bcc (none: Status 119), Date and
//!    Message-ID added when missing, Bcc kept out of the submitted copy;
//! 5. SMTP submission as the user ([`crate::backend::submit`]); envelope sender = the login
//!    address;
//! 6. only once the server accepted the message: the Sent Items copy (APPEND with `\Seen` to the
//!    `\Sent` special-use folder, Bcc included) and `\Answered` / `$Forwarded` on the original.
//!    A failure there is logged and the answer is still success: the mail has left, and a
//!    failure answer would make the phone send it again.
//!
//! Failure answers: SMTP unreachable or a temporary (4xx) refusal is HTTP 503 (the phone
//! retries later; nothing was sent). A permanent refusal is Status 120 MailSubmissionFailed
//! (122 when the server says the message is too big, 115 SendQuotaExceeded when the sender is
//! refused for a sending limit, 130 when the sender is refused by policy) or HTTP 500 for 12.x,
//! with the SMTP reply logged. A connection that broke after the whole message was written
//! answers 120 / 500 and records the outcome as unknown (a retry answers the same): the server
//! may have taken the message, and "never twice" wins over "always".
//!
//! Status 113 MailboxQuotaExceeded is not answered: the Sent copy is made after the mail left
//! (a full mailbox is then logged).
//!
//! The retry records live in the state store, per user, so a retry is recognised after a
//! restart and by every gateway node sharing the store. A store that cannot record the claim
//! answers HTTP 503 before anything is sent.
//!
//! Claims: a record is claimed by an owner (this process's random id and a sequence number)
//! under a lease of `smtp.claim_lease_secs`, renewed while the submission runs, and goes
//! through phases: claimed -> data (recorded before `DATA` is issued, and only while the
//! claim is still this request's own) -> sent, or forgotten when nothing was sent, or unknown
//! when the server may have the message but never answered. While the lease runs, a retry is
//! answered "still being sent" (HTTP 503 with Retry-After). Once it ran out (the owner died,
//! or its request was dropped): a claim that never reached `DATA` passes to the retry, which
//! sends; one that did becomes unknown, and the retry, as every later one, is answered Status
//! 120 MailSubmissionFailed (HTTP 500 for 12.x), logged as a warning, and never sent again.
//! A record that cannot be updated after the submission keeps its phase until its lease runs
//! out, with the same rules: never sent twice.
//! Leases are unix seconds compared with the clock of the node that sees the retry, so the
//! nodes sharing a store need clocks that agree to well within the lease.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::backend::submit::{self, Stage, Submission, SubmitError};
use crate::backend::{MailBackend, MailSession, SpecialUse};
use crate::compose::{self, smart, Identity, PrepareError};
use crate::eas::compose_mail::{response, status, ComposeKind, ComposeRequest};
use crate::state::{SendClaim, SendPhase, StateStore};

use super::core::Refusal;
use super::ids::parse_server_id;
use super::{folders, Body, CommandError, Context, Gateway, Outcome};

/// Largest message accepted for sending (after a SmartReply / SmartForward added the
/// original). The HTTP body limit (`server.max_body_bytes`) applies before this.
pub const MAX_MESSAGE_BYTES: usize = 50 * 1024 * 1024;

/// How long a 14.0+ ClientId is remembered.
pub const CLIENT_ID_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a 12.x message is remembered (by Message-ID or content hash).
pub const RETRY_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The request in either shape; a malformed 14.0+ document answers Status 103 (a required
/// element missing) or 101, an unknown AccountId 166.
pub(crate) fn request(
    kind: ComposeKind,
    ctx: &Context,
    body: &Body,
) -> Result<ComposeRequest, Result<Outcome, CommandError>> {
    match body {
        Body::Mime(raw) => Ok(ComposeRequest::from_query(kind, &ctx.line, raw.clone())),
        Body::Wbxml(root) => match ComposeRequest::parse(kind, root) {
            Ok(r) => match r.unacceptable() {
                None => Ok(r),
                Some(st) => Err(Ok(failure(kind, true, st, ""))),
            },
            Err(e) => {
                debug!(error = %e, "malformed {} request", kind.name());
                let st = ComposeRequest::refusal_status(kind, root);
                Err(Ok(failure(kind, true, st, "")))
            }
        },
        Body::Empty => Err(Err(CommandError::BadRequest(format!(
            "{} needs a body",
            kind.name()
        )))),
    }
}

/// Why nothing (or maybe something) was sent.
pub(crate) struct Failed {
    /// The ComposeMail status (MS-ASCMD 2.2.2).
    pub(crate) status: u32,
    pub(crate) reason: &'static str,
    /// Keep the retry record (the message may have been accepted).
    pub(crate) maybe_sent: bool,
}

impl Failed {
    fn new(status: u32, reason: &'static str) -> Failed {
        Failed {
            status,
            reason,
            maybe_sent: false,
        }
    }
}

/// The answer for a message not sent: its ComposeMail status (14.0+), or for 12.x, which has
/// no status, "too large" or "failed".
fn failure(kind: ComposeKind, wbxml: bool, status: u32, reason: &'static str) -> Outcome {
    if wbxml {
        Outcome::Wbxml {
            body: response(kind, status),
            status: Some(status),
        }
    } else {
        let refusal = if status == status::ATTACHMENT_IS_TOO_LARGE {
            Refusal::TooLarge
        } else {
            Refusal::SendFailed
        };
        Outcome::Refused { refusal, reason }
    }
}

/// Sends one message; see the module documentation.
pub(crate) async fn send<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    req: ComposeRequest,
) -> Result<Outcome, CommandError> {
    let kind = req.kind;
    let user = ctx.user.address.as_str();
    if req.mime.len() > MAX_MESSAGE_BYTES {
        warn!(
            user,
            command = kind.name(),
            bytes = req.mime.len(),
            limit = MAX_MESSAGE_BYTES,
            "message over the size limit, not sent"
        );
        return Ok(failure(
            kind,
            req.wbxml,
            status::ATTACHMENT_IS_TOO_LARGE,
            "message too large",
        ));
    }

    let (key, ttl) = retry_key(ctx, &req);
    let retry = Retry {
        key,
        ttl,
        command: kind.name(),
        what: "message",
    };
    let req = &req;
    let sent = claimed(gw, ctx, retry, |claim| async move {
        send_claimed(gw, ctx, req, &claim).await
    })
    .await?;
    match sent {
        Once::Done => {
            info!(
                user,
                command = kind.name(),
                client_id = req.client_id.as_deref().unwrap_or(""),
                "message already sent (a retry): not sent again"
            );
            Ok(if req.wbxml {
                failure(kind, true, status::MESSAGE_PREVIOUSLY_SENT, "")
            } else {
                Outcome::Empty
            })
        }
        Once::Unknown => Ok(failure(
            kind,
            req.wbxml,
            status::MAIL_SUBMISSION_FAILED,
            "outcome of the earlier submission unknown",
        )),
        Once::Ran(Ok(())) => Ok(Outcome::Empty),
        Once::Ran(Err(f)) => Ok(failure(kind, req.wbxml, f.status, f.reason)),
    }
}

/// The retry record a send is claimed under: its key, how long it is remembered, and for the
/// log the command and what is sent ("message", "draft").
pub(crate) struct Retry {
    pub(crate) key: String,
    pub(crate) ttl: Duration,
    pub(crate) command: &'static str,
    pub(crate) what: &'static str,
}

/// What a send attempt says of itself, for the settlement of its retry record.
pub(crate) trait Settles {
    fn settled(&self) -> Settled;
}

impl Settles for Result<(), Failed> {
    fn settled(&self) -> Settled {
        match self {
            Ok(()) => Settled::Sent,
            Err(f) if f.maybe_sent => Settled::Unknown,
            Err(_) => Settled::NotSent,
        }
    }
}

/// How [`claimed`] ended.
pub(crate) enum Once<R> {
    /// This request held the claim and ran the send, which said `R`.
    Ran(R),
    /// Sent already (a retry): nothing was done.
    Done,
    /// An earlier submission may or may not have reached the server: nothing was done
    /// (logged by [`claim`]).
    Unknown,
}

/// Sends exactly once: claims `retry`, runs `send` (preparing and submitting the message)
/// under the claim's lease, and settles the record by what `send` says ([`Settles`]; an
/// error is "not sent"). A send of the same record still in flight, or a store that cannot
/// record the claim, is an error (HTTP 503) before `send` runs.
pub(crate) async fn claimed<B, S, R, F, Fut>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    retry: Retry,
    send: F,
) -> Result<Once<R>, CommandError>
where
    B: MailBackend,
    S: StateStore,
    R: Settles,
    F: FnOnce(Claim) -> Fut,
    Fut: Future<Output = Result<R, CommandError>>,
{
    let claim = match claim(gw, ctx, &retry.key, retry.ttl, retry.command, retry.what).await? {
        Claimed::New(c) => c,
        Claimed::Done => return Ok(Once::Done),
        Claimed::Unknown => return Ok(Once::Unknown),
    };
    let user = ctx.user.address.as_str();
    let result = leased(&gw.store, user, &claim, send(claim.clone())).await;
    let outcome = match &result {
        Ok(r) => r.settled(),
        Err(_) => Settled::NotSent,
    };
    settle(gw, user, &claim, outcome).await;
    result.map(Once::Ran)
}

/// This process as the owner of send claims: random at start, so that the claims of a process
/// that died are never taken for those of the one that followed it.
fn node_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| format!("{:016x}", rand::random::<u64>()))
}

/// A retry record this request holds (see "Claims" in the module documentation).
#[derive(Clone)]
pub(crate) struct Claim {
    key: String,
    /// `<node id>/<n>`: this process, and this claim of it.
    owner: String,
    lease: Duration,
}

/// What [`claim`] found.
enum Claimed {
    /// The record is this request's: it sends.
    New(Claim),
    /// Sent already.
    Done,
    /// An earlier submission may or may not have reached the server (its gateway stopped
    /// after DATA); never sent again. Logged by [`claim`].
    Unknown,
}

/// How a claimed send ended, for [`settle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The server accepted the message.
    Sent,
    /// Nothing was sent: the record is forgotten and a retry sends.
    NotSent,
    /// The server may have the message (the connection broke after it was written).
    Unknown,
}

/// The id part of a retry record key (the ClientId, Message-ID or draft id), for the log.
fn id_of(key: &str) -> &str {
    key.rsplit('\n').next().unwrap_or("")
}

/// Claims the retry record `key` for `ttl` before `what` (a message, a draft) is sent by
/// `command`: [`Claimed::New`] when this request now owns it and sends. The same send still
/// in flight (its owner's lease runs), or a store that cannot record the claim, answers
/// "retry later" (HTTP 503): nothing was sent.
async fn claim<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    key: &str,
    ttl: Duration,
    command: &'static str,
    what: &str,
) -> Result<Claimed, CommandError> {
    static CLAIMS: AtomicU64 = AtomicU64::new(0);
    let user = ctx.user.address.as_str();
    let lease = gw.config.smtp_claim_lease;
    let owner = format!("{}/{}", node_id(), CLAIMS.fetch_add(1, Ordering::Relaxed));
    let expires = ctx.now.saturating_add(ttl.as_secs() as i64);
    let lease_until = ctx.now.saturating_add(lease.as_secs() as i64);
    match gw
        .store
        .claim_send(user, key, &owner, ctx.now, lease_until, expires)
        .await
    {
        Ok(SendClaim::New) => Ok(Claimed::New(Claim {
            key: key.to_string(),
            owner,
            lease,
        })),
        Ok(SendClaim::Done) => Ok(Claimed::Done),
        Ok(SendClaim::Unknown) => {
            warn!(
                user,
                device = ctx.device_id(),
                client_id = id_of(key),
                command,
                "send outcome unknown: an earlier submission of this {what} stopped after the \
                 mail server may have got it; answered as failed, not sent again"
            );
            Ok(Claimed::Unknown)
        }
        Ok(SendClaim::InFlight) => {
            info!(
                user,
                command, "the same {what} is being sent by another request: retry later"
            );
            Err(CommandError::Unavailable(format!(
                "the same {what} is still being sent"
            )))
        }
        Err(e) => {
            // Nothing was sent and nothing recorded: the phone retries later.
            warn!(user, command, error = %e, "cannot record the send; {what} not sent");
            Err(CommandError::Unavailable(
                "the send retry record cannot be written".into(),
            ))
        }
    }
}

/// Runs `send` (the submission of `claim`) while renewing the claim's lease, so that a
/// submission that takes long but is alive is never judged dead. Dropping the returned future
/// (a dropped request, a dying process) stops the renewals with it.
async fn leased<S: StateStore, T>(
    store: &S,
    user: &str,
    claim: &Claim,
    send: impl Future<Output = T>,
) -> T {
    tokio::select! {
        r = send => r,
        never = renew(store, user, claim) => match never {},
    }
}

/// Renews `claim`'s lease every third of it, for as long as it is polled.
async fn renew<S: StateStore>(store: &S, user: &str, claim: &Claim) -> Infallible {
    let every = (claim.lease / 3).max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let until = now.saturating_add(claim.lease.as_secs() as i64);
        match store
            .renew_send(user, &claim.key, &claim.owner, until)
            .await
        {
            Ok(true) => debug!(user, until, "send claim renewed"),
            Ok(false) => {
                // Taken over before DATA (the DATA check stops this submission) or judged
                // unknown: nothing left to renew.
                warn!(
                    user,
                    client_id = id_of(&claim.key),
                    "the send claim is no longer this request's"
                );
                return std::future::pending().await;
            }
            Err(e) => warn!(user, error = %e, "cannot renew the send claim"),
        }
    }
}

/// Records how the send of `claim` ended. A busy store is tried again a few times; when it
/// still fails the record keeps its phase until its lease runs out (a retry is then sent only
/// if DATA was never issued, else answered as failed): never sent twice.
async fn settle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    user: &str,
    claim: &Claim,
    outcome: Settled,
) {
    let (key, owner) = (claim.key.as_str(), claim.owner.as_str());
    for attempt in 0..3u64 {
        let r = match outcome {
            Settled::Sent => gw
                .store
                .set_send_phase(user, key, owner, SendPhase::Sent)
                .await
                .map(|_| ()),
            Settled::Unknown => gw
                .store
                .set_send_phase(user, key, owner, SendPhase::Unknown)
                .await
                .map(|_| ()),
            Settled::NotSent => gw.store.release_send(user, key, owner).await,
        };
        match r {
            Ok(()) => return,
            Err(e) if e.is_retryable() && attempt < 2 => {
                tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
            }
            Err(e) => {
                warn!(
                    user,
                    ?outcome,
                    error = %e,
                    "cannot update the send retry record; it keeps its phase until its lease runs out"
                );
                return;
            }
        }
    }
}

/// Records that `claim`'s message may reach the server from now on (DATA), if the claim is
/// still this request's own: the check made before DATA.
async fn start_data<S: StateStore>(store: &S, user: &str, claim: &Claim) -> Result<(), String> {
    for attempt in 0..3u64 {
        match store
            .set_send_phase(user, &claim.key, &claim.owner, SendPhase::Data)
            .await
        {
            Ok(true) => return Ok(()),
            Ok(false) => {
                return Err(
                    "the send claim passed to another request (its lease ran out)".to_string(),
                )
            }
            Err(e) if e.is_retryable() && attempt < 2 => {
                tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
            }
            Err(e) => return Err(format!("cannot record the send: {e}")),
        }
    }
    Err("cannot record the send".to_string())
}

/// Sends a draft (Sync Add / Change with `email2:Send`) like SendMail with SaveInSentItems,
/// on the caller's IMAP session: the `send` of a [`claimed`] draft.
pub(crate) async fn send_draft<M: MailSession, S: StateStore>(
    gw: &Gateway<impl MailBackend, S>,
    ctx: &Context,
    session: &mut M,
    claim: &Claim,
    mime: Bytes,
) -> Result<Result<(), Failed>, CommandError> {
    let req = ComposeRequest {
        kind: ComposeKind::SendMail,
        client_id: None,
        save_in_sent: true,
        replace_mime: false,
        source: None,
        account_id: None,
        mime,
        wbxml: true,
    };
    if req.mime.len() > MAX_MESSAGE_BYTES {
        return Ok(Err(Failed::new(
            status::ATTACHMENT_IS_TOO_LARGE,
            "message too large",
        )));
    }
    send_in_session::<M, S>(gw, ctx, &req, claim, Some(session)).await
}

async fn send_claimed<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    req: &ComposeRequest,
    claim: &Claim,
) -> Result<Result<(), Failed>, CommandError> {
    let needs_imap = req.save_in_sent || req.kind != ComposeKind::SendMail;
    if !needs_imap {
        return send_in_session::<B::Session, S>(gw, ctx, req, claim, None).await;
    }
    let mut session = gw
        .backend
        .login(&ctx.user.credentials, ctx.client_ip)
        .await?;
    let r = send_in_session::<B::Session, S>(gw, ctx, req, claim, Some(&mut session)).await;
    session.logout().await;
    r
}

async fn send_in_session<M: MailSession, S: StateStore>(
    gw: &Gateway<impl MailBackend, S>,
    ctx: &Context,
    req: &ComposeRequest,
    claim: &Claim,
    mut session: Option<&mut M>,
) -> Result<Result<(), Failed>, CommandError> {
    let user = ctx.user.address.as_str();
    let kind = req.kind;
    let (raw, original) = match with_original(gw, ctx, req, session.as_deref_mut()).await? {
        Ok(x) => x,
        Err(f) => return Ok(Err(f)),
    };
    let out = match prepared(gw, ctx, kind, raw) {
        Ok(o) => o,
        Err(f) => return Ok(Err(f)),
    };
    if let Err(f) = submitted(gw, ctx, kind, &out, claim).await? {
        return Ok(Err(f));
    }

    // The mail has left: from here on, failures are only logged.
    if let Some(s) = session {
        if req.save_in_sent {
            save_in_sent(gw, s, ctx, &out).await;
        }
        if let Some((mailbox, uid)) = original {
            let flag = if kind == ComposeKind::SmartReply {
                "\\Answered"
            } else {
                "$Forwarded"
            };
            match s.store_flags(&mailbox, uid, &[flag.to_string()], &[]).await {
                Ok(true) => {}
                Ok(false) => info!(
                    user,
                    mailbox, uid, "original gone before it could be flagged"
                ),
                Err(e) => warn!(user, mailbox, uid, error = %e, "cannot flag the original"),
            }
        }
    }
    Ok(Ok(()))
}

/// The message to send: the device's, with the original of a SmartReply / SmartForward
/// quoted or attached (unless ReplaceMime), and where that original is (to flag it later).
async fn with_original<M: MailSession, S: StateStore>(
    gw: &Gateway<impl MailBackend, S>,
    ctx: &Context,
    req: &ComposeRequest,
    session: Option<&mut M>,
) -> Result<Result<(Bytes, Option<(String, u32)>), Failed>, CommandError> {
    let user = ctx.user.address.as_str();
    let kind = req.kind;
    // The original of a SmartReply / SmartForward, and the message to send.
    let mut raw = req.mime.clone();
    let mut original: Option<(String, u32)> = None;
    if let (Some(s), ComposeKind::SmartReply | ComposeKind::SmartForward) = (session, kind) {
        original = locate(gw, s, user, req).await?;
        match (&original, req.replace_mime) {
            (None, true) => {
                info!(
                    user,
                    command = kind.name(),
                    "original not found; sending the device's message as is"
                );
            }
            (None, false) => {
                info!(user, command = kind.name(), "original not found");
                return Ok(Err(Failed::new(
                    status::ITEM_NOT_FOUND,
                    "original not found",
                )));
            }
            (Some(_), true) => {}
            (Some((mailbox, uid)), false) => {
                let fetched = s.fetch_messages(mailbox, &[*uid]).await?;
                let Some((_, original_raw)) = fetched.into_iter().next() else {
                    info!(user, command = kind.name(), "original vanished");
                    return Ok(Err(Failed::new(
                        status::ITEM_NOT_FOUND,
                        "original not found",
                    )));
                };
                let how = if kind == ComposeKind::SmartReply {
                    smart::SmartKind::Reply
                } else {
                    smart::SmartKind::Forward
                };
                match smart::compose(how, &raw, &original_raw) {
                    Ok(v) => raw = Bytes::from(v),
                    Err(e) => {
                        info!(user, command = kind.name(), error = %e, "unusable message");
                        return Ok(Err(Failed::new(status::INVALID_MIME, "invalid MIME")));
                    }
                }
            }
        }
    }
    Ok(Ok((raw, original)))
}

/// The message checked and completed for submission ([`compose::prepare`]).
fn prepared<S: StateStore>(
    gw: &Gateway<impl MailBackend, S>,
    ctx: &Context,
    kind: ComposeKind,
    raw: Bytes,
) -> Result<compose::Outgoing, Failed> {
    let user = ctx.user.address.as_str();
    // Checks, envelope, missing fields.
    let who = Identity {
        address: ctx.user.address.clone(),
        aliases: gw
            .config
            .identity
            .aliases
            .get(&ctx.user.address)
            .cloned()
            .unwrap_or_default(),
    };
    let out = match compose::prepare(raw, &who, ctx.now) {
        Ok(o) => o,
        Err(e) => {
            info!(user, command = kind.name(), error = %e, "message refused");
            let (st, reason) = match e {
                PrepareError::InvalidMime => (status::INVALID_MIME, "invalid MIME"),
                PrepareError::NoRecipient => (status::MESSAGE_HAS_NO_RECIPIENT, "no recipient"),
                PrepareError::FromNotAllowed(_) => (status::ACCESS_DENIED, "sender not allowed"),
                PrepareError::BadRecipient(_) => (status::MAIL_SUBMISSION_FAILED, "bad recipient"),
            };
            return Err(Failed::new(st, reason));
        }
    };
    if out.submitted_len() > MAX_MESSAGE_BYTES {
        warn!(
            user,
            command = kind.name(),
            bytes = out.submitted_len(),
            limit = MAX_MESSAGE_BYTES,
            "message over the size limit, not sent"
        );
        return Err(Failed::new(
            status::ATTACHMENT_IS_TOO_LARGE,
            "message too large",
        ));
    }
    Ok(out)
}

/// SMTP submission as the user, DATA only while `claim` is still this request's.
async fn submitted<S: StateStore>(
    gw: &Gateway<impl MailBackend, S>,
    ctx: &Context,
    kind: ComposeKind,
    out: &compose::Outgoing,
    claim: &Claim,
) -> Result<Result<(), Failed>, CommandError> {
    let user = ctx.user.address.as_str();
    // Submission.
    let started = Instant::now();
    let submitted = submit::submit(
        &gw.config.smtp,
        &ctx.user.credentials,
        Submission {
            from: &ctx.user.address,
            recipients: &out.recipients,
            size: out.submitted_len(),
            eight_bit: out.is_8bit(),
            message: out.wire_chunks(),
            before_data: move || start_data(&gw.store, user, claim),
        },
    )
    .await;
    match submitted {
        Ok(accepted) => info!(
            user,
            command = kind.name(),
            message_id = %out.message_id,
            recipients = out.recipients.len(),
            bytes = out.submitted_len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            reply = %accepted.reply,
            "mail submitted"
        ),
        Err(e) => {
            return match e {
                SubmitError::Unavailable(r) => {
                    warn!(user, command = kind.name(), reason = %r, "SMTP unavailable, not sent");
                    Err(CommandError::Unavailable(r))
                }
                SubmitError::AuthFailed => {
                    warn!(user, command = kind.name(), "SMTP server refused the login");
                    Err(CommandError::AuthFailed)
                }
                SubmitError::Refused {
                    stage,
                    code,
                    text,
                    recipient,
                } => {
                    let st = refusal_status(stage, code, &text);
                    warn!(
                        user,
                        command = kind.name(),
                        ?stage,
                        code,
                        reply = %text,
                        recipient = recipient.as_deref().unwrap_or(""),
                        status = st,
                        "SMTP server refused the mail, not sent"
                    );
                    Ok(Err(Failed::new(st, "SMTP refused the mail")))
                }
                SubmitError::Uncertain(r) => {
                    warn!(
                        user,
                        command = kind.name(),
                        message_id = %out.message_id,
                        reason = %r,
                        "SMTP connection lost after the message was written; it may have been sent"
                    );
                    Ok(Err(Failed {
                        maybe_sent: true,
                        ..Failed::new(status::MAIL_SUBMISSION_FAILED, "SMTP outcome unknown")
                    }))
                }
                SubmitError::Invalid(r) => {
                    info!(user, command = kind.name(), reason = %r, "cannot submit");
                    Ok(Err(Failed::new(
                        status::MAIL_SUBMISSION_FAILED,
                        "cannot submit",
                    )))
                }
            };
        }
    }
    Ok(Ok(()))
}

/// The mailbox and UID of the original, from Source (or the 12.x query): FolderId + ItemId, or
/// a Search LongId. `None` when its folder does not exist or it cannot be addressed; whether
/// the mail itself still exists is found out by the FETCH or the STORE that follows.
async fn locate<M: MailSession, S: StateStore>(
    gw: &Gateway<impl MailBackend, S>,
    session: &mut M,
    user: &str,
    req: &ComposeRequest,
) -> Result<Option<(String, u32)>, CommandError> {
    let Some(src) = &req.source else {
        return Ok(None);
    };
    if let (None, Some(long_id)) = (&src.item_id, &src.long_id) {
        // A Search result: looked up in this user's own folders only, and only while the
        // folder's UIDVALIDITY is the one the LongId was made under.
        let Some((collection, uid_validity, uid)) = crate::eas::search::parse_long_id(long_id)
        else {
            return Ok(None);
        };
        let Some(mailbox) = folders::resolve(&gw.store, &gw.folders, session, user, &collection)
            .await?
            .and_then(|r| r.mailbox)
        else {
            return Ok(None);
        };
        let state = session.select(&mailbox.name).await?;
        if state.uid_validity != uid_validity {
            return Ok(None);
        }
        return Ok(Some((mailbox.name, uid)));
    }
    let (Some(item_id), folder_id) = (&src.item_id, &src.folder_id) else {
        return Ok(None);
    };
    // A ServerId is `<collection>:<uid>`; the FolderId is then redundant but must agree.
    let collection = match folder_id {
        Some(f) => f.as_str(),
        None => item_id.rsplit_once(':').map_or("", |(c, _)| c),
    };
    let Some(uid) = parse_server_id(collection, item_id) else {
        return Ok(None);
    };
    let Some(resolved) =
        folders::resolve(&gw.store, &gw.folders, session, user, collection).await?
    else {
        return Ok(None);
    };
    let Some(mailbox) = resolved.mailbox else {
        return Ok(None);
    };
    Ok(Some((mailbox.name, uid)))
}

async fn save_in_sent<M: MailSession, S: StateStore>(
    gw: &Gateway<impl MailBackend, S>,
    session: &mut M,
    ctx: &Context,
    out: &compose::Outgoing,
) {
    let user = ctx.user.address.as_str();
    let list = match folders::list(&gw.store, &gw.folders, session, user).await {
        Ok(l) => l,
        Err(e) => {
            warn!(user, error = %e, "cannot list folders; no Sent Items copy");
            return;
        }
    };
    let Some(sent) = folders::special(&list, SpecialUse::Sent).and_then(|r| r.mailbox.clone())
    else {
        warn!(
            user,
            "no Sent Items folder (SPECIAL-USE \\Sent); no copy kept"
        );
        return;
    };
    let before = crate::push::own::before(session, &sent.name).await;
    match session
        .append_parts(&sent.name, &["\\Seen".to_string()], out.sent_copy_parts())
        .await
    {
        Ok(uid) => {
            debug!(user, mailbox = sent.name, ?uid, "Sent Items copy stored");
            // The copy is the device's own: it must not wake the device's Ping on Sent Items.
            if let (Some(before), Some(uid)) = (before, uid) {
                let expected = crate::push::own::Expected {
                    appended: Some(uid),
                    removed: 0,
                };
                if let Some(after) =
                    crate::push::own::only_ours(session, &sent.name, before, expected).await
                {
                    crate::cluster::own_change(
                        gw,
                        user,
                        ctx.device_id(),
                        &sent.name,
                        before,
                        after,
                    );
                }
            }
        }
        Err(e) => warn!(user, mailbox = sent.name, error = %e, "cannot store the Sent Items copy"),
    }
}

/// The EAS status for a permanent SMTP refusal.
pub fn refusal_status(stage: Stage, code: u16, text: &str) -> u32 {
    let t = text.to_ascii_lowercase();
    let too_big = t.contains("5.3.4")
        || t.contains("5.2.3")
        || (code == 552
            && (t.contains("size") || t.contains("too big") || t.contains("too large")));
    if too_big {
        return status::ATTACHMENT_IS_TOO_LARGE;
    }
    if stage == Stage::Mail {
        if t.contains("quota") || t.contains("rate") || t.contains("limit") {
            return status::SEND_QUOTA_EXCEEDED;
        }
        if t.contains("5.7.") {
            return status::ACCESS_DENIED;
        }
    }
    status::MAIL_SUBMISSION_FAILED
}

/// The retry record's key and lifetime for a request.
fn retry_key(ctx: &Context, req: &ComposeRequest) -> (String, Duration) {
    if let Some(cid) = req.client_id.as_deref().filter(|c| !c.is_empty()) {
        return (format!("cid\n{}\n{cid}", ctx.device_id()), CLIENT_ID_TTL);
    }
    let message_id = mail_parser::MessageParser::default()
        .parse_headers(&req.mime)
        .and_then(|m| m.message_id().map(str::to_string))
        .filter(|id| !id.is_empty());
    let key = match message_id {
        Some(id) => format!("mid\n{}\n{id}", req.kind.name()),
        None => format!(
            "sha\n{}\n{}",
            req.kind.name(),
            hex::encode(Sha256::digest(&req.mime))
        ),
    };
    (key, RETRY_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_statuses() {
        assert_eq!(
            refusal_status(
                Stage::Message,
                552,
                "5.3.4 Message size exceeds fixed limit"
            ),
            status::ATTACHMENT_IS_TOO_LARGE
        );
        assert_eq!(
            refusal_status(Stage::Mail, 550, "5.7.1 sending rate limit exceeded"),
            status::SEND_QUOTA_EXCEEDED
        );
        assert_eq!(
            refusal_status(
                Stage::Mail,
                553,
                "5.7.1 Sender address rejected: not owned by user"
            ),
            status::ACCESS_DENIED
        );
        assert_eq!(
            refusal_status(Stage::Rcpt, 554, "5.7.1 Relay access denied"),
            status::MAIL_SUBMISSION_FAILED
        );
        assert_eq!(
            refusal_status(Stage::Rcpt, 550, "5.1.1 User unknown"),
            status::MAIL_SUBMISSION_FAILED
        );
    }
}
