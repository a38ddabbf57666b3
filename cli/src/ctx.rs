//! What a client command runs with: the global options, the API client
//! built from them ([`connect`]), and how to print ([`Output`],
//! [`Ctx::print`]). Depends on no command module.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::{Args, ValueEnum};
use serde::de::DeserializeOwned;
use serde_json::Value;
use warden_api::{Client, ClientError, ErrorBody};

use crate::client_config;

/// The options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Server address, https://HOST:PORT.
    #[arg(long, global = true, env = "WARDEN_ADDR")]
    server: Option<String>,
    /// API token.
    #[arg(long, global = true, env = "WARDEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) to trust for the server.
    #[arg(long, global = true, env = "WARDEN_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Output format for commands that print data.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
}

/// How a command prints what it got: text for people, or the API's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

/// What a client command runs with: the API client and how to print.
pub(crate) struct Ctx {
    client: Client,
    output: Output,
    /// The server address in use.
    pub(crate) server: String,
    /// The CA certificate file in use.
    pub(crate) ca_cert: PathBuf,
    /// A token was given by `--token` or `WARDEN_TOKEN` (it outranks the
    /// saved one).
    pub(crate) token_given: bool,
}

impl Ctx {
    /// The API client (for WebSockets and streams).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// One request; returns the typed answer and the raw JSON.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(T, Value)> {
        let raw: Value = self.client.call(method, path, body.as_ref()).await?;
        let typed =
            serde_json::from_value(raw.clone()).context("unexpected answer from the server")?;
        Ok((typed, raw))
    }

    /// One request whose success answer has no body (204).
    pub(crate) async fn call_empty(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<()> {
        self.call_bytes(method, path, body).await.map(drop)
    }

    /// One request whose success answer is returned as raw bytes (the
    /// client reads the whole body); error answers become
    /// [`ClientError::Api`].
    pub(crate) async fn call_bytes(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<hyper::body::Bytes> {
        self.call_bytes_with_progress(method, path, body, |_, _| {})
            .await
    }

    /// [`Ctx::call_bytes`], reporting `(received, total)` as the body
    /// arrives.
    pub(crate) async fn call_bytes_with_progress(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Value>,
        progress: impl FnMut(u64, Option<u64>),
    ) -> anyhow::Result<hyper::body::Bytes> {
        let body = body.map(|b| serde_json::to_vec(&b)).transpose()?;
        let (status, bytes) = self
            .client
            .connect()
            .await?
            .send_with_progress(method, path, body, progress)
            .await?;
        if status.is_success() {
            return Ok(bytes);
        }
        Err(api_error(status, &bytes))
    }

    /// A GET whose answer streams (a log follow): the body goes to `sink` as
    /// it arrives.
    pub(crate) async fn stream(
        &self,
        path: &str,
        sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        let (status, bytes) = self
            .client
            .connect()
            .await?
            .stream(hyper::Method::GET, path, sink)
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(api_error(status, &bytes))
        }
    }

    /// The output format asked for.
    pub(crate) fn output(&self) -> Output {
        self.output
    }

    /// Prints `raw` as JSON in JSON mode, else runs `text`.
    pub(crate) fn print(&self, raw: &Value, text: impl FnOnce()) -> anyhow::Result<()> {
        match self.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(raw)?),
            Output::Text => text(),
        }
        Ok(())
    }
}

/// Builds the client from flags, environment and the saved configuration;
/// without `with_token` it sends no token (for `warden login`).
pub(crate) fn connect(global: &Global, with_token: bool) -> anyhow::Result<Ctx> {
    let saved = client_config::load()?;
    let server = global.server.clone().or(saved.server).ok_or_else(|| {
        anyhow!("no server address: pass --server or set WARDEN_ADDR (or run `warden dev`)")
    })?;
    let ca = global
        .ca_cert
        .clone()
        .or(saved.ca_cert)
        .ok_or_else(|| anyhow!("no CA certificate: pass --ca-cert or set WARDEN_CA_CERT"))?;
    let token = if with_token {
        global.token.clone().or(saved.token)
    } else {
        None
    };
    let client = Client::new(&server, &client_config::read_ca(&ca)?, token)?;
    Ok(Ctx {
        client,
        output: global.output,
        server,
        ca_cert: ca,
        token_given: global.token.is_some(),
    })
}

/// An error answer as [`ClientError::Api`].
fn api_error(status: hyper::StatusCode, bytes: &[u8]) -> anyhow::Error {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(e) => (e.error.code, e.error.message),
        Err(_) => (
            "http_error".to_owned(),
            String::from_utf8_lossy(bytes).chars().take(200).collect(),
        ),
    };
    ClientError::Api {
        status: status.as_u16(),
        code,
        message,
    }
    .into()
}
