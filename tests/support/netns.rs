//! A test host of our own: a network namespace joined to this one by a veth pair, with addresses in a
//! range used only inside it (10.213.N.0/24). `cut()` is `ip link set down` on our side of the pair.
//! Everything is deleted on drop. Needs root and iproute2.

use std::process::Command;

pub struct NetNs {
    pub name: String,
    host_if: String,
    /// Our side's address, reachable from inside the namespace.
    pub host_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl NetNs {
    /// Whether namespaces can be made here (root with iproute2).
    pub fn available() -> bool {
        (unsafe { libc::geteuid() }) == 0 && Command::new("ip").arg("-V").output().is_ok()
    }

    /// Namespace number `n` (0..=255) of this test process.
    pub fn create(n: u8) -> Result<NetNs, String> {
        let tag = std::process::id() % 100_000;
        let name = format!("se-{tag}-{n}");
        let host_if = format!("seh{tag}x{n}");
        let ns_if = format!("sen{tag}x{n}");
        let host_ip = format!("10.213.{n}.1");
        let ns = NetNs {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
        };
        ip(&["netns", "add", &name])?;
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &name])?;
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("10.213.{n}.2/24"),
            "dev",
            &ns_if,
        ])?;
        ip(&["-n", &name, "link", "set", &ns_if, "up"])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Cuts the namespace off: our side of the veth pair goes down.
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]).expect("link down");
    }

    pub fn heal(&self) {
        ip(&["link", "set", &self.host_if, "up"]).expect("link up");
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
