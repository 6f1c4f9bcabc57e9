//! Whom the client trusts for HTTPS: the public roots (webpki-roots), the system's store (so a
//! company CA installed on the machine works), and certificate authorities the application names
//! ([`crate::ClientConfig::ca_certs_pem`]), such as the private CA of an on-site license server.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Parses the certificates in a PEM text; an error when there is none or one does not parse.
pub(crate) fn parse_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it (expected -----BEGIN CERTIFICATE-----)".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in &certs {
        roots
            .add(c.clone())
            .map_err(|e| format!("a certificate that cannot be a trust anchor: {e}"))?;
    }
    Ok(certs)
}

/// An HTTP agent (one per client) trusting the public roots, the system's store and `extra`.
pub(crate) fn agent(extra: &[CertificateDer<'static>]) -> ureq::Agent {
    // a connection per request, as before: a pooled one the server has closed meanwhile would fail
    // a request that cannot be retried
    let builder = ureq::AgentBuilder::new().max_idle_connections(0);
    match config(extra) {
        Some(c) => builder.tls_config(c),
        None => builder,
    }
    .build()
}

fn config(extra: &[CertificateDer<'static>]) -> Option<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // the system's store: a missing or unreadable one leaves the others
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    roots.add_parsable_certificates(extra.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(Arc::new(config))
}
