//! The body of every error answer (RFC 9457 `application/problem+json`) with a stable `code`, and
//! how a caller reads one.

use serde::{Deserialize, Serialize};

/// The body of every error answer (RFC 9457 `application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// `urn:tessera:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary for the status.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// What went wrong, for programs: stable across versions.
    pub code: String,
}

impl Problem {
    /// The problem for an answer with HTTP `status` (its reason phrase, e.g. `Not Found`, as
    /// `title`), a stable `code` and a `detail` for people; `type` is `urn:tessera:problem:<code>`.
    pub fn new(status: u16, title: &str, code: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:tessera:problem:{code}"),
            title: title.to_string(),
            status,
            detail: detail.into(),
            code: code.to_string(),
        }
    }
}

/// An error answer as a caller reads it: the HTTP status and what the body said of the problem,
/// as far as it said it. A body that is not a problem (a proxy's HTML page, an empty body) gives
/// neither a code nor a detail; one that is gives both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// The HTTP status of the answer.
    pub status: u16,
    /// The problem's stable `code`, if the body had one.
    pub code: Option<String>,
    /// The problem's `detail`, for people, if the body had one.
    pub detail: Option<String>,
    /// The problem's `title` (the status's reason phrase), if the body had one.
    pub title: Option<String>,
}

/// The parts of a problem a caller uses; the others may be missing or of another type.
#[derive(Deserialize)]
struct Parts {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    detail: Option<serde_json::Value>,
    #[serde(default)]
    title: Option<serde_json::Value>,
}

impl ErrorAnswer {
    /// Reads the body of an error answer with HTTP `status`. Never fails: what the body does not
    /// say (it is not JSON, or `code` or `detail` is missing or not a string) is `None`.
    pub fn read(status: u16, body: &[u8]) -> Self {
        let parts: Option<Parts> = serde_json::from_slice(body).ok();
        let text = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        let (code, detail, title) = parts.map_or((None, None, None), |p| {
            (text(p.code), text(p.detail), text(p.title))
        });
        ErrorAnswer {
            status,
            code,
            detail,
            title,
        }
    }

    /// The stable code, or the HTTP status (e.g. `502`) when the body named none.
    pub fn code_or_status(&self) -> String {
        self.code.clone().unwrap_or_else(|| self.status.to_string())
    }

    /// The detail, or `fallback` when the body gave none.
    pub fn detail_or<'a>(&'a self, fallback: &'a str) -> &'a str {
        self.detail.as_deref().unwrap_or(fallback)
    }

    /// `DETAIL (CODE)`, as the command line and the license server report a refusal: `fallback`
    /// stands for a missing detail, the HTTP status for a missing code.
    pub fn describe(&self, fallback: &str) -> String {
        format!("{} ({})", self.detail_or(fallback), self.code_or_status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_read_back_as_written() {
        let p = Problem::new(
            409,
            "Conflict",
            "count_exhausted",
            "all 5 seats are activated",
        );
        let body = serde_json::to_vec(&p).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "urn:tessera:problem:count_exhausted");
        assert_eq!(v["title"], "Conflict");
        assert_eq!(v["status"], 409);
        assert_eq!(serde_json::from_slice::<Problem>(&body).unwrap(), p);
        let e = ErrorAnswer::read(409, &body);
        assert_eq!(e.code.as_deref(), Some("count_exhausted"));
        assert_eq!(e.detail.as_deref(), Some("all 5 seats are activated"));
        assert_eq!(e.title.as_deref(), Some("Conflict"));
        assert_eq!(
            e.describe("refused"),
            "all 5 seats are activated (count_exhausted)"
        );
    }

    #[test]
    fn what_a_body_does_not_say_is_none() {
        for body in [
            &b"<html>Bad Gateway</html>"[..],
            b"",
            b"null",
            b"[1]",
            br#"{"code": 7, "detail": null}"#,
        ] {
            let e = ErrorAnswer::read(502, body);
            assert_eq!((e.code.as_deref(), e.detail.as_deref()), (None, None));
            assert_eq!(e.title, None);
            assert_eq!(e.code_or_status(), "502");
            assert_eq!(e.describe("no detail"), "no detail (502)");
        }
        // a body with only some of it: what it has is kept
        let e = ErrorAnswer::read(400, br#"{"detail": "the body is not JSON", "extra": 1}"#);
        assert_eq!(e.describe("x"), "the body is not JSON (400)");
        let e = ErrorAnswer::read(401, br#"{"code": "unauthorized"}"#);
        assert_eq!(e.describe("refused"), "refused (unauthorized)");
    }
}
