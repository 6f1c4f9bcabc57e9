//! The capability protocol on the wire (docs/protocol.md): the request an application sends to a
//! license server (`POST /api/v1/capability`), and the answer envelope around the signed (or
//! sealed) response. The request and the signed claims are `tessera-core`'s types, re-exported
//! here so that every side imports them from one place.

use serde::{Deserialize, Serialize};

pub use tessera_core::capability::{
    CapabilityRequest, CapabilityResponseClaims, DeniedFeature, GrantedSeat, Operation,
    WantedFeature,
};
pub use tessera_core::DeviceType;

/// The answer to a capability request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CapabilityAnswer {
    /// The signed response (JWS compact, `typ` tessera-capability-response+jwt), echoing the nonce.
    pub response: String,
    /// The server certificate (armoured): the server's key, signed by the producer. Absent before
    /// activation, and with a sealed answer (checked with the lease's session key).
    pub certificate: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reads_with_or_without_a_certificate() {
        let a: CapabilityAnswer =
            serde_json::from_str(r#"{"response":"eyJh.eyJi.c2ln","certificate":null}"#).unwrap();
        assert_eq!(a.response, "eyJh.eyJi.c2ln");
        assert_eq!(a.certificate, None);
        let a: CapabilityAnswer =
            serde_json::from_str(r#"{"response":"t","certificate":"-----BEGIN"}"#).unwrap();
        assert_eq!(a.certificate.as_deref(), Some("-----BEGIN"));
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"response":"t","certificate":"-----BEGIN"}"#
        );
    }

    #[test]
    fn a_request_is_the_cores() {
        let r: CapabilityRequest = serde_json::from_str(
            r#"{"operation":"request","device_id":"user=a","request_id":"r","nonce":"0123456789abcdef","features":[{"name":"modeler"}]}"#,
        )
        .unwrap();
        assert_eq!(r.operation, Operation::Request);
        assert_eq!(r.features[0].count, 1);
    }
}
