//! The harness's network: one namespace per node, each joined to a bridge by a veth pair,
//! all created here and removed on drop. Clients run in the root namespace, which has an
//! address on the bridge, so they reach every node whatever the partition.
//!
//! Partitions are blackhole routes inside the namespaces (this kernel has no `tc netem` and
//! the machine no nftables): node A stops reaching B when A's namespace routes B's address
//! to a blackhole. Both directions for a symmetric cut, one for a one-way cut.

use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::process::Command;

/// The namespaces, bridge and addresses of one run.
pub struct Net {
    /// Unique per run: bridge `{tag}br`, namespaces `{tag}n{i}`, veths `{tag}v{i}`.
    tag: String,
    /// Third octet of the run's /24 (`10.88.{subnet}.0/24`).
    subnet: u8,
    nodes: usize,
    /// Blackholes in place: (from node, to node).
    cuts: BTreeSet<(usize, usize)>,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| "while running `ip` (Debian package iproute2)".to_string())?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Net {
    /// Creates the bridge and `nodes` namespaces. Needs root (CAP_NET_ADMIN).
    pub fn create(nodes: usize) -> Result<Net> {
        // Unique per process and per network of the process (tests run several in turn).
        static CREATED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        let id = std::process::id();
        let net = Net {
            tag: format!("hj{}{seq}", id % 100_000),
            subnet: ((id + seq * 37) % 200) as u8 + 20,
            nodes,
            cuts: BTreeSet::new(),
        };
        net.remove_leftovers();
        let br = net.bridge();
        ip(&["link", "add", &br, "type", "bridge"])
            .context("creating the bridge (the harness needs root)")?;
        ip(&["link", "set", &br, "up"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.host_addr()),
            "dev",
            &br,
        ])?;
        for i in 0..nodes {
            let ns = net.namespace(i);
            let veth = format!("{}v{i}", net.tag);
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &br])?;
            ip(&["link", "set", &veth, "up"])?;
            ip(&[
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "eth0", "up"])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    pub fn namespace(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    /// Node `i`'s address (0-based).
    pub fn addr(&self, i: usize) -> String {
        format!("10.88.{}.{}", self.subnet, 11 + i)
    }

    /// The root namespace's address on the bridge (where clients connect from).
    pub fn host_addr(&self) -> String {
        format!("10.88.{}.1", self.subnet)
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Cuts traffic from `a` to `b` (a blackhole route in `a`'s namespace).
    pub fn cut_one_way(&mut self, a: usize, b: usize) -> Result<()> {
        if a == b || !self.cuts.insert((a, b)) {
            return Ok(());
        }
        self.blackhole("add", a, b)
    }

    /// Adds or deletes (`op`) the blackhole route to `b` in `a`'s namespace.
    fn blackhole(&self, op: &str, a: usize, b: usize) -> Result<()> {
        let target = format!("{}/32", self.addr(b));
        let ns = self.namespace(a);
        ip(&[
            "netns",
            "exec",
            &ns,
            "ip",
            "route",
            op,
            "blackhole",
            &target,
        ])
    }

    /// Cuts every link between the groups (each group can still talk inside itself).
    pub fn partition(&mut self, groups: &[Vec<usize>]) -> Result<()> {
        for (gi, g) in groups.iter().enumerate() {
            for (hi, h) in groups.iter().enumerate() {
                if gi == hi {
                    continue;
                }
                for &a in g {
                    for &b in h {
                        self.cut_one_way(a, b)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes every cut.
    pub fn heal(&mut self) -> Result<()> {
        for (a, b) in std::mem::take(&mut self.cuts) {
            self.blackhole("del", a, b)?;
        }
        Ok(())
    }

    fn remove_leftovers(&self) {
        for i in 0..self.nodes {
            let _ = ip(&["netns", "del", &self.namespace(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and with it the other end.
        self.remove_leftovers();
    }
}
