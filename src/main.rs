//! The `eas-gateway` binary: parse the command line, load the configuration, run.

// Panics outside tests: none. Where an index is provably in range, the smallest item carries an
// `allow` with the reason.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use eas_gateway::backend::imap::ImapBackend;
use eas_gateway::backend::{self, Credentials, Secret};
use eas_gateway::commands::Gateway;
use eas_gateway::config::{Access, Config};
use eas_gateway::http::{self, Server};
use eas_gateway::state::Store;

#[derive(Parser)]
#[command(
    name = "eas-gateway",
    version,
    about = "Exchange ActiveSync gateway for IMAP/SMTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// `text` (one line per event, the default) or `json` (one JSON object per line, for
        /// log shippers).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate the configuration and probe the IMAP and SMTP servers.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
        /// Also log in as this user and print the post-login IMAP capabilities.
        #[arg(long)]
        user: Option<String>,
        /// Read the probe password from this file (else it is asked for on the terminal).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// The device registry: list, inspect, resync or forget devices, read their request logs.
    /// Without a subcommand: `list`.
    Devices {
        /// The gateway's configuration (its state store is used).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Only this user's devices (for `devices` without a subcommand).
        #[arg(long)]
        user: Option<String>,
        #[command(subcommand)]
        op: Option<DevicesOp>,
    },
    /// Check the path from phones through the reverse proxy to the gateway: is a long request
    /// cut, is the answer buffered or compressed, which client address does the gateway see.
    /// Needs `[server] doctor = true` on the gateway, or a user's login.
    Doctor {
        /// The address phones use, e.g. https://mail.example.org
        #[arg(long)]
        url: String,
        /// Log in as this user (else the gateway must have `[server] doctor = true`).
        #[arg(long)]
        user: Option<String>,
        /// Read the user's password from this file (else it is asked for on the terminal).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Hold the request this many seconds (default: the gateway's longest heartbeat plus
        /// 60 s, about an hour).
        #[arg(long)]
        hold: Option<u64>,
        /// Seconds of the streamed answer.
        #[arg(long, default_value_t = 6)]
        stream: u64,
        /// Also trust the certificates in this PEM file (a self-signed gateway or proxy).
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Print every WBXML tag: PAGE TOKEN TAG.
    Codepages,
    /// Convert between WBXML and XML.
    Wbxml {
        #[command(subcommand)]
        op: WbxmlOp,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum DevicesOp {
    /// Every known device: a table with local times, or JSON.
    List {
        /// Only this user's devices.
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
        /// Only devices waiting in quarantine (release one with `devices allow`).
        #[arg(long)]
        quarantined: bool,
    },
    /// Everything known about one device, with each folder's sync state.
    Show {
        user: String,
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// Forget all state of a device: its next request starts over with Provision and
    /// FolderSync (nothing on the mail server changes).
    Remove { user: String, device: String },
    /// Make the device sync again from the start: the next Sync of the folder (or of every
    /// folder, and the next FolderSync) answers that its sync key is invalid.
    Resync {
        user: String,
        device: String,
        /// Only this folder (display name or ServerId).
        #[arg(long)]
        folder: Option<String>,
    },
    /// Wipe the device: its next request gets the Provision dance with RemoteWipe; once it
    /// acknowledged, it is refused until removed.
    Wipe { user: String, device: String },
    /// Remove only this account from the device (AccountOnlyRemoteWipe, EAS 16.1 devices).
    AccountWipe { user: String, device: String },
    /// Cancel a wipe the device has not acknowledged yet.
    CancelWipe { user: String, device: String },
    /// Let the device in whatever the access rules say (releases a quarantined device).
    Allow { user: String, device: String },
    /// Refuse the device (common status 129) whatever the access rules say.
    Block { user: String, device: String },
    /// Drop the allow/block override: the access rules decide again.
    ResetAccess { user: String, device: String },
    /// Write the device's requests and responses, decoded to XML, to its file under
    /// devices.trace_dir (credentials always redacted, mail bodies unless --bodies); the
    /// running gateway picks it up with the device's next request.
    Trace {
        user: String,
        device: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// Include mail bodies and attachments.
        #[arg(long)]
        bodies: bool,
    },
    /// The device's last requests (devices.log_entries are kept).
    Log {
        user: String,
        device: String,
        /// Keep printing new requests as they are recorded.
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        json: bool,
        /// At most this many of the recorded requests (default: all kept).
        #[arg(long)]
        limit: Option<u32>,
    },
}

#[derive(Subcommand)]
enum WbxmlOp {
    /// WBXML (FILE or - for stdin) to XML on stdout.
    Decode {
        #[arg(default_value = "-")]
        file: String,
    },
    /// XML (FILE or - for stdin) to WBXML on stdout.
    Encode {
        #[arg(default_value = "-")]
        file: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Codepages => {
            let stdout = std::io::stdout();
            eas_gateway::cli::wbxml::print_codepages(&mut stdout.lock())?;
            Ok(())
        }
        Cmd::Wbxml {
            op: WbxmlOp::Decode { file },
        } => eas_gateway::cli::wbxml::decode_command(&file),
        Cmd::Wbxml {
            op: WbxmlOp::Encode { file },
        } => eas_gateway::cli::wbxml::encode_command(&file),
        Cmd::Serve { config, log_format } => runtime()?.block_on(serve(config, log_format)),
        Cmd::Doctor {
            url,
            user,
            password_file,
            hold,
            stream,
            ca_file,
        } => {
            let password = match (&user, password_file) {
                (Some(_), Some(f)) => Some(read_password_file(&f)?),
                (Some(u), None) => Some(prompt_password(u)?),
                (None, _) => None,
            };
            let opts = eas_gateway::cli::doctor::Options {
                url,
                user,
                password,
                hold,
                stream,
                ca_file,
            };
            let report = runtime()?.block_on(eas_gateway::cli::doctor::run(&opts))?;
            for line in &report.lines {
                println!("{line}");
            }
            if report.problems > 0 {
                println!("{} problem(s) found", report.problems);
                std::process::exit(1);
            }
            println!("no problem found");
            Ok(())
        }
        Cmd::CheckConfig {
            config,
            user,
            password_file,
        } => runtime()?.block_on(check_config(config, user, password_file)),
        Cmd::Devices { config, user, op } => {
            let Some(config) = config else {
                anyhow::bail!("devices: --config FILE is required");
            };
            let op = op.unwrap_or(DevicesOp::List {
                user,
                json: false,
                quarantined: false,
            });
            runtime()?.block_on(devices(config, op))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_env("EAS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    match format {
        // Colours only on a terminal: the journal and log files get plain text.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stdout().is_terminal())
            .init(),
        // One object per line: time, level, target, the message and fields, and the
        // request's span fields (client_ip, cmd, user, device_id, ...).
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

async fn serve(path: PathBuf, log_format: LogFormat) -> anyhow::Result<()> {
    init_logging(log_format);
    let config = Arc::new(Config::load(&path)?);
    // The URL is not echoed: a PostgreSQL one may hold a password.
    let store = Store::open_url(&config.state_url)
        .await
        .context("opening the state store")?;
    let backend = ImapBackend::new(config.imap.clone());
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let server = Arc::new(Server::new(Gateway::new(backend, store, config)));
    reload_on_sighup(path.clone(), server.clone())?;
    heap_trim::start();
    eas_gateway::cluster::spawn_bridge(server.clone(), |s| &s.gateway);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let hub = server.gateway.push.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: answering waiting requests");
        // Waiting Pings and hanging Syncs answer at once, so phones come back without a resync.
        hub.shutdown();
        let _ = tx.send(true);
    });
    let admin = match &server.gateway.config.admin {
        Some(a) => {
            let listener = TcpListener::bind(a.listen)
                .await
                .with_context(|| format!("binding the admin listener {}", a.listen))?;
            let server = server.clone();
            let rx = rx.clone();
            // A missing token file or bad TLS files stop the start, before phones are served.
            eas_gateway::admin::check(a)?;
            Some(tokio::spawn(async move {
                if let Err(e) = eas_gateway::admin::serve(listener, server, rx).await {
                    tracing::error!(error = %e, "admin listener failed");
                }
            }))
        }
        None => None,
    };
    let push = &server.gateway.config.push;
    if let (Some(listen), Some(secret)) = (push.events_listen, push.events_secret.clone()) {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the mail events listener {listen}"))?;
        let hub = server.gateway.push.clone();
        let rx = rx.clone();
        tokio::spawn(async move {
            if let Err(e) = http::events::serve(listener, hub, secret, rx).await {
                tracing::error!(error = %e, "mail events listener failed");
            }
        });
    }
    http::serve(listener, server.clone(), rx).await?;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    // Let the answered requests reach the wire before the connection tasks are dropped.
    let started = std::time::Instant::now();
    while server.gateway.push.stats().waiters > 0 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// On SIGHUP: reads the configuration file again and applies what may change while running
/// (`http::reload`): the TLS certificate, `server.trusted_proxies`, `server.doctor`. A file with
/// errors changes nothing. Waiting requests and open connections are not touched.
fn reload_on_sighup(path: PathBuf, server: Arc<Server<ImapBackend, Store>>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let new = match Config::load(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "reload (SIGHUP): the configuration has an error; nothing changed");
                        continue;
                    }
                };
                let r = server.reload(&new);
                for f in &r.failed {
                    tracing::error!(error = %f, "reload (SIGHUP): not applied; the old value stays");
                }
                tracing::info!(applied = %r.applied.join(", "), "reload (SIGHUP): configuration applied");
                if !r.need_restart.is_empty() {
                    tracing::warn!(
                        sections = %r.need_restart.join(", "),
                        "reload (SIGHUP): these changed but are read only at start: restart the gateway for them"
                    );
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (path, server);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn check_config(
    path: PathBuf,
    user: Option<String>,
    password_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    println!("configuration {}: ok", path.display());
    let creds = match user {
        Some(u) => {
            let password = match password_file {
                Some(f) => read_password_file(&f)?,
                None => prompt_password(&u)?,
            };
            Some(Credentials {
                login: eas_gateway::http::auth::normalise(&u, &config.identity.domain),
                password: Secret::new(password),
            })
        }
        None => None,
    };
    let imap = backend::imap::probe_imap(&config.imap, creds.as_ref()).await;
    match imap {
        Ok(p) => {
            println!(
                "imap {}:{}: ok\n  capabilities: {}",
                config.imap.host,
                config.imap.port,
                p.pre_login.join(" ")
            );
            if let Some(post) = p.post_login {
                println!("  after login: {}", post.join(" "));
            }
        }
        Err(e) => anyhow::bail!("imap {}:{}: {e}", config.imap.host, config.imap.port),
    }
    match backend::smtp::probe_smtp(&config.smtp).await {
        Ok(ext) => println!(
            "smtp {}:{}: ok\n  extensions: {}",
            config.smtp.host,
            config.smtp.port,
            ext.join(" ")
        ),
        Err(e) => anyhow::bail!("smtp {}:{}: {e}", config.smtp.host, config.smtp.port),
    }
    Ok(())
}

fn read_password_file(f: &std::path::Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(f)
        .with_context(|| format!("reading {}", f.display()))?
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

fn prompt_password(user: &str) -> anyhow::Result<String> {
    eprint!("password for {user}: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn devices(path: PathBuf, op: DevicesOp) -> anyhow::Result<()> {
    use eas_gateway::cli::devices as d;
    // Diagnostics and the record of each change go to stderr; stdout is the answer.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("EAS_LOG")
                .unwrap_or_else(|_| EnvFilter::new("warn,eas_gateway::cli=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let config = Config::load(&path)?;
    let store = d::open_store(&config).await?;
    let user = |u: &str| d::user_name(&config, u);
    let out = match op {
        DevicesOp::List {
            user: u,
            json,
            quarantined,
        } => {
            d::list(
                &config,
                &store,
                u.as_deref().map(user).as_deref(),
                json,
                quarantined,
            )
            .await?
        }
        DevicesOp::Show {
            user: u,
            device,
            json,
        } => d::show(&config, &store, &user(&u), &device, json).await?,
        DevicesOp::Remove { user: u, device } => d::remove(&store, &user(&u), &device).await?,
        DevicesOp::Wipe { user: u, device } => d::wipe(&store, &user(&u), &device, false).await?,
        DevicesOp::AccountWipe { user: u, device } => {
            d::wipe(&store, &user(&u), &device, true).await?
        }
        DevicesOp::CancelWipe { user: u, device } => {
            d::cancel_wipe(&store, &user(&u), &device).await?
        }
        DevicesOp::Allow { user: u, device } => {
            d::set_access(&store, &user(&u), &device, Some(Access::Allow)).await?
        }
        DevicesOp::Block { user: u, device } => {
            d::set_access(&store, &user(&u), &device, Some(Access::Block)).await?
        }
        DevicesOp::ResetAccess { user: u, device } => {
            d::set_access(&store, &user(&u), &device, None).await?
        }
        DevicesOp::Trace {
            user: u,
            device,
            state,
            bodies,
        } => d::trace(&config, &store, &user(&u), &device, state == "on", bodies).await?,
        DevicesOp::Resync {
            user: u,
            device,
            folder,
        } => d::resync(&store, &user(&u), &device, folder.as_deref()).await?,
        DevicesOp::Log {
            user: u,
            device,
            follow,
            json,
            limit,
        } => {
            let limit = limit.unwrap_or(config.devices.log_entries.max(1));
            d::log(&store, &user(&u), &device, limit, follow, json).await?;
            String::new()
        }
    };
    print!("{out}");
    Ok(())
}

/// Gives memory that glibc's allocator keeps after it was freed back to the system.
///
/// A burst of requests (phones reconnecting together: TLS handshakes, logins, folder listings)
/// allocates far more for a few seconds than the connections that then wait keep; glibc keeps
/// the freed pages inside its heaps (between live allocations they are never trimmed on their
/// own). `malloc_trim` hands every whole free page back; it runs every
/// [`heap_trim::EVERY`] on a thread of its own, off the runtime's workers.
mod heap_trim {
    use std::time::Duration;

    pub const EVERY: Duration = Duration::from_secs(10);

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub fn start() {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        let spawned = std::thread::Builder::new()
            .name("heap-trim".into())
            .spawn(|| loop {
                std::thread::sleep(EVERY);
                // SAFETY: glibc's malloc_trim takes each arena's lock and only releases free
                // pages; it touches no memory the program holds.
                unsafe {
                    malloc_trim(0);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the heap trimming thread");
        }
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    pub fn start() {}
}
