//! The SSH entry point: stock OpenSSH clients get shells and commands in
//! pods (RFC 4254 sessions, over russh).
//!
//! - Authentication is by public key only (RFC 4252 §7): the key's
//!   fingerprint is the pipeline's [`Credential::SshKey`], and the login
//!   name must be the key owner's user name (`alice`, or `bob@acme` for a
//!   member of an organization). `alice:ORG/PROJECT/ENV/SERVICE[/POD]`
//!   names the target in the user name; otherwise the command does
//!   (`ssh -t alice@host acme/shop/staging/api`, `ssh alice@host TARGET --
//!   CMD`).
//! - Every channel request that wants a reply gets one (RFC 4254 §5.4):
//!   russh's defaults answer nothing, which leaves OpenSSH waiting.
//! - Port, agent and X11 forwarding and subsystems are refused; forwarding
//!   attempts are audited.
//! - A session's output is drained before its exit status, which comes
//!   before EOF and close (RFC 4254 §6.10). A session that ends without its
//!   process exiting (authority ended, pod lost) sends no exit status, so
//!   `ssh` exits 255 after printing why, never 0.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use russh::keys::{HashAlg, PrivateKey};
use russh::server::{Auth, Handle, Msg, Session as SshSession};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, MethodKind, MethodSet, Sig};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use warden_pipeline::identity::user_id;
use warden_pipeline::{Caller, Credential, Error, RequestMeta, Target, Transport};
use warden_policies::Action;
use warden_runtime::{MAX_EXEC_ENV, Signal, TermSize, exec_env_allowed};

use crate::gateway::{
    Command, Gateway, Input, SessionEnd, ShellRequest, StdinError, Stop, lock, write_stdin,
};
use crate::recording::Tap;
use crate::target::{ShellTarget, split_command};

/// The one action SSH callers may run.
const DECLARED: &[Action] = &[Action::ShellExec];
/// Connections at once, over all sources.
const MAX_CONNECTIONS: usize = 4096;
/// Connections from one address that have not authenticated yet (OpenSSH's
/// `MaxStartups` idea): a flood of silent connections from one source
/// cannot lock others out.
const MAX_UNAUTHENTICATED_PER_SOURCE: usize = 16;
/// Time to send the SSH version line.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to authenticate after connecting (OpenSSH's `LoginGraceTime`).
const AUTH_DEADLINE: Duration = Duration::from_secs(30);
/// Session channels on one connection (OpenSSH's `MaxSessions`).
const MAX_CHANNELS: usize = 10;
/// Key exchanges offered: the hybrid post-quantum one first (ML-KEM-768 with
/// X25519), X25519 (RFC 8731), and 4096/8192-bit groups (RFC 8268) for old
/// clients; strict key exchange against Terrapin (CVE-2023-48795). No 2048-bit
/// group and no group exchange.
const KEX: &[russh::kex::Name] = &[
    russh::kex::MLKEM768X25519_SHA256,
    russh::kex::CURVE25519,
    russh::kex::CURVE25519_PRE_RFC_8731,
    russh::kex::DH_G16_SHA512,
    russh::kex::DH_G18_SHA512,
    russh::kex::EXTENSION_SUPPORT_AS_SERVER,
    russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];
/// MACs offered (for the CTR ciphers; the AEAD ones need none):
/// encrypt-then-MAC only.
const MACS: &[russh::mac::Name] = &[russh::mac::HMAC_SHA512_ETM, russh::mac::HMAC_SHA256_ETM];
/// Wrong TOTP codes on one connection before it is disconnected.
const MAX_MFA_FAILURES: usize = 3;
/// Forwarding requests refused (and audited) on one connection before it
/// is disconnected.
const MAX_REFUSALS: usize = 8;
/// How long the output of a session whose authority ended may still drain.
const DRAIN_AFTER_END: Duration = Duration::from_millis(500);

/// How the SSH listener behaves.
#[derive(Clone)]
pub struct SshOptions {
    /// The host key (kept sealed by the server; see [`host_key_from_seed`]).
    pub host_key: PrivateKey,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// A session is ended after this long, whatever it does.
    pub max_session: Duration,
    /// Checks the second factor of users who enrolled one.
    pub second_factor: Arc<dyn SecondFactor>,
}

/// Users' second factors (TOTP), which the composition root checks: it
/// holds the sealed secrets, the gateway does not.
pub trait SecondFactor: Send + Sync {
    /// Whether `principal` has enrolled a second factor (then every SSH
    /// login of theirs asks for it, after the key).
    fn enrolled<'a>(&'a self, principal: &'a str) -> BoxFuture<'a, Result<bool, Error>>;
    /// Checks a code given after the SSH key `fingerprint` (each code
    /// works once; failures are throttled per account and key).
    fn check<'a>(
        &'a self,
        principal: &'a str,
        fingerprint: &'a str,
        code: &'a str,
    ) -> BoxFuture<'a, Result<bool, Error>>;
}

/// An Ed25519 host key from its 32-byte seed.
pub fn host_key_from_seed(seed: &[u8; 32]) -> PrivateKey {
    PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
        seed,
    ))
}

/// The host key's fingerprint as `ssh-keygen -l` prints it (`SHA256:...`).
pub fn host_key_fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

/// The SSH front-end of a [`Gateway`].
#[derive(Clone)]
pub struct SshGateway {
    gateway: Gateway,
    config: Arc<russh::server::Config>,
    max_session: Duration,
    second_factor: Arc<dyn SecondFactor>,
    limits: Arc<Limits>,
}

#[derive(Default)]
struct Limits {
    total: Mutex<usize>,
    unauthenticated: Mutex<HashMap<IpAddr, usize>>,
}

/// Releases a connection's slots when it ends.
struct Slot {
    limits: Arc<Limits>,
    source: IpAddr,
    authenticated: Arc<AtomicBool>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut total = lock(&self.limits.total);
        *total = total.saturating_sub(1);
        if !self.authenticated.load(Ordering::SeqCst) {
            release_unauthenticated(&self.limits, self.source);
        }
    }
}

fn release_unauthenticated(limits: &Limits, source: IpAddr) {
    let mut map = lock(&limits.unauthenticated);
    if let Some(n) = map.get_mut(&source) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&source);
        }
    }
}

impl SshGateway {
    /// An SSH front-end for `gateway`.
    pub fn new(gateway: Gateway, options: SshOptions) -> Self {
        let config = russh::server::Config {
            server_id: russh::SshId::Standard("SSH-2.0-Warden".into()),
            // Keyboard-interactive only ever asks a key's owner for their
            // TOTP code, after the key.
            methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::KeyboardInteractive][..]),
            // OpenSSH probes with `none` first; answer it at once.
            auth_rejection_time: Duration::from_millis(300),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![options.host_key],
            inactivity_timeout: Some(options.idle_timeout),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 3,
            max_auth_attempts: 6,
            nodelay: true,
            preferred: russh::Preferred {
                kex: std::borrow::Cow::Borrowed(KEX),
                mac: std::borrow::Cow::Borrowed(MACS),
                ..russh::Preferred::DEFAULT
            },
            ..Default::default()
        };
        Self {
            gateway,
            config: Arc::new(config),
            max_session: options.max_session,
            second_factor: options.second_factor,
            limits: Arc::default(),
        }
    }

    /// Serves connections from `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "SSH accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(slot) = self.admit(peer.ip()) else {
                tracing::debug!(%peer, "SSH connection refused: too many connections");
                continue;
            };
            tokio::spawn(self.clone().connection(tcp, peer, slot));
        }
    }

    fn admit(&self, source: IpAddr) -> Option<Slot> {
        let mut total = lock(&self.limits.total);
        let mut map = lock(&self.limits.unauthenticated);
        let pending = map.entry(source).or_insert(0);
        if *total >= MAX_CONNECTIONS || *pending >= MAX_UNAUTHENTICATED_PER_SOURCE {
            return None;
        }
        *total += 1;
        *pending += 1;
        Some(Slot {
            limits: self.limits.clone(),
            source,
            authenticated: Arc::new(AtomicBool::new(false)),
        })
    }

    async fn connection(self, tcp: TcpStream, peer: SocketAddr, slot: Slot) {
        // A second handle on the socket ends the connection at the
        // authentication deadline whatever state the SSH session is in
        // (before key exchange it cannot send a disconnect).
        let Ok((tcp, cutter)) = split_off_cutter(tcp) else {
            return;
        };
        let conn = Conn {
            gateway: self.gateway.clone(),
            peer,
            max_session: self.max_session,
            caller: None,
            user_target: None,
            channels: Arc::new(AtomicUsize::new(0)),
            refusals: 0,
            second_factor: self.second_factor.clone(),
            pending: None,
            mfa_failures: 0,
            authenticated: slot.authenticated.clone(),
            limits: self.limits.clone(),
        };
        let session = match tokio::time::timeout(
            VERSION_TIMEOUT,
            russh::server::run_stream(self.config, tcp, conn),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "SSH handshake failed");
                return;
            }
            Err(_) => return,
        };
        let deadline = async {
            tokio::time::sleep(AUTH_DEADLINE).await;
            if slot.authenticated.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(session);
        tokio::select! {
            result = &mut session => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "SSH connection ended with an error");
                }
            }

            () = deadline => {
                tracing::debug!(%peer, "SSH authentication took too long");
                let _ = cutter.shutdown(std::net::Shutdown::Both);
                // The session notices the closed socket; its slot is free
                // once it has.
                let _ = tokio::time::timeout(VERSION_TIMEOUT, &mut session).await;
            }
        }
        drop(slot);
    }
}

/// The socket, and a second handle on it that can shut it down.
fn split_off_cutter(tcp: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std = tcp.into_std()?;
    let cutter = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, cutter))
}

/// One SSH connection.
struct Conn {
    gateway: Gateway,
    peer: SocketAddr,
    max_session: Duration,
    caller: Option<Arc<Caller>>,
    /// The target named in the login (`alice:TARGET`).
    user_target: Option<ShellTarget>,
    /// Session channels open now (each channel's task holds a count).
    channels: Arc<AtomicUsize>,
    /// Forwarding requests refused so far.
    refusals: usize,
    /// Checks second factors.
    second_factor: Arc<dyn SecondFactor>,
    /// A key login waiting for its owner's second factor.
    pending: Option<PendingMfa>,
    /// Wrong codes given on this connection.
    mfa_failures: usize,
    authenticated: Arc<AtomicBool>,
    limits: Arc<Limits>,
}

impl Conn {
    fn meta(&self, fingerprint: String, mfa: bool) -> RequestMeta {
        RequestMeta::new(
            Credential::SshKey { fingerprint, mfa },
            Some(self.peer.ip().to_string()),
            Transport::Ssh,
        )
    }

    /// Marks the connection authenticated as `caller`.
    fn authenticated_as(&mut self, caller: Caller, target: Option<ShellTarget>) {
        self.caller = Some(Arc::new(caller));
        self.user_target = target;
        if !self.authenticated.swap(true, Ordering::SeqCst) {
            release_unauthenticated(&self.limits, self.peer.ip());
        }
    }

    /// Audits a refused forwarding request; a connection that keeps asking
    /// is disconnected (so it cannot flood the audit log).
    async fn refuse(&mut self, what: &'static str) -> Result<(), russh::Error> {
        self.refusals += 1;
        if self.refusals > MAX_REFUSALS {
            return Err(russh::Error::Disconnect);
        }
        if let Some(caller) = &self.caller {
            let _ = self
                .gateway
                .pipeline()
                .refuse(
                    caller,
                    what,
                    Target::principal(caller.id()),
                    Error::forbidden(format!("{what} is not allowed through Warden's gateway")),
                )
                .await;
        }
        Ok(())
    }
}

/// A key that authenticated, waiting for its owner's TOTP code.
struct PendingMfa {
    /// The login name it came with (the code must come for the same).
    login: String,
    principal: String,
    fingerprint: String,
    target: Option<ShellTarget>,
}

/// Splits a login name into the user and the target it may carry.
fn split_login(user: &str) -> Result<(&str, Option<ShellTarget>), Error> {
    match user.split_once(':') {
        Some((name, target)) => Ok((name, Some(ShellTarget::parse(target)?))),
        None => Ok((user, None)),
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Spares the client a signature for a key that cannot log in as
        // this user; without the signature, this answers nothing more than
        // "not with this key" (not whether the key is registered).
        let fingerprint = offer.public_key.fingerprint(HashAlg::Sha256).to_string();
        let Ok((login, _)) = split_login(user) else {
            return Ok(Auth::reject());
        };
        let owner = user_id(login);
        let usable = matches!(
            self.gateway.pipeline().store().ssh_key(&fingerprint).await,
            Ok(Some(key)) if key.principal == owner
        );
        Ok(if usable { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        let meta = self.meta(fingerprint.clone(), false);
        let pipeline = self.gateway.pipeline();
        let Ok((login, target)) = split_login(user) else {
            return Ok(Auth::reject());
        };
        let caller = match pipeline.authenticate(meta.clone(), DECLARED).await {
            Ok(c) => c,
            Err(_) => return Ok(Auth::reject()),
        };
        if caller.id() != user_id(login) {
            let _ = pipeline
                .record_failure(
                    &meta,
                    "auth.login",
                    None,
                    Target::credential("ssh-key"),
                    "the SSH login name is not the key owner's user name",
                )
                .await;
            return Ok(Auth::reject());
        }
        match self.second_factor.enrolled(caller.id()).await {
            Ok(false) => {}
            // The key is right; the owner's TOTP code comes next, by
            // keyboard-interactive authentication (RFC 4256).
            Ok(true) => {
                self.pending = Some(PendingMfa {
                    login: user.to_owned(),
                    principal: caller.id().to_owned(),
                    fingerprint,
                    target,
                });
                return Ok(Auth::Reject {
                    proceed_with_methods: Some(MethodSet::from(
                        &[MethodKind::KeyboardInteractive][..],
                    )),
                    partial_success: true,
                });
            }
            Err(_) => return Ok(Auth::reject()),
        }
        self.authenticated_as(caller, target);
        Ok(Auth::Accept)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let Some(pending) = self.pending.as_ref().filter(|p| p.login == user) else {
            return Ok(Auth::reject());
        };
        let Some(mut response) = response else {
            return Ok(Auth::Partial {
                name: "Warden".into(),
                instructions: "".into(),
                prompts: vec![("Verification code (TOTP): ".into(), false)].into(),
            });
        };
        let code = response
            .next()
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .unwrap_or_default();
        let retry = Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
            partial_success: true,
        };
        let meta = self.meta(pending.fingerprint.clone(), true);
        let pipeline = self.gateway.pipeline();
        let valid = code.len() <= 16
            && matches!(
                self.second_factor
                    .check(&pending.principal, &pending.fingerprint, code.trim())
                    .await,
                Ok(true)
            );
        if !valid {
            let _ = pipeline
                .record_failure(
                    &meta,
                    "auth.login",
                    Some((&pending.principal, "ssh-key+totp")),
                    Target::credential("ssh-key"),
                    "invalid or already used TOTP code",
                )
                .await;
            // A few tries per connection (russh does not count a rejection
            // that continues the authentication).
            self.mfa_failures += 1;
            if self.mfa_failures >= MAX_MFA_FAILURES {
                return Err(russh::Error::Disconnect);
            }
            return Ok(retry);
        }
        let Ok(caller) = pipeline.authenticate(meta, DECLARED).await else {
            return Ok(Auth::reject());
        };
        if caller.id() != pending.principal {
            return Ok(Auth::reject());
        }
        let target = self.pending.take().and_then(|p| p.target);
        self.authenticated_as(caller, target);
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let Some(caller) = self.caller.clone() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if self.channels.load(Ordering::SeqCst) >= MAX_CHANNELS {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        let open = OpenChannel::count(&self.channels);
        reply.accept().await;
        let ctx = ChannelCtx {
            gateway: self.gateway.clone(),
            caller,
            user_target: self.user_target.clone(),
            handle: session.handle(),
            max_session: self.max_session,
        };
        tokio::spawn(async move {
            ctx.run(channel).await;
            drop(open);
        });
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        self.refuse("ssh.port_forward").await?;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        self.refuse("ssh.port_forward").await?;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        self.refuse("ssh.port_forward").await?;
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        self.refuse("ssh.port_forward").await?;
        Ok(false)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        self.refuse("ssh.agent_forward").await?;
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        _channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // The channel's task answers the request; this records it.
        self.refuse("ssh.x11_forward").await?;
        Ok(())
    }
}

/// One open session channel, counted until its task ends (however the
/// channel closed).
struct OpenChannel(Arc<AtomicUsize>);

impl OpenChannel {
    fn count(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        Self(open.clone())
    }
}

impl Drop for OpenChannel {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Pods the SSH menu lists, at most.
const MENU_ITEMS: usize = 50;

/// What a session channel's task needs.
struct ChannelCtx {
    gateway: Gateway,
    caller: Arc<Caller>,
    user_target: Option<ShellTarget>,
    handle: Handle,
    max_session: Duration,
}

impl ChannelCtx {
    async fn reply(&self, id: ChannelId, want_reply: bool, ok: bool) {
        if want_reply {
            let _ = if ok {
                self.handle.channel_success(id).await
            } else {
                self.handle.channel_failure(id).await
            };
        }
    }

    /// Answers the requests that set a session up, until a shell or exec
    /// request starts it.
    async fn run(self, mut channel: Channel<Msg>) {
        let id = channel.id();
        let mut tty = None;
        let mut env: Vec<(String, String)> = Vec::new();
        let command = loop {
            let Some(msg) = channel.wait().await else {
                return;
            };
            match msg {
                ChannelMsg::RequestPty {
                    want_reply,
                    term,
                    col_width,
                    row_height,
                    ..
                } => {
                    let ok = tty.is_none();
                    if ok {
                        tty = Some(term_size(col_width, row_height));
                        if !term.is_empty() && term.len() <= 64 && !term.contains('\0') {
                            env.push(("TERM".into(), term));
                        }
                    }
                    self.reply(id, want_reply, ok).await;
                }
                ChannelMsg::SetEnv {
                    want_reply,
                    variable_name,
                    variable_value,
                } => {
                    let ok = exec_env_allowed(&variable_name)
                        && variable_name != "TERM"
                        && variable_value.len() <= 1024
                        && !variable_value.contains('\0')
                        && env.len() < MAX_EXEC_ENV;
                    if ok {
                        env.push((variable_name, variable_value));
                    }
                    self.reply(id, want_reply, ok).await;
                }
                ChannelMsg::RequestShell { want_reply } => {
                    self.reply(id, want_reply, true).await;
                    break None;
                }
                ChannelMsg::Exec {
                    want_reply,
                    command,
                } => {
                    self.reply(id, want_reply, true).await;
                    break Some(command);
                }
                ChannelMsg::RequestSubsystem { want_reply, .. }
                | ChannelMsg::RequestX11 { want_reply, .. } => {
                    self.reply(id, want_reply, false).await;
                }
                ChannelMsg::Eof | ChannelMsg::Close => return,
                _ => {}
            }
        };
        let (mut read, write) = channel.split();
        let mut user_target = self.user_target.clone();
        if user_target.is_none() && command.is_none() && tty.is_some() {
            user_target = self.menu(&mut read, &write).await;
            if user_target.is_none() {
                let _ = write.eof().await;
                let _ = write.close().await;
                return;
            }
        }
        let request = match self.request(user_target.as_ref(), command, tty, env) {
            Ok(r) => r,
            Err(message) => {
                let _ = write
                    .make_writer_ext(Some(1))
                    .write_all(message.as_bytes())
                    .await;
                let _ = write.exit_status(2).await;
                let _ = write.eof().await;
                let _ = write.close().await;
                return;
            }
        };
        let crlf = |s: &str| format!("warden: {s}\r\n");
        // The connection authenticated when it opened, perhaps hours ago:
        // every session reads the caller's authority afresh before anything
        // runs (HTTP callers are authenticated per request already).
        let opened = match self.gateway.pipeline().reauthenticate(&self.caller).await {
            Ok(caller) => self.gateway.open(&caller, request).await,
            Err(e) => Err(e),
        };
        let (mut session, exec) = match opened {
            Ok(s) => s,
            Err(e) => {
                let _ = write
                    .make_writer_ext(Some(1))
                    .write_all(crlf(e.message()).as_bytes())
                    .await;
                let _ = write.eof().await;
                let _ = write.close().await;
                return;
            }
        };
        let counted_in = Arc::new(AtomicU64::new(0));
        let counted_out = Arc::new(AtomicU64::new(0));
        let tty = exec.stderr.is_none();
        let tap = session.tap();
        let out = tokio::spawn(pump(
            exec.stdout,
            write.make_writer(),
            counted_out.clone(),
            (tap.clone(), false),
        ));
        let err = exec.stderr.map(|rx| {
            tokio::spawn(pump(
                rx,
                write.make_writer_ext(Some(1)),
                counted_out.clone(),
                (tap.clone(), true),
            ))
        });
        let input = tokio::spawn(forward_input(
            self.handle.clone(),
            id,
            read,
            Input {
                stdin: exec.stdin,
                control: exec.control.clone(),
                counted: counted_in.clone(),
                tap,
            },
        ));
        let stop = session
            .supervise(exec.exit, &exec.control, input, self.max_session)
            .await;
        // Everything the process wrote goes out before its status.
        let drained = async {
            let _ = out.await;
            if let Some(err) = err {
                let _ = err.await;
            }
        };
        let mut exit = None;
        match &stop {
            Stop::Exited(Ok(status)) => {
                drained.await;
                exit = Some(*status);
                let _ = write.exit_status(status.code as u32).await;
            }
            Stop::Exited(Err(e)) => {
                let _ = tokio::time::timeout(DRAIN_AFTER_END, drained).await;
                let msg = crlf(&format!("the session's pod was lost: {e}"));
                let _ = notice(&write, tty, &msg).await;
            }
            Stop::AuthorityEnded(reason) | Stop::LimitReached(reason) => {
                let _ = tokio::time::timeout(DRAIN_AFTER_END, drained).await;
                let msg = crlf(&format!("session ended: {reason}"));
                let _ = notice(&write, tty, &format!("\r\n{msg}")).await;
            }
            Stop::ClientGone(_) => {}
        }
        let _ = write.eof().await;
        let _ = write.close().await;
        session.finish(SessionEnd {
            exit,
            bytes_in: counted_in.load(Ordering::Relaxed),
            bytes_out: counted_out.load(Ordering::Relaxed),
            status: stop.status(),
        });
    }

    /// With a terminal and no target: lists the pods the caller may open a
    /// shell in, numbered, and reads the choice (digits, Backspace, Enter;
    /// Ctrl-C or Ctrl-D leaves). Listing is not audited (it reads only
    /// the caller's own permissions); the session chosen is.
    async fn menu(
        &self,
        read: &mut russh::ChannelReadHalf,
        write: &russh::ChannelWriteHalf<Msg>,
    ) -> Option<ShellTarget> {
        let mut w = write.make_writer();
        let listed = match self.gateway.pipeline().reauthenticate(&self.caller).await {
            Ok(caller) => self.gateway.targets(&caller, MENU_ITEMS).await,
            Err(e) => Err(e),
        };
        let targets = match listed {
            Ok(t) if t.is_empty() => {
                let _ = w
                    .write_all(b"warden: no pod you may open a shell in is running\r\n")
                    .await;
                return None;
            }
            Ok(t) => t,
            Err(e) => {
                let _ = w
                    .write_all(format!("warden: {}\r\n", e.message()).as_bytes())
                    .await;
                return None;
            }
        };
        let mut text = String::from("warden: pods you may open a shell in:\r\n");
        for (i, t) in targets.iter().enumerate() {
            text.push_str(&format!("  {:>2}) {t}\r\n", i + 1));
        }
        text.push_str("choose a number (Ctrl-D leaves): ");
        w.write_all(text.as_bytes()).await.ok()?;
        w.flush().await.ok()?;
        let mut typed = String::new();
        while let Some(msg) = read.wait().await {
            let data = match msg {
                ChannelMsg::Data { data } => data,
                ChannelMsg::Eof | ChannelMsg::Close => return None,
                msg if late_request(&msg) => {
                    let _ = self.handle.channel_failure(write.id()).await;
                    continue;
                }
                _ => continue,
            };
            let mut echo = Vec::new();
            for &b in data.iter() {
                match b {
                    b'0'..=b'9' if typed.len() < 3 => {
                        typed.push(char::from(b));
                        echo.push(b);
                    }
                    0x7f | 0x08 if typed.pop().is_some() => echo.extend_from_slice(b"\x08 \x08"),
                    b'\r' | b'\n' => {
                        let chosen = typed
                            .parse::<usize>()
                            .ok()
                            .and_then(|n| n.checked_sub(1))
                            .and_then(|i| targets.get(i));
                        if let Some(t) = chosen {
                            echo.extend_from_slice(b"\r\n");
                            w.write_all(&echo).await.ok()?;
                            return Some(t.clone());
                        }
                        typed.clear();
                        echo.extend_from_slice(
                            format!("\r\nchoose a number from 1 to {}: ", targets.len()).as_bytes(),
                        );
                    }
                    0x03 | 0x04 => {
                        echo.extend_from_slice(b"\r\n");
                        let _ = w.write_all(&echo).await;
                        return None;
                    }
                    _ => {}
                }
            }
            w.write_all(&echo).await.ok()?;
            w.flush().await.ok()?;
        }
        None
    }

    /// The session request a shell or exec request makes, or the message
    /// telling the user what is wrong with it.
    fn request(
        &self,
        user_target: Option<&ShellTarget>,
        command: Option<Vec<u8>>,
        tty: Option<TermSize>,
        env: Vec<(String, String)>,
    ) -> Result<ShellRequest, String> {
        let command = match command {
            None => None,
            Some(bytes) => Some(
                String::from_utf8(bytes)
                    .map_err(|_| "warden: the command is not UTF-8\r\n".to_owned())?,
            ),
        };
        let (target, line) = match (user_target, command.as_deref()) {
            (Some(t), line) => (t.clone(), line.filter(|l| !l.trim().is_empty())),
            (None, Some(line)) => {
                let (target, rest) = split_command(line);
                let target = ShellTarget::parse(target)
                    .map_err(|e| format!("warden: {}\r\n", e.message()))?;
                (target, rest)
            }
            (None, None) => {
                return Err(
                    "warden: name a target: ssh -t USER@HOST ORG/PROJECT/ENV/SERVICE[/POD] \
                            (or log in as USER:ORG/PROJECT/ENV/SERVICE)\r\n"
                        .to_owned(),
                );
            }
        };
        let command = match line {
            None => Command::Shell,
            Some(line) => Command::Argv(vec!["/bin/sh".into(), "-c".into(), line.to_owned()]),
        };
        Ok(ShellRequest {
            target,
            command,
            tty,
            env,
        })
    }
}

/// Tells the user why the session ended: on the terminal when there is
/// one (stderr is merged there), else on stderr.
async fn notice(
    write: &russh::ChannelWriteHalf<Msg>,
    tty: bool,
    message: &str,
) -> std::io::Result<()> {
    let mut w = write.make_writer_ext(if tty { None } else { Some(1) });
    w.write_all(message.as_bytes()).await?;
    w.flush().await
}

/// Copies a process's output to the client, counting and recording it
/// (as stderr or not).
async fn pump(
    mut rx: mpsc::Receiver<Bytes>,
    mut writer: impl AsyncWrite + Unpin,
    counted: Arc<AtomicU64>,
    (tap, stderr): (Tap, bool),
) {
    while let Some(chunk) = rx.recv().await {
        counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        tap.output(stderr, &chunk).await;
        if writer.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
}

/// Forwards the client's input, EOF, window changes and signals to the
/// process, and answers any further request with a failure. Returns when
/// the client closes the channel.
async fn forward_input(
    handle: Handle,
    id: ChannelId,
    mut read: russh::ChannelReadHalf,
    Input {
        mut stdin,
        control,
        counted,
        tap,
    }: Input,
) -> Option<String> {
    while let Some(msg) = read.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                counted.fetch_add(data.len() as u64, Ordering::Relaxed);
                tap.input(&data).await;
                if let Some(s) = &stdin {
                    match write_stdin(s, data).await {
                        Ok(()) => {}
                        Err(StdinError::Closed) => stdin = None,
                        Err(StdinError::Stalled(why)) => return Some(why),
                    }
                }
            }
            ChannelMsg::Eof => stdin = None,
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            } => {
                let size = term_size(col_width, row_height);
                if control.resize(size.cols, size.rows).is_ok() {
                    tap.resize(size).await;
                }
            }
            ChannelMsg::Signal { signal } => {
                if let Some(sig) = signal_of(&signal) {
                    let _ = control.signal(sig);
                }
            }
            msg if late_request(&msg) => {
                let _ = handle.channel_failure(id).await;
            }
            ChannelMsg::Close => return None,
            _ => {}
        }
    }
    None
}

/// Whether `msg` is a session request that wants an answer, arriving once
/// the session is set up (at the menu, or running): it is refused.
fn late_request(msg: &ChannelMsg) -> bool {
    matches!(
        msg,
        ChannelMsg::RequestPty {
            want_reply: true,
            ..
        } | ChannelMsg::RequestShell { want_reply: true }
            | ChannelMsg::Exec {
                want_reply: true,
                ..
            }
            | ChannelMsg::SetEnv {
                want_reply: true,
                ..
            }
            | ChannelMsg::RequestSubsystem {
                want_reply: true,
                ..
            }
            | ChannelMsg::RequestX11 {
                want_reply: true,
                ..
            }
    )
}

fn term_size(cols: u32, rows: u32) -> TermSize {
    let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX).max(1);
    TermSize {
        cols: clamp(cols),
        rows: clamp(rows),
    }
}

fn signal_of(sig: &Sig) -> Option<Signal> {
    let name = match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name.as_str(),
    };
    Signal::from_name(name).ok()
}
