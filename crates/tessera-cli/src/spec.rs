//! The license spec: a TOML description of a license for `tessera license issue`.
//!
//! The format is documented in `docs/license-format.md` ("The license spec") with a complete example in
//! `docs/examples/license-spec.toml`. Unknown keys are errors, so a typo is caught, not ignored.

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use tessera_core::feature::{Count, Expiry, Feature};
use tessera_core::license::{LicenseClaims, LICENSE_FORMAT_VERSION};
use tessera_core::time::OffsetDateTime;
use tessera_core::time_fmt::{parse_time, DateBound};
use tessera_core::{HostId, Version};

/// The whole spec file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseSpec {
    /// Who the license is for.
    pub licensee: String,
    /// Who issues it.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The license id; a random UUID when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Not valid before (date or RFC 3339 time).
    #[serde(default)]
    pub not_before: Option<toml::Value>,
    /// License expiry (date, RFC 3339 time, or "permanent").
    #[serde(default)]
    pub expires: Option<toml::Value>,
    /// Host ids to bind to (any one matches).
    #[serde(default)]
    pub hostids: Vec<String>,
    /// Feature records.
    #[serde(default, rename = "feature")]
    pub features: Vec<FeatureSpec>,
}

/// One `[[feature]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    name: String,
    #[serde(default)]
    version: Option<toml::Value>,
    count: toml::Value,
    #[serde(default)]
    metered: bool,
    #[serde(default)]
    overdraft: u32,
    /// For named users only (a license server serves the users its administrator assigns).
    #[serde(default)]
    named_user: bool,
    #[serde(default)]
    start: Option<toml::Value>,
    #[serde(default)]
    expires: Option<toml::Value>,
    #[serde(default)]
    vendor_string: Option<String>,
    #[serde(default)]
    product: Option<String>,
    #[serde(default)]
    product_version: Option<String>,
    #[serde(default)]
    activation_id: Option<String>,
    #[serde(default)]
    entitlement_id: Option<String>,
}

fn when(v: &toml::Value, bound: DateBound, field: &str) -> Result<OffsetDateTime> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => bail!(
            "{field}: expected a date such as 2027-12-31, found {}",
            other.type_str()
        ),
    };
    parse_time(&text, bound).map_err(|e| anyhow!("{field}: {e}"))
}

fn expiry(v: Option<&toml::Value>, field: &str) -> Result<Expiry> {
    match v {
        None => Ok(Expiry::Permanent),
        Some(toml::Value::String(s)) if s == "permanent" => Ok(Expiry::Permanent),
        Some(v) => Ok(Expiry::At(when(v, DateBound::EndOfDay, field)?)),
    }
}

impl FeatureSpec {
    fn into_feature(self) -> Result<Feature> {
        let field = |f: &str| format!("feature '{}': {f}", self.name);
        let version = match &self.version {
            None => Version::default(),
            Some(toml::Value::String(s)) => s
                .parse()
                .map_err(|e| anyhow!("{}: {e}", field("version")))?,
            Some(other) => bail!(
                "{}: write the version as a string, e.g. version = \"2.0\" (found {}; a TOML number would turn 2.10 into 2.1)",
                field("version"),
                other.type_str()
            ),
        };
        let count = match &self.count {
            toml::Value::Integer(n) => Count::Counted(u32::try_from(*n).map_err(|_| {
                anyhow!("{}: {n} is out of range (1 to 4294967295)", field("count"))
            })?),
            toml::Value::String(s) if s == "uncounted" => Count::Uncounted,
            other => bail!(
                "{}: expected a number or \"uncounted\", found {}",
                field("count"),
                other
            ),
        };
        let start = self
            .start
            .as_ref()
            .map(|v| when(v, DateBound::StartOfDay, &field("start")))
            .transpose()?;
        let expiry = expiry(self.expires.as_ref(), &field("expires"))?;
        Ok(Feature {
            name: self.name,
            version,
            count,
            metered: self.metered,
            overdraft: self.overdraft,
            named_user: self.named_user,
            start,
            expiry,
            vendor_string: self.vendor_string,
            product: self.product,
            product_version: self.product_version,
            activation_id: self.activation_id,
            entitlement_id: self.entitlement_id,
        })
    }
}

impl LicenseSpec {
    /// Parses spec text; errors name the line and column.
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).context("the license spec is not valid")
    }

    /// Turns the spec into license claims issued at `now`; `random_id` is used when the spec names none.
    pub fn into_claims(self, now: OffsetDateTime, random_id: String) -> Result<LicenseClaims> {
        let hostids = self
            .hostids
            .iter()
            .map(|h| {
                h.parse::<HostId>()
                    .map_err(|e| anyhow!("hostids: '{h}': {e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let nbf = self
            .not_before
            .as_ref()
            .map(|v| when(v, DateBound::StartOfDay, "not_before"))
            .transpose()?;
        let exp = match expiry(self.expires.as_ref(), "expires")? {
            Expiry::Permanent => None,
            Expiry::At(t) => Some(t),
        };
        let features = self
            .features
            .into_iter()
            .map(FeatureSpec::into_feature)
            .collect::<Result<Vec<_>>>()?;
        let claims = LicenseClaims {
            v: LICENSE_FORMAT_VERSION,
            iss: self.issuer.unwrap_or_else(|| "Tessera producer".into()),
            sub: self.licensee,
            jti: self.id.unwrap_or(random_id),
            iat: now,
            nbf,
            exp,
            hostids,
            features,
            policy: None,
        };
        Ok(claims.finalize()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 0:00 UTC);

    #[test]
    fn example_spec_parses() {
        let text = include_str!("../../../docs/examples/license-spec.toml");
        let claims = LicenseSpec::parse(text)
            .unwrap()
            .into_claims(NOW, "x".into())
            .unwrap();
        assert!(claims.features.len() >= 3);
        assert!(claims.features.iter().any(|f| f.count == Count::Uncounted));
        assert!(claims.features.iter().any(|f| f.metered));
    }

    #[test]
    fn typos_and_bad_values_are_caught() {
        let e = LicenseSpec::parse("licensee = \"a\"\nexpire = 2027-01-01\n").unwrap_err();
        assert!(format!("{e:#}").contains("expire"), "{e:#}");
        let s = LicenseSpec::parse(
            "licensee = \"a\"\n[[feature]]\nname = \"x\"\nversion = 2.10\ncount = 1\n",
        )
        .unwrap();
        let e = s.into_claims(NOW, "x".into()).unwrap_err();
        assert!(format!("{e:#}").contains("as a string"), "{e:#}");
        let s = LicenseSpec::parse("licensee = \"a\"\n[[feature]]\nname = \"x\"\ncount = -3\n")
            .unwrap();
        assert!(
            format!("{:#}", s.into_claims(NOW, "x".into()).unwrap_err()).contains("out of range")
        );
    }

    #[test]
    fn dates_are_whole_days() {
        let s = LicenseSpec::parse(
            "licensee = \"a\"\n[[feature]]\nname = \"x\"\ncount = \"uncounted\"\nexpires = 2027-12-31\n",
        )
        .unwrap();
        let c = s.into_claims(NOW, "x".into()).unwrap();
        assert_eq!(
            c.features[0].expiry,
            Expiry::At(datetime!(2027-12-31 23:59:59 UTC))
        );
        assert_eq!(c.exp, Some(datetime!(2027-12-31 23:59:59 UTC)));
    }
}
