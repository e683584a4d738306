//! The private network (`--network private`, the default): a network
//! namespace of the container's own, connected to the outside by pasta
//! (Debian's passt package), the user-mode network rootless podman uses.
//! The namespace gets the host's addresses and routes, so outbound
//! connections work as from the host, but nothing of the host's own is
//! reachable: pasta is told to forward no port in either direction
//! (`-t none -u none -T none -U none`) and not to map the gateway to the
//! host's loopback (`--no-map-gw`).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ExecError;

/// Where a nameserver on the host's loopback is reached from the container:
/// pasta forwards DNS sent there to the host's resolver.
const DNS_FORWARD: &str = "169.254.1.1";

/// A port of the host forwarded into the container (`-p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// The host address it is bound to (`None`: every address).
    pub host_ip: Option<std::net::IpAddr>,
    /// The host port.
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub udp: bool,
}

impl std::fmt::Display for PortMapping {
    /// Docker's `port` line: `4444/tcp -> 0.0.0.0:32768`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = if self.udp { "udp" } else { "tcp" };
        let ip = self.host_ip.map_or("0.0.0.0".to_owned(), |i| i.to_string());
        write!(f, "{}/{proto} -> {ip}:{}", self.container_port, self.host_port)
    }
}

impl PortMapping {
    /// Parses Docker's `-p [IP:][HOSTPORT:]CPORT[/tcp|/udp]`; a missing host
    /// port is a free one, chosen now.
    pub fn parse(s: &str) -> Result<PortMapping, ExecError> {
        let bad = |m: &str| ExecError::Option { option: format!("-p {s}"), message: m.into() };
        let (spec, udp) = match s.rsplit_once('/') {
            Some((p, "tcp")) => (p, false),
            Some((p, "udp")) => (p, true),
            Some(_) => return Err(bad("the protocol is tcp or udp")),
            None => (s, false),
        };
        // An IPv6 address is written in brackets: [::1]:8080:80.
        let (ip, rest) = match spec.strip_prefix('[') {
            Some(r) => {
                let (ip, rest) = r.split_once("]:").ok_or_else(|| bad("expected [IPv6]:HOSTPORT:PORT"))?;
                (Some(ip), rest)
            }
            None => match spec.matches(':').count() {
                2 => {
                    let (ip, rest) = spec.split_once(':').expect("two colons");
                    (Some(ip), rest)
                }
                _ => (None, spec),
            },
        };
        let host_ip = match ip.filter(|i| !i.is_empty()) {
            Some(i) => Some(i.parse::<std::net::IpAddr>().map_err(|_| bad(&format!("{i} is not an IP address")))?),
            None => None,
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
        let (host, container) = match rest.split_once(':') {
            Some((h, c)) => (if h.is_empty() { None } else { Some(port(h).ok_or_else(|| bad("bad host port"))?) }, c),
            None => (None, rest),
        };
        let container_port = port(container).ok_or_else(|| bad("expected [IP:][HOSTPORT:]PORT[/tcp|/udp]"))?;
        let bind_ip = host_ip.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        // The host port must be free now (pasta binds it when the container
        // starts); a missing one is picked by the kernel, as Docker does.
        let host_port = if udp {
            std::net::UdpSocket::bind((bind_ip, host.unwrap_or(0))).and_then(|s| s.local_addr())
        } else {
            std::net::TcpListener::bind((bind_ip, host.unwrap_or(0))).and_then(|s| s.local_addr())
        }
        .map_err(|e| bad(&format!("port {} on {bind_ip} is not available: {e}", host.unwrap_or(0))))?
        .port();
        Ok(PortMapping { host_ip, host_port, container_port, udp })
    }

    /// pasta's forwarding spec: `[ADDR/]HOSTPORT:PORT`.
    fn pasta_spec(&self) -> String {
        match self.host_ip {
            Some(ip) => format!("{ip}/{}:{}", self.host_port, self.container_port),
            None => format!("{}:{}", self.host_port, self.container_port),
        }
    }
}

/// A network namespace with pasta attached; pasta is stopped on drop.
#[derive(Debug)]
pub struct PrivateNetwork {
    netns: OwnedFd,
    /// Rootless: the user namespace that owns `netns`, which the
    /// container joins too.
    userns: Option<OwnedFd>,
    pasta: Option<i32>,
    /// Host ports are forwarded: they are free again only once pasta is gone.
    forwards: bool,
    host_resolv: String,
    forward_dns: bool,
    _dir: tempfile::TempDir,
}

fn net_err(message: impl Into<String>, source: Option<std::io::Error>) -> ExecError {
    ExecError::Network { message: message.into(), source }
}

/// Where helper programs (pasta, crun, runc, newuidmap...) are looked for:
/// what the program that uses this library gave [`set_program_search_path`]
/// (a command line passes its `PATH`), else the standard directories.
static SEARCH_PATH: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();

/// The standard directories searched when no search path was given.
const STANDARD_DIRS: &[&str] = &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// Sets the directories helper programs are looked for in, in order (a
/// command line passes its `PATH`); the first call wins. Without it, the
/// standard directories are searched.
pub fn set_program_search_path(dirs: Vec<PathBuf>) {
    let _ = SEARCH_PATH.set(dirs);
}

/// `program` in the search path (or the path itself when it has a slash).
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    match SEARCH_PATH.get() {
        Some(dirs) => dirs.iter().map(|d| d.join(program)).find(|p| p.is_file()),
        None => STANDARD_DIRS.iter().map(|d| Path::new(d).join(program)).find(|p| p.is_file()),
    }
}

/// Rootless: whether this user may open `/dev/net/tun`, which pasta needs
/// to make the container's interface (Debian's udev makes it `0666`).
fn tun_usable() -> Result<(), ExecError> {
    use nix::unistd::{AccessFlags, access};
    let tun = Path::new(TUN_DEVICE);
    access(tun, AccessFlags::R_OK | AccessFlags::W_OK).map_err(|e| {
        let mode = std::fs::metadata(tun)
            .map(|m| format!(" (mode {:04o})", std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777))
            .unwrap_or_default();
        net_err(
            format!(
                "{TUN_DEVICE}{mode} cannot be opened by this user ({e}): a rootless network needs it readable and \
                 writable by all users, as Debian's udev makes it (chmod 0666 {TUN_DEVICE})"
            ),
            None,
        )
    })
}

/// The tun/tap device pasta opens.
const TUN_DEVICE: &str = "/dev/net/tun";

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

impl PrivateNetwork {
    /// Makes the namespace and starts pasta for it, forwarding `ports`
    /// from the host into it.
    pub fn start(ports: &[PortMapping]) -> Result<PrivateNetwork, ExecError> {
        Self::start_in(ports, None)
    }

    /// [`PrivateNetwork::start`], pasta's files (the namespace file it
    /// watches: pasta quits when it is deleted) in a directory made in
    /// `dir` (`None`: the temporary directory).
    pub fn start_in(ports: &[PortMapping], dir: Option<&Path>) -> Result<PrivateNetwork, ExecError> {
        let pasta = find_program("pasta")
            .ok_or_else(|| net_err("pasta is not installed (Debian's passt package provides it)", None))?;
        let (netns, userns) = if cargohold_layerfs::rootless::in_user_namespace() {
            // pasta opens the tun device as this user; refused, it only
            // says it could not open "tun socket in namespace".
            tun_usable()?;
            let (user, net) = crate::ns::user_and_network_namespaces()
                .map_err(|e| net_err("could not create a network namespace", Some(e)))?;
            (net, Some(user))
        } else {
            let net = std::thread::scope(|s| {
                s.spawn(|| -> std::io::Result<OwnedFd> {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
                    Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
                })
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
            })
            .map_err(|e| net_err("could not create a network namespace", Some(e)))?;
            (net, None)
        };
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let forward_dns =
            host_resolv.lines().filter_map(|l| l.trim().strip_prefix("nameserver")).any(|a| is_loopback(a.trim()));
        // pasta's pid file, log and the namespace files it is given; pasta
        // also quits by itself when they are deleted.
        let made = match dir {
            Some(d) => tempfile::Builder::new().prefix("net-").tempdir_in(d),
            None => tempfile::Builder::new().prefix("cargohold-net-").tempdir(),
        };
        let dir = made.map_err(|e| net_err("could not create a directory for pasta", Some(e)))?;
        let scratch = dir.path().to_path_buf();
        let forwards = !ports.is_empty();
        let mut net = PrivateNetwork { netns, userns, pasta: None, forwards, host_resolv, forward_dns, _dir: dir };
        let pid_file = scratch.join("pasta.pid");
        let log = scratch.join("pasta.log");
        let ns_file = scratch.join("netns");
        let user_file = scratch.join("userns");
        let forward = net.forward_dns;
        let (netns, userns) = (&net.netns, &net.userns);
        // pasta opens the namespace by path, and cannot open another
        // process' /proc/PID/ns files: the namespace is bound to a file in
        // a private mount namespace that only pasta (started from there)
        // sees; nothing stays mounted on the host.
        let status = crate::mounts::in_private_mounts(|| -> Result<std::process::ExitStatus, ExecError> {
            crate::mounts::bind_fd(netns.as_fd(), &ns_file)
                .map_err(|e| net_err("could not bind the network namespace for pasta", Some(e)))?;
            let mut cmd = Command::new(&pasta);
            let (tcp, udp): (Vec<_>, Vec<_>) = ports.iter().partition(|p| !p.udp);
            let list = |ps: &[&PortMapping]| {
                if ps.is_empty() {
                    "none".to_owned()
                } else {
                    ps.iter().map(|p| p.pasta_spec()).collect::<Vec<_>>().join(",")
                }
            };
            cmd.args(["--config-net", "--no-map-gw", "-t", &list(&tcp), "-u", &list(&udp), "-T", "none", "-U", "none"])
                .args(["--runas", "0", "-q", "--netns"])
                .arg(&ns_file);
            if let Some(user) = userns {
                // Rootless: pasta would otherwise isolate itself in a user
                // namespace of its own, without power over ours.
                crate::mounts::bind_fd(user.as_fd(), &user_file)
                    .map_err(|e| net_err("could not bind the user namespace for pasta", Some(e)))?;
                cmd.arg("--userns").arg(&user_file);
            }
            cmd.arg("--pid").arg(&pid_file).arg("--log-file").arg(&log);
            if forward {
                cmd.args(["--dns-forward", DNS_FORWARD]);
            }
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            cmd.status().map_err(|e| net_err(format!("could not start {}", pasta.display()), Some(e)))
        })
        .map_err(|e| net_err(e, None))??;
        if let Ok(pid) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            net.pasta = Some(pid);
        }
        if !status.success() || net.pasta.is_none() {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            let said = said.lines().filter(|l| !l.contains("syslog")).collect::<Vec<_>>().join("; ");
            return Err(net_err(format!("pasta failed ({status}): {}", said.trim()), None));
        }
        Ok(net)
    }

    /// The namespace, to join with setns.
    pub fn fd(&self) -> &OwnedFd {
        &self.netns
    }

    /// Rootless: the user namespace owning the network namespace, to join
    /// first.
    pub fn user_fd(&self) -> Option<&OwnedFd> {
        self.userns.as_ref()
    }

    /// The container's `/etc/resolv.conf`: the host's, with nameservers on
    /// the host's loopback replaced by pasta's DNS forwarder.
    pub fn resolv_conf(&self) -> String {
        let mut out = String::new();
        for line in self.host_resolv.lines() {
            match line.trim().strip_prefix("nameserver") {
                Some(addr) if is_loopback(addr.trim()) => {
                    if !out.contains(DNS_FORWARD) {
                        out.push_str(&format!("nameserver {DNS_FORWARD}\n"));
                    }
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Private networks kept for the next run of an executor: starting pasta
/// takes longer than the rest of a container, and a container without
/// `CAP_NET_ADMIN` cannot change its network namespace, so the next one
/// finds it as new (its sockets closed with its processes). BuildKit keeps
/// a pool of network namespaces for the same reason.
#[derive(Debug, Default)]
pub struct NetworkPool {
    free: std::sync::Mutex<Vec<PrivateNetwork>>,
}

impl NetworkPool {
    /// A network for a run: a kept one, else a new one.
    pub fn take(&self) -> Result<PrivateNetwork, ExecError> {
        let kept = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match kept {
            Some(n) => Ok(n),
            None => PrivateNetwork::start(&[]),
        }
    }

    /// Keeps `net` for the next run, unless the run that had it could
    /// change it (`CAP_NET_ADMIN`, `--privileged`).
    pub fn give_back(&self, net: PrivateNetwork, could_change: bool) {
        if !could_change {
            self.free.lock().unwrap_or_else(|e| e.into_inner()).push(net);
        }
    }
}

/// Whether process `pid` is gone or a zombie (exited, not yet reaped).
fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which may hold ')'.
        Ok(stat) => stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).is_none_or(|s| s == "Z"),
        Err(_) => true,
    }
}

impl Drop for PrivateNetwork {
    fn drop(&mut self) {
        if let Some(pid) = self.pasta {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
            // Published ports are free again when the container is gone, as
            // with Docker: wait (briefly) for pasta to close them. pasta is
            // a daemon, reaped by whoever is pid 1, maybe late: a zombie has
            // closed everything already. Without ports nothing waits on it
            // (pasta takes 25-40 ms to exit).
            for _ in 0..if self.forwards { 200 } else { 0 } {
                if exited(pid) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    }
}
