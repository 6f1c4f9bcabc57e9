//! The back-office link: online activation, the daily sync (usage report out, renewed bundle in),
//! offline request and response files, and installing what the back office sends.

use rand::RngCore;
use tessera_core::certificate::ServerCertificateClaims;
use tessera_core::offline::encode_key;
use tessera_core::{License, VerifyError};
use tessera_store::{InstanceId, MetaStore, ServerStateStore};
use tessera_wire::activation::{ActivationResult, ServerActivationRequest, UsageOutcome};
use tessera_wire::{ErrorAnswer, KeyCount};

use crate::bundle::bundle_records;
use crate::error::ServerError;
use crate::server::{ServedCertificate, Server};

/// Why an exchange with the back office failed, or why what it sent is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The back office could not be reached.
    #[error("cannot reach the back office at {url}: {source}")]
    Unreachable {
        /// The back office's address.
        url: String,
        /// What the connection said.
        source: reqwest::Error,
    },
    /// The back office refused an activation.
    #[error("the back office refused: {detail} ({code})")]
    ActivationRefused {
        /// Its problem's detail.
        detail: String,
        /// Its problem's code (or the HTTP status).
        code: String,
    },
    /// The back office refused a sync.
    #[error("the back office refused the sync: {detail} ({code})")]
    SyncRefused {
        /// Its problem's detail.
        detail: String,
        /// Its problem's code (or the HTTP status).
        code: String,
    },
    /// The back office answered with a body this server cannot read.
    #[error("{0}")]
    UnreadableAnswer(String),
    /// A sync needs the back office's address, known only from an online activation.
    #[error("this server was never activated online: activate it, or renew with offline files")]
    NeverActivatedOnline,
    /// A sync needs the server certificate, received at activation.
    #[error("this server is not activated")]
    NotActivated,
    /// An offline response file that does not verify.
    #[error("the response file is not valid: {0}")]
    InvalidResponseFile(VerifyError),
    /// An offline response file that answers a device, not a server.
    #[error("the response holds no server certificate: it answers a device's request")]
    NotAServerResponse,
    /// A response file whose license is not newer than the one installed (for a rebind).
    #[error("the response's license was issued on {issued}, not after the one installed ({installed}): it is an earlier answer, not a fresh re-validation. Make a new request (`tessera server offline request`) and take it to the back office")]
    NotFresh {
        /// When its license was issued.
        issued: String,
        /// When the installed one was.
        installed: String,
    },
    /// A license bundle that does not verify for this server.
    #[error("the license received is not valid for this server: {0}")]
    InvalidLicense(VerifyError),
    /// A server certificate that does not verify.
    #[error("the certificate received is not valid: {0}")]
    InvalidCertificate(VerifyError),
    /// A server certificate for another key or host id.
    #[error("the certificate received is for another server")]
    CertificateForAnotherServer,
    /// A license older than the one installed: a replayed answer.
    #[error("the license received was issued on {issued}, before the one installed ({installed}): a replayed answer; nothing was changed")]
    Replayed {
        /// When the license received was issued.
        issued: String,
        /// When the installed one was.
        installed: String,
    },
}

impl Server {
    /// Activates activation keys with counts at the back office, online; stores and serves the
    /// bundle it returns.
    pub async fn activate(
        &self,
        backoffice: &str,
        activations: &[KeyCount],
    ) -> Result<usize, ServerError> {
        let body = ServerActivationRequest {
            server_hostid: self.hostid.clone(),
            server_key: encode_key(&self.key.public()),
            activations: activations.to_vec(),
        };
        let resp = reqwest::Client::new()
            .post(format!(
                "{}/api/v1/activate/server",
                backoffice.trim_end_matches('/')
            ))
            .json(&body)
            .send()
            .await
            .map_err(|e| LinkError::Unreachable {
                url: backoffice.to_string(),
                source: e,
            })?;
        let answer: ActivationResult = backoffice_answer(resp, |detail, code| {
            LinkError::ActivationRefused { detail, code }
        })
        .await?;
        self.store
            .set_backoffice_url(&InstanceId::on_site(), backoffice)
            .await?;
        let n = self
            .install(
                &answer.license,
                answer.certificate.as_deref().unwrap_or_default(),
            )
            .await?;
        self.note_backoffice_contact().await;
        Ok(n)
    }

    /// Records that the back office answered an activation or a sync now (what the manager's
    /// "no sync for 7 days" banner reads); a failure to record it is logged, not fatal.
    async fn note_backoffice_contact(&self) {
        let now = self.clock.now().unix_timestamp().to_string();
        if let Err(e) = self.store.put_setting(LAST_SYNC, &now).await {
            tracing::warn!(error = %e, "could not record the time of the last sync");
        }
    }

    /// When the installed license bundle was issued and when it expires (none without a bundle,
    /// or for one that never expires).
    pub async fn bundle_dates(
        &self,
    ) -> Option<(
        tessera_core::time::OffsetDateTime,
        tessera_core::time::OffsetDateTime,
    )> {
        let text = self.installed.lock().await.clone()?;
        let claims: tessera_core::LicenseClaims =
            tessera_core::document::decode_unverified(&text, tessera_core::DocumentType::License)
                .ok()?;
        Some((claims.iat, claims.exp?))
    }

    /// When the back office last answered an activation or a sync of this server (any member of a
    /// cluster), if it ever did.
    pub async fn last_sync(
        &self,
    ) -> Result<Option<tessera_core::time::OffsetDateTime>, ServerError> {
        Ok(self
            .store
            .get_setting(LAST_SYNC)
            .await?
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|t| tessera_core::time::OffsetDateTime::from_unix_timestamp(t).ok()))
    }

    /// Syncs with the back office now: sends a usage report signed with this server's key and
    /// installs the renewed bundle it answers with. Returns the features used over the entitlement.
    pub async fn sync(&self) -> Result<Vec<String>, ServerError> {
        let url = self
            .store
            .server_state(&InstanceId::on_site())
            .await?
            .backoffice_url
            .ok_or(LinkError::NeverActivatedOnline)?;
        let certificate = self
            .certificate
            .read()
            .await
            .as_ref()
            .map(|c| c.text.to_string())
            .ok_or(LinkError::NotActivated)?;
        let report = self.usage_report_document(certificate).await?;
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/usage", url.trim_end_matches('/')))
            .body(report)
            .send()
            .await
            .map_err(|e| LinkError::Unreachable {
                url: url.clone(),
                source: e,
            })?;
        let outcome: UsageOutcome =
            backoffice_answer(resp, |detail, code| LinkError::SyncRefused { detail, code }).await?;
        let (license, certificate) = outcome.renewal.as_ref().map_or(("", ""), |r| {
            (
                r.license.as_str(),
                r.certificate.as_deref().unwrap_or_default(),
            )
        });
        self.install(license, certificate).await?;
        self.note_backoffice_contact().await;
        self.engine.report(true).await;
        Ok(outcome.over_use.into_iter().map(|o| o.feature).collect())
    }

    /// The usage report since the last one (peak and current use, metered units, overdraft, the
    /// devices holding seats), signed with this server's key and carrying its certificate.
    async fn usage_report_document(&self, certificate: String) -> Result<String, ServerError> {
        let now = self.clock.now();
        let usage = self.engine.report(false).await;
        let mut id = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let devices: std::collections::BTreeSet<String> = self
            .engine
            .leases()
            .await
            .into_iter()
            .map(|l| l.device)
            .collect();
        Ok(tessera_core::usage::UsageReportClaims {
            jti: format!("usage-{}", hex::encode(id)),
            iat: now,
            server_hostid: self.hostid.clone(),
            certificate,
            period_start: now - tessera_core::time::Duration::days(1),
            period_end: now,
            features: usage
                .iter()
                .map(
                    |(f, peak, used, consumed, over)| tessera_core::usage::FeatureUsage {
                        name: f.name.clone(),
                        peak: u32::try_from(*peak).unwrap_or(u32::MAX),
                        in_use: u32::try_from(*used).unwrap_or(u32::MAX),
                        metered_units: *consumed,
                        overdraft_peak: u32::try_from(*over).unwrap_or(u32::MAX),
                    },
                )
                .collect(),
            devices: devices.into_iter().collect(),
            users: vec![],
        }
        .sign(&self.key)?)
    }

    /// An offline update request: the renewal of this server's bundle with its usage report, as
    /// a file for the back office's `/offline` page or `tessera backoffice offline respond`. The
    /// sync of a server that never goes online: applying the response
    /// ([`Server::offline_apply`]) installs the renewed bundle and starts the next report's peaks
    /// afresh.
    pub async fn offline_update_request(&self) -> Result<String, ServerError> {
        let certificate = self
            .certificate
            .read()
            .await
            .as_ref()
            .map(|c| c.text.to_string())
            .ok_or(LinkError::NotActivated)?;
        let report = self.usage_report_document(certificate).await?;
        let mut id = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let jti = format!("srv-update-{}", hex::encode(id));
        let text = tessera_core::offline::RequestClaims {
            jti: jti.clone(),
            iat: self.clock.now(),
            aud: self.producer.kid().to_string(),
            requester_key: String::new(),
            body: tessera_core::offline::RequestBody::Renewal {
                server_hostid: self.hostid.clone(),
                usage_report: Some(report),
            },
        }
        .sign(&self.key)?;
        // kept in the store: the response may come back after a restart, or to another member
        self.store.put_setting(OFFLINE_UPDATE, &jti).await?;
        Ok(text)
    }

    /// A confirmation request: tells the back office which license this server serves now (and
    /// which request's response it came from), as a file for `tessera backoffice offline
    /// respond`. The back office records it; nothing comes back to apply.
    pub async fn offline_confirmation(&self) -> Result<String, ServerError> {
        let license = self
            .installed
            .lock()
            .await
            .as_deref()
            .and_then(|text| {
                tessera_core::document::decode_unverified::<tessera_core::LicenseClaims>(
                    text,
                    tessera_core::DocumentType::License,
                )
                .ok()
            })
            .map(|c| c.jti)
            .ok_or(LinkError::NotActivated)?;
        let mut id = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let in_reply_to = self
            .store
            .get_setting(OFFLINE_APPLIED)
            .await?
            .filter(|s| !s.is_empty());
        Ok(tessera_core::offline::RequestClaims {
            jti: format!("srv-confirm-{}", hex::encode(id)),
            iat: self.clock.now(),
            aud: self.producer.kid().to_string(),
            requester_key: String::new(),
            body: tessera_core::offline::RequestBody::Confirmation {
                server_hostid: self.hostid.clone(),
                license,
                in_reply_to,
            },
        }
        .sign(&self.key)?)
    }

    /// In a cluster: serves the bundle another member installed (an activation or a renewal), if
    /// there is a newer one in the shared store. Returns whether it changed.
    pub async fn refresh_from_store(&self) -> Result<bool, ServerError> {
        let tessera_store::ServerState {
            license,
            certificate,
            ..
        } = self.store.server_state(&InstanceId::on_site()).await?;
        let mut installed = self.installed.lock().await;
        if license.is_none() || license == *installed {
            return Ok(false);
        }
        let now = self.clock.now();
        let records = bundle_records(
            license.as_deref(),
            &self.producer_keyring(),
            &self.hostid,
            now,
        );
        *self.certificate.write().await = certificate.map(ServedCertificate::new);
        self.engine.reload(records).await?;
        self.bundle_changed(license.as_deref());
        *installed = license;
        Ok(true)
    }

    /// An offline activation request file for these keys and counts, signed with this server's key,
    /// for the back office's `/offline` page or `tessera backoffice offline respond`.
    pub fn offline_request(&self, activations: &[KeyCount]) -> Result<String, ServerError> {
        let mut id = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut id);
        tessera_core::offline::RequestClaims {
            jti: format!("srv-{}", hex::encode(id)),
            iat: self.clock.now(),
            aud: self.producer.kid().to_string(),
            requester_key: String::new(),
            body: tessera_core::offline::RequestBody::ServerActivation {
                server_hostid: self.hostid.clone(),
                server_key: encode_key(&self.key.public()),
                activations: activations.to_vec(),
            },
        }
        .sign(&self.key)
        .map_err(ServerError::from)
    }

    /// For `tessera server rebind --response FILE`: applies a response file only if its license
    /// was issued after the one installed, so that a response kept from an earlier activation (in
    /// a copy of the data directory, say) re-validates nothing.
    pub async fn offline_apply_fresh(&self, response: &str) -> Result<usize, ServerError> {
        let r = tessera_core::offline::ResponseClaims::verify(
            response,
            &self.producer_keyring(),
            self.clock.now(),
        )
        .map_err(LinkError::InvalidResponseFile)?;
        let issued = |text: &str| {
            tessera_core::document::decode_unverified::<tessera_core::LicenseClaims>(
                text,
                tessera_core::DocumentType::License,
            )
            .ok()
            .map(|c| c.iat)
        };
        if let (Some(new), Some(installed)) = (
            issued(&r.license),
            self.store
                .server_state(&InstanceId::on_site())
                .await?
                .license
                .as_deref()
                .and_then(issued),
        ) {
            if new <= installed {
                return Err(LinkError::NotFresh {
                    issued: tessera_core::time_fmt::display_time(new),
                    installed: tessera_core::time_fmt::display_time(installed),
                }
                .into());
            }
        }
        self.offline_apply(response).await
    }

    /// Applies the back office's response file: checks it and installs what it holds.
    pub async fn offline_apply(&self, response: &str) -> Result<usize, ServerError> {
        let r = tessera_core::offline::ResponseClaims::verify(
            response,
            &self.producer_keyring(),
            self.clock.now(),
        )
        .map_err(LinkError::InvalidResponseFile)?;
        let cert = r.certificate.ok_or(LinkError::NotAServerResponse)?;
        let n = self.install(&r.license, &cert).await?;
        let answered_update = self
            .store
            .get_setting(OFFLINE_UPDATE)
            .await?
            .is_some_and(|pending| pending == r.in_reply_to);
        self.store
            .put_setting(OFFLINE_APPLIED, &r.in_reply_to)
            .await?;
        if answered_update {
            self.store.put_setting(OFFLINE_UPDATE, "").await?;
        }
        if answered_update {
            // the back office has the report the request carried: the next starts afresh
            self.engine.report(true).await;
        }
        Ok(n)
    }

    /// Checks and installs a license bundle and certificate from the back office (online or from
    /// an offline response); returns how many feature records it serves now.
    pub async fn install(&self, license: &str, certificate: &str) -> Result<usize, ServerError> {
        let now = self.clock.now();
        let ring = self.producer_keyring();
        let lic = License::verify(license, &ring, now, std::slice::from_ref(&self.hostid))
            .map_err(LinkError::InvalidLicense)?;
        let cert = ServerCertificateClaims::verify(certificate, &ring, now)
            .map_err(LinkError::InvalidCertificate)?;
        if cert.server_public_key().ok().as_ref() != Some(&self.key.public())
            || cert.server_hostid != self.hostid
        {
            return Err(LinkError::CertificateForAnotherServer.into());
        }
        // a replayed older answer (from a fake or stale back office) must not roll the bundle back
        if let Some(current) = self
            .store
            .server_state(&InstanceId::on_site())
            .await?
            .license
        {
            let installed: Option<tessera_core::LicenseClaims> =
                tessera_core::document::decode_unverified(
                    &current,
                    tessera_core::DocumentType::License,
                )
                .ok();
            if let Some(installed) = installed {
                if lic.claims().iat < installed.iat {
                    return Err(LinkError::Replayed {
                        issued: tessera_core::time_fmt::display_time(lic.claims().iat),
                        installed: tessera_core::time_fmt::display_time(installed.iat),
                    }
                    .into());
                }
            }
        }
        // the bundle and its certificate in one write: a cluster member refreshing from the store
        // never serves the one with the other's predecessor
        self.store
            .install_license(&InstanceId::on_site(), license, certificate)
            .await?;
        *self.certificate.write().await = Some(ServedCertificate::new(certificate.to_string()));
        *self.installed.lock().await = Some(license.to_string());
        let n = lic.features().len();
        self.engine.reload(lic.features().to_vec()).await?;
        self.bundle_changed(Some(license));
        Ok(n)
    }
}

/// The back office's answer as `T`; its problem, refused, as the error `refused(detail, code)`.
async fn backoffice_answer<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    refused: impl FnOnce(String, String) -> LinkError,
) -> Result<T, ServerError> {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    if !status.is_success() {
        let problem = ErrorAnswer::read(status.as_u16(), &body);
        return Err(refused(
            problem.detail_or("no detail").to_string(),
            problem.code_or_status(),
        )
        .into());
    }
    serde_json::from_slice(&body).map_err(|e| {
        LinkError::UnreadableAnswer(format!(
            "the back office's answer is not what this license server reads: {e}"
        ))
        .into()
    })
}

/// The setting that keeps the offline update request whose response starts the next usage report
/// afresh (empty: none pending). In the store, so that a restart in between, or a cluster member
/// applying the response, still knows it.
const OFFLINE_UPDATE: &str = "offline.update_pending";
/// The setting that keeps when the back office last answered an activation or a sync (unix
/// seconds).
const LAST_SYNC: &str = "sync.last_success";
/// The setting that keeps the request the last offline response applied answered (for the
/// confirmation).
const OFFLINE_APPLIED: &str = "offline.last_applied";
