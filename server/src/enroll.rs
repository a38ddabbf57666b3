//! Warden's agent CA and the enrollment of agents.
//!
//! The CA is made on first use (a join token or an enrollment while
//! unsealed): an ECDSA P-256 key whose PKCS#8 is sealed under the root key
//! (purpose `agent-ca-key`, like the audit signing key), and a self-signed
//! certificate. An agent enrolls once: it sends a join token and a CSR
//! (PKCS#10, RFC 2986) for a key it generated and keeps; Warden checks the
//! CSR's signature, ignores everything in it but the public key, and signs
//! a client certificate of its own making (CN = the cluster, client-auth
//! only, not a CA). The token is redeemed and the certificate's SHA-256
//! recorded on the cluster in one transaction; the hub admits exactly that
//! certificate for that cluster afterwards.

use std::sync::Arc;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use warden_store::AgentCaRow;

use crate::ApiError;
use crate::state::App;

/// Purpose label of the agent CA key sealed under the root key.
const CA_PURPOSE: &str = "agent-ca-key";

/// How long an agent's certificate is valid. Renewal is not built: an
/// agent re-enrolls with a new join token.
const AGENT_CERT_DAYS: i64 = 365;

/// Largest CSR accepted (a P-256 or Ed25519 CSR is under 1 KiB, an RSA-4096
/// one under 2 KiB); the enrollment body must fit the 8 KiB limit of
/// unauthenticated routes.
pub const MAX_CSR_BYTES: usize = 6 * 1024;

/// The CA's signing half.
pub(crate) struct AgentCa {
    issuer: Issuer<'static, KeyPair>,
}

/// Hex SHA-256 of a certificate's DER.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// The CA's certificate only (enough to verify agents); `None` before the
/// first join token. Reading it needs the row key (unsealed).
pub(crate) async fn ca_certificate(app: &App) -> Result<Option<CertificateDer<'static>>, ApiError> {
    Ok(app
        .store
        .agent_ca()
        .await?
        .map(|r| CertificateDer::from(r.cert_der)))
}

/// The CA, made and stored if there is none yet.
pub(crate) async fn agent_ca(app: &App) -> Result<AgentCa, ApiError> {
    let row = match app.store.agent_ca().await? {
        Some(row) => row,
        None => {
            let key = KeyPair::generate().map_err(|_| ApiError::internal())?;
            let mut params =
                CertificateParams::new(Vec::<String>::new()).map_err(|_| ApiError::internal())?;
            params.distinguished_name = DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::CommonName, "Warden agent CA");
            params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = params.self_signed(&key).map_err(|_| ApiError::internal())?;
            let sealed = app
                .vault
                .seal_credential(CA_PURPOSE, "agent-ca", &key.serialize_der())?;
            app.store
                .init_agent_ca(AgentCaRow {
                    cert_der: cert.der().to_vec(),
                    sealed_key: sealed,
                    created_at: warden_store::now_ms(),
                })
                .await?
        }
    };
    let pkcs8 = app
        .vault
        .open_credential(CA_PURPOSE, "agent-ca", &row.sealed_key)?;
    let key = KeyPair::try_from(pkcs8.as_slice()).map_err(|_| ApiError::internal())?;
    let cert = CertificateDer::from(row.cert_der);
    let issuer = Issuer::from_ca_cert_der(&cert, key).map_err(|_| ApiError::internal())?;
    Ok(AgentCa { issuer })
}

impl AgentCa {
    /// Signs a client certificate for `cluster` over the public key of
    /// `csr_pem`, after checking the CSR's signature. Nothing else of the
    /// CSR is used (its names, extensions and validity are the agent's
    /// wishes, not Warden's decisions).
    pub(crate) fn issue(
        &self,
        csr_pem: &str,
        cluster: &str,
    ) -> Result<rcgen::Certificate, ApiError> {
        if csr_pem.len() > MAX_CSR_BYTES {
            return Err(ApiError::invalid("csr: too large").field("csr"));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            ApiError::invalid(format!(
                "csr: not a valid, self-signed PKCS#10 request ({e})"
            ))
            .field("csr")
        })?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|_| ApiError::internal())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cluster);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(AGENT_CERT_DAYS);
        CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer)
        .map_err(|_| ApiError::internal())
    }
}

/// The TLS configuration of the agent listener: the API's own certificate,
/// client certificates required and checked against the agent CA.
pub(crate) fn link_tls(
    ca: CertificateDer<'static>,
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<Arc<rustls::ServerConfig>, ApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|_| ApiError::internal())?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|_| ApiError::internal())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| ApiError::internal())?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
