//! Network namespaces: one per replica, joined by a bridge in the root namespace, so that a
//! partition is a real network fault (a blackhole route drops the packets; connections hang and
//! time out exactly as on a cut cable) rather than a process-level simulation.
//!
//! Layout for run tag `T` (unique per harness process and run):
//! - bridge `rjb<T>` in the root namespace with address `10.A.B.254/24`;
//! - namespace `raftsched-jepsen-<pid>-<T>-<i>` per replica, its `eth0` (a veth whose other end
//!   `rjv<T><i>` is on the bridge) at `10.A.B.(10+i)`.
//!
//! Clients and workers stay in the root namespace and reach every replica over the bridge; the
//! nemesis cuts only replica-to-replica links. [`Netns::drop`] deletes everything; namespaces
//! left by a harness that was killed are deleted by the next run ([`clean_stale`]).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

const NS_PREFIX: &str = "raftsched-jepsen-";

/// Whether this process can create namespaces: root and an `ip` that runs.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(_) => Err("`ip -V` failed".into()),
        Err(e) => Err(format!("cannot run `ip` (iproute2): {e}")),
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Deletes namespaces (and their bridges) left behind by harness processes that no longer run.
pub fn clean_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else { continue };
        let mut parts = rest.split('-');
        let (Some(pid), Some(tag)) = (parts.next().and_then(|p| p.parse::<i32>().ok()), parts.next()) else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = ip(&["netns", "del", name]);
            let _ = ip(&["link", "del", &format!("rjb{tag}")]);
        }
    }
}

/// The namespaces of one run.
pub struct Netns {
    tag: String,
    names: Vec<String>,
    addrs: Vec<Ipv4Addr>,
    bridge: String,
    /// Links currently cut, as (lower, higher) node indexes.
    cut: Mutex<BTreeSet<(usize, usize)>>,
}

static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates `n` namespaces and the bridge. On error everything created so far is removed.
    pub fn create(n: usize) -> Result<Netns, String> {
        assert!((1..=20).contains(&n));
        let pid = std::process::id();
        let counter = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        // Six hex digits keep interface names within Linux's 15 characters.
        let short = (crate::check::splitmix64(u64::from(pid) << 16 | u64::from(counter)) & 0xff_ffff) as u32;
        let tag = format!("{short:06x}");
        let (a, b) = (200 + ((short >> 8) % 50) as u8, (short & 0xff) as u8);
        let mut ns = Netns {
            names: (0..n).map(|i| format!("{NS_PREFIX}{pid}-{tag}-{i}")).collect(),
            addrs: (0..n).map(|i| Ipv4Addr::new(10, a, b, 10 + i as u8)).collect(),
            bridge: format!("rjb{tag}"),
            tag,
            cut: Mutex::new(BTreeSet::new()),
        };
        // Drop cleans up whatever part was created if a step fails.
        if let Err(e) = ns.setup() {
            ns.teardown();
            return Err(e);
        }
        Ok(ns)
    }

    fn setup(&mut self) -> Result<(), String> {
        let bridge_ip = {
            let o = self.addrs[0].octets();
            format!("{}.{}.{}.254/24", o[0], o[1], o[2])
        };
        ip(&["link", "add", &self.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &bridge_ip, "dev", &self.bridge])?;
        ip(&["link", "set", &self.bridge, "up"])?;
        for (i, name) in self.names.iter().enumerate() {
            let host_end = format!("rjv{}{i}", self.tag);
            ip(&["netns", "add", name])?;
            ip(&["link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", name])?;
            ip(&["link", "set", &host_end, "master", &self.bridge])?;
            ip(&["link", "set", &host_end, "up"])?;
            ip(&["-n", name, "addr", "add", &format!("{}/24", self.addrs[i]), "dev", "eth0"])?;
            ip(&["-n", name, "link", "set", "eth0", "up"])?;
            ip(&["-n", name, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    pub fn addr(&self, i: usize) -> Ipv4Addr {
        self.addrs[i]
    }

    /// Cuts the link between nodes `i` and `j` in both directions.
    pub fn cut(&self, i: usize, j: usize) -> Result<(), String> {
        assert_ne!(i, j);
        let link = (i.min(j), i.max(j));
        let mut cut = self.cut.lock().unwrap_or_else(|p| p.into_inner());
        if cut.contains(&link) {
            return Ok(());
        }
        ip(&["-n", &self.names[i], "route", "add", "blackhole", &format!("{}/32", self.addrs[j])])?;
        ip(&["-n", &self.names[j], "route", "add", "blackhole", &format!("{}/32", self.addrs[i])])?;
        cut.insert(link);
        Ok(())
    }

    /// Restores every cut link.
    pub fn heal(&self) -> Result<(), String> {
        let mut cut = self.cut.lock().unwrap_or_else(|p| p.into_inner());
        let mut first_error = None;
        for &(i, j) in cut.iter() {
            for (from, to) in [(i, j), (j, i)] {
                if let Err(e) =
                    ip(&["-n", &self.names[from], "route", "del", "blackhole", &format!("{}/32", self.addrs[to])])
                {
                    first_error.get_or_insert(e);
                }
            }
        }
        cut.clear();
        first_error.map_or(Ok(()), Err)
    }

    fn teardown(&self) {
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.teardown();
    }
}
