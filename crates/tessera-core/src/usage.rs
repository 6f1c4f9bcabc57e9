//! Usage reports: what a license server (or an application) tells the producer about the use of
//! its licenses.
//!
//! A license server signs its report with its own key; it includes the server certificate the
//! producer issued at activation, so the back office can check the key belongs to a server it
//! certified. The back office records the report, flags use over the entitlement, and answers with
//! the renewed license bundle.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::certificate::ServerCertificateClaims;
use crate::document::{self, DocumentType, SignError, VerifyError};
use crate::hostid::HostId;
use crate::keys::{Keyring, SigningKey};

/// Use of one feature over the reporting period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureUsage {
    /// Feature name.
    pub name: String,
    /// Most seats in use at once.
    pub peak: u32,
    /// Seats in use when the report was made.
    #[serde(default)]
    pub in_use: u32,
    /// Metered units consumed in the period.
    #[serde(default)]
    pub metered_units: u64,
    /// Most seats granted beyond the count (overdraft) at once.
    #[serde(default)]
    pub overdraft_peak: u32,
}

/// The claims of a usage report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReportClaims {
    /// Report id: a report sent twice is recorded once.
    pub jti: String,
    /// When it was made.
    #[serde(with = "time::serde::timestamp")]
    pub iat: OffsetDateTime,
    /// The reporting server.
    pub server_hostid: HostId,
    /// The server certificate (armoured) the producer issued to this server. Empty in a report
    /// from an application: it is signed with the device key registered at activation, and
    /// `server_hostid` is then the device's `pc_id=…`.
    pub certificate: String,
    /// Start of the period covered.
    #[serde(with = "time::serde::timestamp")]
    pub period_start: OffsetDateTime,
    /// End of the period covered.
    #[serde(with = "time::serde::timestamp")]
    pub period_end: OffsetDateTime,
    /// Per-feature use.
    pub features: Vec<FeatureUsage>,
    /// Devices that held seats in the period.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Users that held seats in the period.
    #[serde(default)]
    pub users: Vec<String>,
}

impl UsageReportClaims {
    /// Signs the report with the server's key.
    pub fn sign(&self, server: &SigningKey) -> Result<String, SignError> {
        document::sign_armoured(server, DocumentType::UsageReport, self)
    }

    /// Verifies a report: the certificate against the producer's keys, then the report against the
    /// certified server key; the report's server must be the certificate's.
    pub fn verify(
        text: &str,
        producer_keys: &Keyring,
        now: OffsetDateTime,
    ) -> Result<(UsageReportClaims, ServerCertificateClaims), VerifyError> {
        let unverified: UsageReportClaims =
            document::decode_unverified(text, DocumentType::UsageReport)?;
        // The certificate must have been valid when the report was made: a server whose bundle
        // lapsed while the producer was unreachable can still renew with a report made then.
        let cert_time = now.min(unverified.iat);
        let cert =
            ServerCertificateClaims::verify(&unverified.certificate, producer_keys, cert_time)?;
        let server_key = cert.server_public_key()?;
        let report: UsageReportClaims = document::verify(
            text,
            &Keyring::with(server_key),
            DocumentType::UsageReport,
            now,
        )?
        .claims;
        if report.server_hostid != cert.server_hostid {
            return Err(VerifyError::BoundToOtherHost {
                bound_to: vec![cert.server_hostid.clone()],
                presented: vec![report.server_hostid.clone()],
            });
        }
        Ok((report, cert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn report_verifies_through_the_certificate() {
        let producer = SigningKey::from_seed(&[1; 32]);
        let server = SigningKey::from_seed(&[2; 32]);
        let now = datetime!(2026-06-01 0:00 UTC);
        let host: HostId = "ethernet=0050569a3b01".parse().unwrap();
        let cert = ServerCertificateClaims {
            jti: "c".into(),
            iss: "p".into(),
            sub: "ACME".into(),
            iat: now,
            exp: now + time::Duration::days(30),
            server_hostid: host.clone(),
            server_key: ServerCertificateClaims::encode_key(&server.public()),
        }
        .issue(&producer)
        .unwrap();
        let report = UsageReportClaims {
            jti: "u1".into(),
            iat: now,
            server_hostid: host,
            certificate: cert,
            period_start: now - time::Duration::days(1),
            period_end: now,
            features: vec![FeatureUsage {
                name: "cad".into(),
                peak: 7,
                in_use: 3,
                metered_units: 0,
                overdraft_peak: 1,
            }],
            devices: vec![],
            users: vec![],
        };
        let ring = Keyring::with(producer.public());
        let text = report.sign(&server).unwrap();
        let (back, _) = UsageReportClaims::verify(&text, &ring, now).unwrap();
        assert_eq!(back.features[0].peak, 7);
        // signed by another key than the certified one
        let rogue = SigningKey::from_seed(&[3; 32]);
        assert!(UsageReportClaims::verify(&report.sign(&rogue).unwrap(), &ring, now).is_err());
        // a report for another host with a borrowed certificate
        let mut other = report.clone();
        other.server_hostid = "ethernet=0050569a3b02".parse().unwrap();
        assert!(matches!(
            UsageReportClaims::verify(&other.sign(&server).unwrap(), &ring, now),
            Err(VerifyError::BoundToOtherHost { .. })
        ));
    }
}
