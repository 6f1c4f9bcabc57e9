//! `tessera server features|feature|devices|device`: the views of what the running server serves
//! (features by name and version, every feature record, one feature with the devices holding it,
//! the devices with what they hold), through its admin API. Any user may read them.

use anyhow::{bail, Result};
use clap::Args;
use tessera_wire::views::{
    DeviceDetails, DevicePage, FeatureRecordPage, FeatureSummaryPage, FeatureView, Paging,
};

use crate::server::{admin_call, token_for, At, Body};

/// Search, sort and page of a list view.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub at: At,
    /// Only rows matching this text (features: the name; devices: the device id, the part after
    /// `KIND=`, the alias or the user), whole unless --prefix; ASCII case aside.
    #[arg(long)]
    pub search: Option<String>,
    /// --search matches the start of the text.
    #[arg(long, requires = "search")]
    pub prefix: bool,
    /// The field to sort by (the server names the fields of each view when it does not know one).
    #[arg(long)]
    pub sort: Option<String>,
    /// `asc` or `desc`.
    #[arg(long, value_parser = ["asc", "desc"])]
    pub order: Option<String>,
    /// The page, from 1.
    #[arg(long)]
    pub page: Option<u32>,
    /// Rows per page (1 to 500; the server's default 50).
    #[arg(long)]
    pub page_size: Option<u32>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl ListArgs {
    fn query(&self) -> Body {
        let mut q: Vec<(&'static str, String)> = Vec::new();
        if let Some(s) = &self.search {
            q.push(("q", s.clone()));
            if self.prefix {
                q.push(("match", "prefix".into()));
            }
        }
        if let Some(s) = &self.sort {
            q.push(("sort", s.clone()));
        }
        if let Some(o) = &self.order {
            q.push(("order", o.clone()));
        }
        if let Some(p) = self.page {
            q.push(("page", p.to_string()));
        }
        if let Some(p) = self.page_size {
            q.push(("page_size", p.to_string()));
        }
        Body::Query(q)
    }
}

/// A path segment with everything but unreserved characters percent-encoded.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'=' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn footer(p: &Paging, shown: usize, what: &str) {
    let pages = p.total.div_ceil(u64::from(p.page_size.max(1))).max(1);
    println!(
        "{shown} of {} {what} (page {} of {pages}, {} a page)",
        p.total, p.page, p.page_size
    );
}

fn opt(v: Option<u64>) -> String {
    v.map_or("uncounted".into(), |n| n.to_string())
}

fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `tessera server features [--details]`.
pub async fn features(list: ListArgs, details: bool) -> Result<()> {
    let token = token_for(&list.at.server, list.at.token.clone())?;
    let ca = list.at.ca_cert.as_deref();
    if details {
        let v: FeatureRecordPage = admin_call(
            &list.at.server,
            &token,
            ca,
            "/api/v1/admin/feature-records",
            list.query(),
        )
        .await?;
        if list.json {
            return print_json(&v);
        }
        println!(
            "{:<20} {:<8} {:>9} {:>6} {:>9} {:<10} {:<10} {:<16} {:<16} {:<16} VENDOR STRING",
            "FEATURE",
            "VERSION",
            "COUNT",
            "USED",
            "AVAILABLE",
            "START",
            "EXPIRY",
            "PRODUCT",
            "ACTIVATION ID",
            "ENTITLEMENT ID"
        );
        for r in &v.records {
            let product = match (&r.product, &r.product_version) {
                (Some(p), Some(v)) => format!("{p} {v}"),
                (Some(p), None) => p.clone(),
                _ => "-".into(),
            };
            println!(
                "{:<20} {:<8} {:>9} {:>6} {:>9} {:<10} {:<10} {:<16} {:<16} {:<16} {}",
                r.name,
                r.version,
                opt(r.count.map(u64::from)),
                r.used,
                opt(r.available),
                text(&r.start),
                r.expiry,
                product,
                text(&r.activation_id),
                text(&r.entitlement_id),
                text(&r.vendor_string)
            );
        }
        footer(&v.paging, v.records.len(), "feature record(s)");
        return Ok(());
    }
    let v: FeatureSummaryPage = admin_call(
        &list.at.server,
        &token,
        ca,
        "/api/v1/admin/features",
        list.query(),
    )
    .await?;
    if list.json {
        return print_json(&v);
    }
    println!(
        "{:<20} {:<8} {:>9} {:>6} {:>9} {:>9} {:<10} {:<10} {:<7} COUNTED",
        "FEATURE", "VERSION", "COUNT", "USED", "AVAILABLE", "OVERDRAFT", "FIRST", "LAST", "METERED"
    );
    for f in &v.features {
        println!(
            "{:<20} {:<8} {:>9} {:>6} {:>9} {:>9} {:<10} {:<10} {:<7} {}",
            f.name,
            f.version,
            opt(f.count),
            f.used,
            opt(f.available),
            f.overdraft_used,
            f.first_expiry,
            f.last_expiry,
            if f.metered { "yes" } else { "no" },
            if f.counted { "yes" } else { "no" }
        );
    }
    footer(&v.paging, v.features.len(), "feature(s)");
    Ok(())
}

/// `tessera server feature NAME`.
pub async fn feature(name: &str, list: ListArgs) -> Result<()> {
    if name.is_empty() {
        bail!("give the feature's name (tessera server features lists them)");
    }
    let token = token_for(&list.at.server, list.at.token.clone())?;
    let v: FeatureView = admin_call(
        &list.at.server,
        &token,
        list.at.ca_cert.as_deref(),
        &format!("/api/v1/admin/features/{}", segment(name)),
        list.query(),
    )
    .await?;
    if list.json {
        return print_json(&v);
    }
    println!("feature {}", v.name);
    for s in &v.summary {
        println!(
            "  version {}: {} used of {} ({} available, {} overdraft), expires {} to {}{}",
            s.version,
            s.used,
            opt(s.count),
            opt(s.available),
            s.overdraft_used,
            s.first_expiry,
            s.last_expiry,
            if s.metered { ", metered" } else { "" }
        );
    }
    for r in &v.records {
        println!(
            "  record {} {}: count {}, start {}, expiry {}, activation {}, entitlement {}, vendor string {}",
            r.name,
            r.version,
            opt(r.count.map(u64::from)),
            text(&r.start),
            r.expiry,
            text(&r.activation_id),
            text(&r.entitlement_id),
            text(&r.vendor_string)
        );
    }
    println!();
    println!(
        "{:<32} {:<10} {:<10} {:<20} {:<12} {:<8} {:>5} {:>9} {:<8} EXPIRES",
        "DEVICE", "ID TYPE", "TYPE", "ALIAS", "USER", "VERSION", "COUNT", "OVERDRAFT", "BORROWED"
    );
    for d in &v.devices {
        println!(
            "{:<32} {:<10} {:<10} {:<20} {:<12} {:<8} {:>5} {:>9} {:<8} {}",
            d.device_id,
            d.id_type,
            d.device_type,
            text(&d.alias),
            text(&d.user),
            d.version,
            d.count,
            d.overdraft,
            if d.borrowed { "yes" } else { "no" },
            d.expires
        );
    }
    footer(&v.paging, v.devices.len(), "device(s) holding it");
    Ok(())
}

/// `tessera server devices`.
pub async fn devices(list: ListArgs) -> Result<()> {
    let token = token_for(&list.at.server, list.at.token.clone())?;
    let v: DevicePage = admin_call(
        &list.at.server,
        &token,
        list.at.ca_cert.as_deref(),
        "/api/v1/admin/devices",
        list.query(),
    )
    .await?;
    if list.json {
        return print_json(&v);
    }
    println!(
        "{:<32} {:<10} {:<10} {:<20} {:<12} {:<25} FEATURES",
        "DEVICE", "ID TYPE", "TYPE", "ALIAS", "USER", "EXPIRES"
    );
    for d in &v.devices {
        println!(
            "{:<32} {:<10} {:<10} {:<20} {:<12} {:<25} {}",
            d.device_id,
            d.id_type,
            d.device_type,
            text(&d.alias),
            text(&d.user),
            d.expires,
            d.features.join(",")
        );
    }
    footer(&v.paging, v.devices.len(), "device(s)");
    Ok(())
}

/// `tessera server device ID`.
pub async fn device(id: &str, at: At, json: bool) -> Result<()> {
    let token = token_for(&at.server, at.token.clone())?;
    let v: DeviceDetails = admin_call(
        &at.server,
        &token,
        at.ca_cert.as_deref(),
        &format!("/api/v1/admin/devices/{}", segment(id)),
        Body::None,
    )
    .await?;
    if json {
        return print_json(&v);
    }
    println!("device {} (id type {})", v.device_id, v.id_type);
    for h in &v.holders {
        println!(
            "  user {}: type {}, alias {}, {} lease(s)",
            text(&h.user),
            h.device_type,
            text(&h.alias),
            h.leases
        );
    }
    println!("  everything it holds has run out by {}", v.expires);
    println!();
    println!(
        "{:<20} {:<8} {:<12} {:>5} {:>9} {:<8} {:<25} {:<10} ACTIVATION ID",
        "FEATURE", "VERSION", "USER", "COUNT", "OVERDRAFT", "BORROWED", "LEASE EXPIRES", "EXPIRY"
    );
    for f in &v.features {
        println!(
            "{:<20} {:<8} {:<12} {:>5} {:>9} {:<8} {:<25} {:<10} {}",
            f.name,
            f.version,
            text(&f.user),
            f.count,
            f.overdraft,
            if f.borrowed { "yes" } else { "no" },
            f.lease_expires,
            f.expiry,
            text(&f.activation_id)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("ethernet=0050569a3b01"), "ethernet=0050569a3b01");
        assert_eq!(segment("string=ws 1/a?b#c"), "string=ws%201%2Fa%3Fb%23c");
    }
}
