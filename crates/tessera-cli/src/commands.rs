//! The command implementations. Each reads its inputs, calls the core, and prints a short report.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tessera_core::feature::{Count, Expiry, Feature};
use tessera_core::license::{License, LicenseClaims};
use tessera_core::time_fmt::{display_date, display_time, parse_time, DateBound};
use tessera_core::{Clock, HostId, Keyring, PublicKey, SigningKey};
use tessera_host::{HostIdentity, SystemClock};

use crate::fsutil::{read_text, write_atomic};
use crate::spec::LicenseSpec;
use crate::Failure;

const PRIVATE_KEY_FILE: &str = "producer.key";
const PUBLIC_KEY_FILE: &str = "producer.pub";

fn key_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(PRIVATE_KEY_FILE), dir.join(PUBLIC_KEY_FILE))
}

fn create_private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict access to {}", dir.display()))?;
    }
    Ok(())
}

/// Writes a new key pair into `dir`; returns the key.
fn write_new_keys(dir: &Path) -> Result<SigningKey> {
    create_private_dir(dir)?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let (private, public) = key_paths(dir);
    write_atomic(&private, key.to_pkcs8_pem()?.as_bytes(), 0o600)?;
    write_atomic(&public, key.public().to_spki_pem()?.as_bytes(), 0o644)?;
    Ok(key)
}

pub fn keys_generate(out: &Path, force: bool) -> Result<()> {
    let (private, public) = key_paths(out);
    if !force && (private.exists() || public.exists()) {
        bail!(
            "{} already holds producer keys; licenses signed with them verify only against them. Pass --force to replace them, or choose another --out",
            out.display()
        );
    }
    let key = write_new_keys(out)?;
    println!(
        "private key: {} (keep it secret; mode 0600)",
        private.display()
    );
    println!(
        "public key:  {} (ship it with your application)",
        public.display()
    );
    println!("key id:      {}", key.kid());
    Ok(())
}

pub fn load_private_key(path: &Path) -> Result<SigningKey> {
    let pem = read_text(path, "private key")?;
    SigningKey::from_pkcs8_pem(&pem).with_context(|| format!("{}", path.display()))
}

pub fn load_public_key(path: &Path) -> Result<PublicKey> {
    let pem = read_text(path, "public key")?;
    PublicKey::from_spki_pem(&pem).with_context(|| format!("{}", path.display()))
}

pub fn license_issue(key_path: &Path, spec_path: &Path, out: &Path) -> Result<()> {
    let key = load_private_key(key_path)?;
    let text = read_text(spec_path, "license spec")?;
    let claims = LicenseSpec::parse(&text)
        .and_then(|s| s.into_claims(SystemClock.now(), uuid::Uuid::new_v4().to_string()))
        .with_context(|| format!("{}", spec_path.display()))?;
    let file = claims.clone().issue(&key)?;
    write_atomic(out, file.as_bytes(), 0o644)?;
    println!(
        "issued license {} for {} to {} (signed by key {})",
        claims.jti,
        claims.sub,
        out.display(),
        key.kid()
    );
    print_claims(&claims);
    Ok(())
}

fn machine() -> HostIdentity {
    tessera_host::this_machine().identify()
}

/// This machine's host ids for checking `license_text`: its identifiers, plus its PC identifier
/// for each product the license names.
pub fn presented_ids(license_text: &str) -> Vec<HostId> {
    let products: Vec<String> = tessera_core::document::decode_unverified::<LicenseClaims>(
        license_text,
        tessera_core::DocumentType::License,
    )
    .map(|c| c.features.into_iter().filter_map(|f| f.product).collect())
    .unwrap_or_default();
    machine().ids_for_products(products.iter().map(String::as_str))
}

pub fn license_verify(
    file: &Path,
    public_key: &Path,
    hostids: &[String],
    at: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let key = load_public_key(public_key)?;
    let text = read_text(file, "license file")?;
    let host: Vec<HostId> = if hostids.is_empty() {
        presented_ids(&text)
    } else {
        hostids
            .iter()
            .map(|h| h.parse().map_err(|e| anyhow!("--hostid {h}: {e}")))
            .collect::<Result<_>>()?
    };
    let now = match at {
        Some(s) => parse_time(s, DateBound::StartOfDay).map_err(|e| anyhow!("--at: {e}"))?,
        None => SystemClock.now(),
    };
    let license = License::verify(&text, &Keyring::with(key), now, &host)
        .map_err(|e| Failure::Invalid(format!("{}: {e}", file.display())))?;
    if json {
        let out = serde_json::to_string_pretty(license.claims()).map_err(anyhow::Error::from)?;
        println!("{out}");
        return Ok(());
    }
    let c = license.claims();
    println!(
        "valid: license {} for {}, signed by key {}",
        c.jti,
        c.sub,
        license.kid()
    );
    print_claims(c);
    let usable = c.features.iter().filter(|f| f.is_active(now)).count();
    println!(
        "{usable} of {} feature records usable on {}",
        c.features.len(),
        display_date(now)
    );
    Ok(())
}

fn print_claims(c: &LicenseClaims) {
    println!("  issuer:     {}", c.iss);
    println!("  issued:     {}", display_time(c.iat));
    if let Some(nbf) = c.nbf {
        println!("  valid from: {}", display_time(nbf));
    }
    match c.exp {
        Some(exp) => println!("  expires:    {}", display_time(exp)),
        None => println!("  expires:    never (permanent)"),
    }
    if c.hostids.is_empty() {
        println!("  bound to:   any machine");
    } else {
        let ids: Vec<String> = c.hostids.iter().map(ToString::to_string).collect();
        println!("  bound to:   {}", ids.join(" or "));
    }
    println!("  features:");
    for f in &c.features {
        println!("    {}", describe_feature(f));
    }
}

fn describe_feature(f: &Feature) -> String {
    let mut s = format!("{} {}", f.name, f.version);
    match f.count {
        Count::Uncounted => s.push_str("  uncounted"),
        Count::Counted(n) if f.metered => s.push_str(&format!("  metered {n} units")),
        Count::Counted(n) => s.push_str(&format!("  count {n}")),
    }
    if f.overdraft > 0 {
        s.push_str(&format!(" (+{} overdraft)", f.overdraft));
    }
    if let Some(start) = f.start {
        s.push_str(&format!("  from {}", display_date(start)));
    }
    match f.expiry {
        Expiry::Permanent => s.push_str("  permanent"),
        Expiry::At(t) => s.push_str(&format!("  expires {}", display_date(t))),
    }
    for (label, v) in [
        ("product", &f.product),
        ("product version", &f.product_version),
        ("activation", &f.activation_id),
        ("entitlement", &f.entitlement_id),
        ("vendor string", &f.vendor_string),
    ] {
        if let Some(v) = v {
            s.push_str(&format!("  {label} {v}"));
        }
    }
    s
}

pub fn hostid(product: &str, json: bool) -> Result<()> {
    let id = machine();
    let pc = id.pc_id(product);
    if json {
        let out = serde_json::json!({
            "hostids": id.ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "device_type": id.device_type.as_str(),
            "device_type_evidence": id.evidence,
            "product": product,
            "pc_identifier": pc.as_ref().map(ToString::to_string),
            "pc_identifier_source": id.pc_id_source().map(|h| h.kind().as_str()),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("host ids:");
    if id.ids.is_empty() {
        println!("  (none could be read)");
    }
    for h in &id.ids {
        println!("  {h}");
    }
    println!(
        "device type:   {} ({})",
        id.device_type,
        id.evidence.join("; ")
    );
    match (pc, id.pc_id_source()) {
        (Some(pc), Some(src)) => {
            println!("PC identifier: {pc} (for product '{product}', derived from {})", src.kind())
        }
        _ => println!("PC identifier: unavailable (no machine id, physical MAC address or VM UUID could be read)"),
    }
    Ok(())
}
