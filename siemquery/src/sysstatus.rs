//! The state of the machine that makes the report, as systraq's daily mail
//! showed it: file systems with their use and free space (`statvfs` of
//! each mount in `/proc/self/mounts`), network interfaces with their
//! counters and errors (`/proc/net/dev`), load averages (`/proc/loadavg`)
//! and uptime (`/proc/uptime`). Read at report time; nothing here touches
//! the database. What cannot be read is listed in `problems`.

use std::collections::HashSet;

/// One mounted file system.
#[derive(Debug, Clone, PartialEq)]
pub struct FsUse {
    pub mount: String,
    pub device: String,
    pub fstype: String,
    pub size: u64,
    pub used: u64,
    /// Free space for unprivileged users (as `df` shows it).
    pub avail: u64,
    /// Used as a share of what non-root can use, rounded up (as `df`).
    pub use_pct: u32,
    pub inodes_used_pct: Option<u32>,
}

/// One network interface's counters since boot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Iface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    pub rx_drop: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    pub tx_drop: u64,
}

/// What the status section shows.
#[derive(Debug, Default)]
pub struct SysStatus {
    pub filesystems: Vec<FsUse>,
    pub interfaces: Vec<Iface>,
    /// 1, 5 and 15 minute load averages.
    pub load: Option<[f64; 3]>,
    pub uptime_secs: Option<u64>,
    pub problems: Vec<String>,
}

/// File system types that hold no data of their own (kernel views,
/// cgroups, ...): not listed.
const VIRTUAL: [&str; 22] = [
    "proc",
    "sysfs",
    "devpts",
    "devtmpfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "pstore",
    "debugfs",
    "tracefs",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "bpf",
    "autofs",
    "binfmt_misc",
    "rpc_pipefs",
    "nsfs",
    "efivarfs",
    "ramfs",
    "selinuxfs",
];

/// Reads the status of this machine.
pub fn read() -> SysStatus {
    let mut s = SysStatus::default();
    match std::fs::read_to_string("/proc/self/mounts") {
        Ok(t) => s.filesystems = filesystems(&t, &mut s.problems),
        Err(e) => s.problems.push(format!("/proc/self/mounts: {e}")),
    }
    match std::fs::read_to_string("/proc/net/dev") {
        Ok(t) => s.interfaces = parse_net_dev(&t),
        Err(e) => s.problems.push(format!("/proc/net/dev: {e}")),
    }
    s.load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| parse_loadavg(&t));
    s.uptime_secs = std::fs::read_to_string("/proc/uptime").ok().and_then(|t| {
        t.split_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
            .map(|u| u as u64)
    });
    s
}

/// `/proc/self/mounts` fields are octal-escaped (`\040` for a blank).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The real file systems of a mount table, each device once (bind mounts
/// and the same file system mounted twice are one line), with `statvfs`.
fn filesystems(mounts: &str, problems: &mut Vec<String>) -> Vec<FsUse> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || VIRTUAL.contains(&f[2]) {
            continue;
        }
        let (device, mount, fstype) = (unescape_mount(f[0]), unescape_mount(f[1]), f[2]);
        if fstype == "tmpfs" && !(mount == "/tmp" || mount == "/dev/shm" || mount == "/run") {
            continue;
        }
        let v = match rustix::fs::statvfs(mount.as_str()) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("statvfs {mount}: {e}"));
                continue;
            }
        };
        if v.f_blocks == 0 || !seen.insert((device.clone(), v.f_fsid)) {
            continue;
        }
        let unit = v.f_frsize.max(1);
        let size = v.f_blocks.saturating_mul(unit);
        let used = v.f_blocks.saturating_sub(v.f_bfree).saturating_mul(unit);
        let avail = v.f_bavail.saturating_mul(unit);
        let usable = used + avail;
        let use_pct = if usable == 0 {
            0
        } else {
            (used.saturating_mul(100).div_ceil(usable)) as u32
        };
        let inodes_used_pct = (v.f_files > 0).then(|| {
            (v.f_files
                .saturating_sub(v.f_ffree)
                .saturating_mul(100)
                .div_ceil(v.f_files)) as u32
        });
        out.push(FsUse {
            mount,
            device,
            fstype: fstype.to_owned(),
            size,
            used,
            avail,
            use_pct,
            inodes_used_pct,
        });
    }
    out
}

/// `/proc/net/dev`: two header lines, then `name: rx(8 fields) tx(8 fields)`.
pub fn parse_net_dev(text: &str) -> Vec<Iface> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let n: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            if n.len() < 12 {
                return None;
            }
            Some(Iface {
                name: name.trim().to_owned(),
                rx_bytes: n[0],
                rx_packets: n[1],
                rx_errs: n[2],
                rx_drop: n[3],
                tx_bytes: n[8],
                tx_packets: n[9],
                tx_errs: n[10],
                tx_drop: n[11],
            })
        })
        .collect()
}

/// The three load averages of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

pub use siemstress_common::display::human_bytes;

/// `3 d 4 h 5 min`.
pub fn human_uptime(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files() {
        let dev = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n  eth0: 5000 50 2 3 0 0 0 0 7000 70 4 5 0 0 0 0\n";
        let i = parse_net_dev(dev);
        assert_eq!(i.len(), 2);
        assert_eq!(
            (
                i[1].name.as_str(),
                i[1].rx_errs,
                i[1].rx_drop,
                i[1].tx_bytes,
                i[1].tx_errs
            ),
            ("eth0", 2, 3, 7000, 4)
        );
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/467 12345\n"),
            Some([0.52, 0.58, 0.59])
        );
        assert_eq!(unescape_mount("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(human_bytes(123_456_789), "117.7 MiB");
        assert_eq!(
            human_uptime(3 * 86_400 + 4 * 3_600 + 5 * 60),
            "3 d 4 h 5 min"
        );
        // This machine's own root file system is listed with its use.
        let s = read();
        assert!(s.filesystems.iter().any(|f| f.size > 0), "{s:?}");
        assert!(s.load.is_some() && s.uptime_secs.is_some());
    }
}
