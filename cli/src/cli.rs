//! The command-line grammar's top level ([`Cli`]) and [`run`], which
//! dispatches each command to the module that owns it.

use clap::{Parser, Subcommand};
use warden_types::ScopeKind;

use crate::ctx::{Ctx, Global, connect};
use crate::{
    agent, audit, auth, bindings, clusters, gateway, keys, operator, roles, scopes, secrets, serve,
    shell, ssh_keys, tokens, users, workload_identity, workloads,
};

/// Warden: secrets vault and remote-access gateway.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a development server on embedded defaults (SQLite, generated TLS,
    /// auto-unsealed). Not for production.
    Dev(serve::DevArgs),
    /// Run a production server from a TOML configuration file. Starts sealed.
    Server(serve::ServerArgs),
    /// Run an agent: pods for a cluster on this machine, dialing out to the
    /// control plane (enrolls on first start with --join-token).
    Agent(agent::AgentArgs),
    /// The tamper-evident audit log: tail, query, checkpoints, inclusion
    /// proofs, export bundles and their verification (`audit verify BUNDLE`
    /// works offline, without a server).
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// The secret injector's Kubernetes side: `injector webhook` serves the
    /// mutating admission webhook that wraps annotated pods' commands.
    #[command(subcommand)]
    Injector(serve::InjectorCmd),
    /// Every command that talks to a running server.
    #[command(flatten)]
    Client(ClientCmd),
}

/// The client commands: each is an HTTPS call (or a few) to the API.
#[derive(Debug, Subcommand)]
enum ClientCmd {
    /// Initialize, unseal and seal the vault.
    #[command(subcommand)]
    Operator(operator::OperatorCmd),
    /// Organizations.
    #[command(subcommand)]
    Org(scopes::ScopeCmd),
    /// Projects (ORG/PROJECT).
    #[command(subcommand)]
    Project(scopes::ScopeCmd),
    /// Environments (ORG/PROJECT/ENV).
    #[command(subcommand)]
    Env(scopes::EnvCmd),
    /// Services (ORG/PROJECT/ENV/SERVICE) and their workloads.
    #[command(subcommand)]
    Service(workloads::ServiceCmd),
    /// Pods: list, logs.
    #[command(subcommand)]
    Pod(workloads::PodCmd),
    /// A shell or a command in a pod: `warden shell ORG/PROJECT/ENV/SERVICE[/POD] [-- CMD...]`
    /// (the remote exit code becomes this command's)
    Shell(shell::ShellArgs),
    /// A kubeconfig for `kubectl exec` into an environment's pods
    /// (ORG/PROJECT/ENV; its credential is a 15-minute token from this
    /// binary)
    Kubeconfig(gateway::KubeconfigArgs),
    /// The shell gateway: where SSH listens, its host key.
    #[command(subcommand)]
    Gateway(gateway::GatewayCmd),
    /// Shell sessions: list, show, kill.
    #[command(subcommand)]
    Session(gateway::SessionCmd),
    /// The kubeconfig's credential plugin: prints an ExecCredential
    #[command(hide = true)]
    KubeCredential(gateway::KubeCredentialArgs),
    /// Clusters and their agents: join tokens, list, show, remove, place,
    /// the service-account issuer.
    #[command(subcommand)]
    Cluster(clusters::ClusterCmd),
    /// Workload identity: Kubernetes service accounts bound to services
    /// (sa-bind, sa-unbind, sa-bindings).
    #[command(subcommand)]
    Workload(workload_identity::WorkloadCmd),
    /// Secrets.
    #[command(subcommand)]
    Secret(secrets::SecretCmd),
    /// Organization key terms: rotate, rewrap, status.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// Your own identity: `whoami`, `login`, `passwd`, `mfa` (each a
    /// top-level command).
    #[command(flatten)]
    Auth(auth::AuthCmd),
    /// Users and service accounts.
    #[command(subcommand)]
    User(users::UserCmd),
    /// API and workload tokens.
    #[command(subcommand)]
    Token(tokens::TokenCmd),
    /// Your SSH public keys.
    #[command(subcommand)]
    SshKey(ssh_keys::SshKeyCmd),
    /// Custom roles of an organization (and the built-in ones).
    #[command(subcommand)]
    Role(roles::RoleCmd),
    /// Role bindings and policy checks: `grant`, `revoke`, `binding`,
    /// `policy` (each a top-level command).
    #[command(flatten)]
    Bindings(bindings::BindingsCmd),
}

impl ClientCmd {
    /// Whether the command runs without a token (login).
    fn anonymous(&self) -> bool {
        matches!(self, Self::Auth(c) if c.anonymous())
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => serve::dev(args).await,
        Command::Server(args) => serve::server(args).await,
        Command::Injector(cmd) => serve::injector(cmd).await,
        Command::Agent(args) => {
            serve::init_logging("info", false);
            let ctx = connect(&cli.global, false)?;
            agent::run(&ctx, args, serve::pod_helper()?).await
        }
        Command::Audit(command) => {
            serve::init_logging("warn", false);
            // `audit verify BUNDLE` is offline: it reads no configuration
            // and never connects.
            match command.into_offline() {
                Ok(offline) => audit::verify_offline(cli.global.output, offline),
                Err(command) => {
                    let ctx = connect(&cli.global, !command.anonymous())?;
                    audit::run(&ctx, *command).await
                }
            }
        }
        Command::Client(command) => {
            serve::init_logging("warn", false);
            let ctx = connect(&cli.global, !command.anonymous())?;
            client_command(&ctx, command).await
        }
    }
}

async fn client_command(ctx: &Ctx, command: ClientCmd) -> anyhow::Result<()> {
    match command {
        ClientCmd::Operator(op) => operator::run(ctx, op).await,
        ClientCmd::Org(c) => scopes::run(ctx, ScopeKind::Organization, c).await,
        ClientCmd::Project(c) => scopes::run(ctx, ScopeKind::Project, c).await,
        ClientCmd::Service(c) => workloads::service(ctx, c).await,
        ClientCmd::Pod(c) => workloads::pod(ctx, c).await,
        ClientCmd::Shell(c) => shell::run(ctx, c).await,
        ClientCmd::Kubeconfig(c) => gateway::kubeconfig(ctx, c).await,
        ClientCmd::KubeCredential(c) => gateway::credential(ctx, c).await,
        ClientCmd::Gateway(c) => gateway::gateway(ctx, c).await,
        ClientCmd::Session(c) => gateway::session(ctx, c).await,
        ClientCmd::Cluster(c) => clusters::run(ctx, c).await,
        ClientCmd::Workload(c) => workload_identity::run(ctx, c).await,
        ClientCmd::Env(c) => scopes::env(ctx, c).await,
        ClientCmd::Secret(c) => secrets::run(ctx, c).await,
        ClientCmd::Keys(c) => keys::run(ctx, c).await,
        ClientCmd::Auth(c) => auth::run(ctx, c).await,
        ClientCmd::User(c) => users::run(ctx, c).await,
        ClientCmd::Token(c) => tokens::run(ctx, c).await,
        ClientCmd::SshKey(c) => ssh_keys::run(ctx, c).await,
        ClientCmd::Role(c) => roles::run(ctx, c).await,
        ClientCmd::Bindings(c) => bindings::run(ctx, c).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_line_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_shorthand_and_durations_apply_on_the_command_line() {
        let Ok(cli) = Cli::try_parse_from(["warden", "grant", "bob", "viewer", "acme"]) else {
            panic!("grant did not parse");
        };
        assert!(format!("{cli:?}").contains("\"user:bob\""));
        let Ok(cli) =
            Cli::try_parse_from(["warden", "token", "create", "--name", "ci", "--ttl", "2h"])
        else {
            panic!("token create did not parse");
        };
        assert!(format!("{cli:?}").contains("ttl: Some(7200)"));
        let bad = Cli::try_parse_from(["warden", "token", "create", "--name", "ci", "--ttl", "2x"]);
        assert!(bad.is_err_and(|e| e.exit_code() == 2));
    }

    #[test]
    fn bad_audit_times_and_logs_are_usage_errors() {
        for args in [
            &["warden", "audit", "query", "acme", "--since", "soon"][..],
            &["warden", "audit", "tail", "Acme"],
            &["warden", "audit", "tail", "../x"],
            &[
                "warden", "audit", "export", "acme", "--out", "x", "--format", "xml",
            ],
            &["warden", "audit", "verify"],
            &["warden", "audit", "verify", "b.tar", "--live", "acme"],
            &[
                "warden",
                "audit",
                "verify",
                "--live",
                "acme",
                "--fingerprint",
                "ab",
            ],
            &[
                "warden",
                "audit",
                "verify",
                "b.tar",
                "--key",
                "k",
                "--fingerprint",
                "f",
            ],
            &["warden", "audit", "query", "acme", "--limit", "0"],
        ] {
            let r = Cli::try_parse_from(args);
            assert!(
                r.as_ref().is_err_and(|e| e.exit_code() == 2),
                "{args:?}: {r:?}"
            );
        }
        for args in [
            &["warden", "audit", "tail"][..],
            &["warden", "audit", "tail", "acme", "-f", "-n", "5"],
            &[
                "warden",
                "audit",
                "query",
                "acme",
                "--since",
                "2h",
                "--action",
                "secret.read",
            ],
            &["warden", "audit", "verify", "b.tar", "--fingerprint", "ab"],
            &["warden", "audit", "verify", "--live", "system"],
            &["warden", "audit", "proof", "acme", "--seq", "0"],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
    }
}
