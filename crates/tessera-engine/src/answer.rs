//! The answers: made while their commit runs, released only after it.

use tessera_core::capability::CapabilityResponseClaims;
use tessera_core::SigningKey;
use tokio::sync::oneshot;

use crate::writer::Pending;
use crate::EngineError;

/// The answer to a capability request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response token: signed (JWS, checked with the server certificate) or sealed (checked
    /// with the lease's session key).
    pub token: String,
    /// Sealed with the lease's session key: the client needs no certificate to check it.
    pub sealed: bool,
    /// The answer refuses at least one feature or lease.
    pub denied: bool,
}

/// Makes the answers to a decided batch while its commit runs (sealed ones with their lease's
/// session key, the others signed together under one signature), and hands them to their handlers
/// only when the writer sends the batch back after the commit. If the commit fails the batch never
/// comes and the answers are dropped unsent.
pub(crate) async fn prepare_answers(
    claims: Vec<CapabilityResponseClaims>,
    seals: Vec<Option<(u64, [u8; 32])>>,
    key: SigningKey,
    committed: oneshot::Receiver<Vec<Pending>>,
) {
    let sign_failed = |e: tessera_core::document::SignError| EngineError::Sign(e.to_string());
    let mut answers: Vec<Option<Result<Answer, EngineError>>> = Vec::with_capacity(claims.len());
    let mut to_sign = Vec::new();
    let mut signed_at = Vec::new();
    for (i, (c, seal)) in claims.into_iter().zip(seals).enumerate() {
        let denied = !c.denials.is_empty();
        match seal {
            Some((lease, k)) => {
                answers.push(Some(c.seal(&k, lease).map_err(sign_failed).map(|token| {
                    Answer {
                        token,
                        sealed: true,
                        denied,
                    }
                })))
            }
            None => {
                answers.push(None);
                signed_at.push((i, denied));
                to_sign.push(c);
            }
        }
    }
    if !to_sign.is_empty() {
        match CapabilityResponseClaims::sign_batch(&to_sign, &key) {
            Ok(tokens) => {
                for ((i, denied), token) in signed_at.into_iter().zip(tokens) {
                    if let Some(a) = answers.get_mut(i) {
                        *a = Some(Ok(Answer {
                            token,
                            sealed: false,
                            denied,
                        }));
                    }
                }
            }
            Err(e) => {
                for (i, _) in signed_at {
                    if let Some(a) = answers.get_mut(i) {
                        *a = Some(Err(EngineError::Sign(e.to_string())));
                    }
                }
            }
        }
    }
    // nothing leaves before the decisions are committed
    let Ok(batch) = committed.await else {
        return;
    };
    for (p, a) in batch.into_iter().zip(answers) {
        let a = a.unwrap_or_else(|| Err(EngineError::Sign("no answer was made".into())));
        let _ = p.reply.send(a);
    }
}
