//! Runs a command in a root filesystem directory with the default
//! confinement (namespaces, Docker's capabilities, seccomp, masked paths, no
//! network), and exits with its exit code.
//!
//! ```sh
//! cargo run -p cargohold-runtime --example run_rootfs -- /srv/rootfs /bin/sh -c id
//! ```

use cargohold_runtime::{Executor, Namespaces, Network, ProcessIo, RootFs, RunSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(root) = args.next() else {
        return Err("usage: run_rootfs ROOTFS-DIR COMMAND [ARG...]".into());
    };
    let argv: Vec<String> = args.collect();
    if argv.is_empty() {
        return Err("usage: run_rootfs ROOTFS-DIR COMMAND [ARG...]".into());
    }
    let spec = RunSpec {
        root: RootFs::Dir(root.into()),
        argv,
        env: vec![cargohold_runtime::DEFAULT_PATH.into()],
        cwd: "/".into(),
        user: Default::default(),
        hostname: "example".into(),
        network: Network::None,
        binds: vec![],
        ports: vec![],
        tmpfs: vec![],
        dns: vec![],
        extra_hosts: vec![],
        limits: Default::default(),
        tty: false,
        security: Default::default(),
        init: None,
        systemd: false,
        state_dir: None,
    };
    let code = Namespaces::new().run(&spec, ProcessIo::inherit())?;
    std::process::exit(code);
}
