//! # tessera-host
//!
//! The edge between Tessera and the operating system: this machine's host identifiers and device type
//! (behind the [`HostProbe`] trait, Linux implemented by [`LinuxProbe`]), and the wall clock
//! ([`SystemClock`]). Everything else in Tessera takes these as values, so tests can hand in a fake
//! machine or a [`tessera_core::ManualClock`].
//!
//! Which identifiers are read, and how stable each is across reboots, NIC changes, VM clones and
//! container restarts, is described in `docs/hostids.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fs;
use std::path::PathBuf;

#[cfg(feature = "serve")]
pub mod serve;

use tessera_core::time::OffsetDateTime;
use tessera_core::{Clock, DeviceType, HostId, HostIdKind, PcId};

/// The wall clock. The only place Tessera reads the system time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// What a probe found out about a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// Every identifier found, in the order: ethernet, machine id, VM UUID, container, user.
    pub ids: Vec<HostId>,
    /// Physical, virtual, container or unknown.
    pub device_type: DeviceType,
    /// Why the device type was chosen (for `tessera hostid --verbose` and support requests).
    pub evidence: Vec<String>,
}

impl HostIdentity {
    /// The identifiers that name the machine (not the user).
    pub fn machine_ids(&self) -> impl Iterator<Item = &HostId> {
        self.ids.iter().filter(|id| !id.kind().is_user())
    }

    /// The identifier the PC identifier is derived from: the machine id when there is one (stable
    /// across reboots and network changes), else the lowest physical MAC address, else the VM UUID.
    /// User names and container ids never feed it (they change without the machine changing).
    pub fn pc_id_source(&self) -> Option<&HostId> {
        let of = |k: HostIdKind| {
            self.ids
                .iter()
                .filter(move |id| id.kind() == k)
                .min_by(|a, b| a.value().cmp(b.value()))
        };
        of(HostIdKind::MachineId)
            .or_else(|| of(HostIdKind::Ethernet))
            .or_else(|| of(HostIdKind::VmUuid))
    }

    /// The host ids this machine presents to a license naming `products`: its identifiers plus
    /// its `pc_id=…` for each product (node-locked licenses from the back office are bound to the
    /// PC identifier).
    pub fn ids_for_products<'a>(&self, products: impl IntoIterator<Item = &'a str>) -> Vec<HostId> {
        let mut ids = self.ids.clone();
        for p in products {
            if let Some(pc) = self.pc_id(p) {
                let id = HostId::from(&pc);
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        ids
    }

    /// This machine's PC identifier for `product`.
    pub fn pc_id(&self, product: &str) -> Option<PcId> {
        self.pc_id_source()
            .and_then(|id| PcId::derive(product, std::slice::from_ref(id)))
    }
}

/// Finds out what machine this is. One implementation per operating system.
pub trait HostProbe: Send + Sync + std::fmt::Debug {
    /// Reads the machine's identifiers and device type. Never fails: what cannot be read is left out.
    fn identify(&self) -> HostIdentity;
}

/// The probe for Linux: reads `/sys`, `/etc`, `/proc` under a root directory (`/` normally; a fake
/// tree in tests).
#[derive(Debug, Clone)]
pub struct LinuxProbe {
    root: PathBuf,
    user: Option<String>,
}

impl Default for LinuxProbe {
    fn default() -> Self {
        LinuxProbe {
            root: PathBuf::from("/"),
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok()
                .filter(|u| !u.is_empty()),
        }
    }
}

/// DMI vendor and product strings that mean a virtual machine.
const VM_MARKERS: &[&str] = &[
    "qemu",
    "kvm",
    "vmware",
    "virtualbox",
    "innotek",
    "xen",
    "bochs",
    "parallels",
    "microsoft corporation virtual",
    "hyper-v",
    "amazon ec2",
    "google compute engine",
    "openstack",
    "cloud hypervisor",
    "firecracker",
    "bhyve",
];

impl LinuxProbe {
    /// A probe reading the tree under `root`, reporting `user` as the user hostid.
    pub fn with_root(root: impl Into<PathBuf>, user: Option<String>) -> Self {
        LinuxProbe {
            root: root.into(),
            user,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    fn read(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.path(rel))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    fn physical_macs(&self) -> Vec<HostId> {
        let Ok(entries) = fs::read_dir(self.path("sys/class/net")) else {
            return Vec::new();
        };
        let mut ids: Vec<HostId> = entries
            .flatten()
            .filter(|e| e.file_name() != "lo")
            // physical interfaces have a backing device; bridges, veths, tunnels do not
            .filter(|e| e.path().join("device").exists())
            .filter_map(|e| fs::read_to_string(e.path().join("address")).ok())
            .filter(|mac| {
                let m = mac.trim();
                !m.is_empty() && m.chars().any(|c| c != '0' && c != ':')
            })
            .filter_map(|mac| HostId::new(HostIdKind::Ethernet, &mac).ok())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    fn container_id(&self) -> Option<HostId> {
        let looks_like_id = |s: &str| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit());
        let from_text = |text: &str| {
            text.split(|c: char| c == '/' || c == '-' || c == '.' || c == ':' || c.is_whitespace())
                .find(|seg| looks_like_id(seg))
                .map(str::to_string)
        };
        let cgroup = self.read("proc/self/cgroup").and_then(|t| from_text(&t));
        let id = cgroup.or_else(|| {
            self.read("proc/self/mountinfo").and_then(|t| {
                t.lines()
                    .filter(|l| l.contains("/containers/") || l.contains("/docker/"))
                    .find_map(from_text)
            })
        })?;
        HostId::new(HostIdKind::Container, &id).ok()
    }

    fn device_type(&self, container: bool, evidence: &mut Vec<String>) -> DeviceType {
        if container {
            evidence.push("a container id was found in /proc/self/cgroup or mountinfo".into());
            return DeviceType::Container;
        }
        for marker in [".dockerenv", "run/.containerenv"] {
            if self.path(marker).exists() {
                evidence.push(format!("/{marker} exists"));
                return DeviceType::Container;
            }
        }
        let dmi: Vec<String> = ["sys_vendor", "product_name", "board_vendor", "bios_vendor"]
            .iter()
            .filter_map(|f| self.read(&format!("sys/class/dmi/id/{f}")))
            .collect();
        for s in &dmi {
            let lower = s.to_ascii_lowercase();
            if let Some(m) = VM_MARKERS.iter().find(|m| lower.contains(*m)) {
                evidence.push(format!("DMI says '{s}' ({m})"));
                return DeviceType::Virtual;
            }
        }
        if let Some(cpuinfo) = self.read("proc/cpuinfo") {
            let hypervisor = cpuinfo
                .lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "hypervisor"));
            if hypervisor {
                evidence.push("the CPU reports the 'hypervisor' flag".into());
                return DeviceType::Virtual;
            }
            if !dmi.is_empty() {
                evidence.push("no hypervisor flag and no virtual DMI vendor".into());
                return DeviceType::Physical;
            }
        }
        evidence.push("neither DMI nor /proc/cpuinfo could be read".into());
        DeviceType::Unknown
    }
}

impl HostProbe for LinuxProbe {
    fn identify(&self) -> HostIdentity {
        let mut ids = self.physical_macs();
        let machine_id = self
            .read("etc/machine-id")
            .or_else(|| self.read("var/lib/dbus/machine-id"));
        if let Some(id) = machine_id.and_then(|m| HostId::new(HostIdKind::MachineId, &m).ok()) {
            ids.push(id);
        }
        if let Some(id) = self
            .read("sys/class/dmi/id/product_uuid")
            .and_then(|u| HostId::new(HostIdKind::VmUuid, &u).ok())
        {
            ids.push(id);
        }
        let container = self.container_id();
        let mut evidence = Vec::new();
        let device_type = self.device_type(container.is_some(), &mut evidence);
        ids.extend(container);
        if let Some(user) = self
            .user
            .as_deref()
            .and_then(|u| HostId::new(HostIdKind::User, u).ok())
        {
            ids.push(user);
        }
        HostIdentity {
            ids,
            device_type,
            evidence,
        }
    }
}

/// Writes `content` to `path` so that a crash or a full disk leaves either the old file or the new
/// one, never half of one: a temporary file in the same directory (created with `mode` on Unix),
/// synced, then renamed over `path`. Creates the directory if needed.
pub fn write_atomic(path: &std::path::Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = opts.open(&tmp)?;
        // exactly `mode`, whatever the umask (and whatever a leftover temporary file had)
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.write_all(content)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` (and its parents) if needed and makes it private to this user: mode 0700 on
/// Unix, whatever the umask. For data directories and the directories that hold keys.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes an existing file private to this user (mode 0600 on Unix); a missing file is left
/// missing.
pub fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match fs::set_permissions(path, fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The probe for the machine this code runs on.
pub fn this_machine() -> Box<dyn HostProbe> {
    Box::new(LinuxProbe::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn nic(root: &Path, name: &str, mac: &str, physical: bool) {
        write(
            root,
            &format!("sys/class/net/{name}/address"),
            &format!("{mac}\n"),
        );
        if physical {
            fs::create_dir_all(root.join(format!("sys/class/net/{name}/device"))).unwrap();
        }
    }

    #[test]
    fn physical_machine() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        nic(r, "lo", "00:00:00:00:00:00", false);
        nic(r, "eno1", "3C:52:82:11:22:33", true);
        nic(r, "docker0", "02:42:ac:11:00:02", false);
        write(r, "etc/machine-id", "4c4c4544004a3510804ab4c04f4e3232\n");
        write(r, "sys/class/dmi/id/sys_vendor", "Dell Inc.\n");
        write(r, "proc/cpuinfo", "processor : 0\nflags : fpu vme sse2\n");
        write(
            r,
            "proc/self/cgroup",
            "0::/user.slice/user-1000.slice/session-2.scope\n",
        );
        let id = LinuxProbe::with_root(r, Some("alice".into())).identify();
        let shown: Vec<String> = id.ids.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "ethernet=3c5282112233",
                "machine_id=4c4c4544004a3510804ab4c04f4e3232",
                "user=alice"
            ]
        );
        assert_eq!(id.device_type, DeviceType::Physical);
        assert_eq!(id.pc_id_source().unwrap().kind(), HostIdKind::MachineId);
        assert!(id.pc_id("cad").is_some());
    }

    #[test]
    fn virtual_machine_by_dmi_or_cpu_flag() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "sys/class/dmi/id/sys_vendor", "QEMU\n");
        write(
            r,
            "sys/class/dmi/id/product_uuid",
            "564D2F1E-8A2B-4C3D-9E0F-1A2B3C4D5E6F\n",
        );
        let id = LinuxProbe::with_root(r, None).identify();
        assert_eq!(id.device_type, DeviceType::Virtual);
        assert_eq!(
            id.ids[0].to_string(),
            "vm_uuid=564d2f1e-8a2b-4c3d-9e0f-1a2b3c4d5e6f"
        );

        let dir2 = tempfile::tempdir().unwrap();
        write(dir2.path(), "proc/cpuinfo", "flags : fpu hypervisor sse2\n");
        assert_eq!(
            LinuxProbe::with_root(dir2.path(), None)
                .identify()
                .device_type,
            DeviceType::Virtual
        );
    }

    #[test]
    fn container_and_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let cid = "9f3e".repeat(16);
        write(
            dir.path(),
            "proc/self/cgroup",
            &format!("0::/system.slice/docker-{cid}.scope\n"),
        );
        let id = LinuxProbe::with_root(dir.path(), None).identify();
        assert_eq!(id.device_type, DeviceType::Container);
        assert_eq!(
            id.ids,
            vec![HostId::new(HostIdKind::Container, &cid).unwrap()]
        );
        // a container id alone does not make a PC identifier
        assert!(id.pc_id("cad").is_none());

        let empty = tempfile::tempdir().unwrap();
        let id = LinuxProbe::with_root(empty.path(), None).identify();
        assert_eq!(id.device_type, DeviceType::Unknown);
        assert!(id.ids.is_empty());
    }

    #[test]
    fn pc_id_survives_a_nic_change() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "etc/machine-id", "4c4c4544004a3510804ab4c04f4e3232\n");
        nic(r, "eno1", "3c:52:82:11:22:33", true);
        let before = LinuxProbe::with_root(r, None).identify().pc_id("cad");
        nic(r, "eno1", "3c:52:82:99:99:99", true);
        let after = LinuxProbe::with_root(r, None).identify().pc_id("cad");
        assert_eq!(before, after);
    }

    #[test]
    fn system_clock_reads_a_plausible_time() {
        assert!(SystemClock.now().year() >= 2024);
    }
}
