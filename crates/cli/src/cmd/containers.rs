//! `ps`, `logs`, `stop`, `kill`, `rm`, `wait`, and the monitor `run -d` starts.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cargohold_builder::build::executor_for;
use std::process::Stdio;

use cargohold_builder::exec::{Container, ContainerStatus, LogOptions, ProcessIo, with_terminal};
use cargohold_builder::run::{ExecOptions, containers, exec_in_container, remove_container, volumes, volumes_in_use};
use serde_json::json;

use super::Ctx;
use crate::cli::{
    ContainersArgs, CpArgs, ExecArgs, KillArgs, LogsArgs, MonitorArgs, PortArgs, PsArgs, RmArgs, StartArgs, StopArgs,
    VolumeCommand,
};
use crate::output;

/// A signal by name (`TERM`, `SIGTERM`) or number.
pub fn parse_signal(s: &str) -> Result<i32> {
    cargohold_runtime::parse_signal(s).map_err(anyhow::Error::msg)
}

/// Each named container, or the first error naming the one not found.
fn each(ctx: &Ctx, names: &[String], mut f: impl FnMut(&Container) -> Result<()>) -> Result<()> {
    let cs = containers(&ctx.store()?);
    for n in names {
        let c = cs.find(n)?;
        f(&c).with_context(|| format!("container {n}"))?;
    }
    Ok(())
}

fn status_text(c: &Container) -> Result<String> {
    let st = c.state()?;
    Ok(match st.status {
        ContainerStatus::Exited => format!("Exited ({})", st.exit_code.unwrap_or(-1)),
        ContainerStatus::Running => "Up".into(),
        ContainerStatus::Created => "Created".into(),
        ContainerStatus::Dead => "Dead (its monitor died)".into(),
    })
}

pub fn ps(ctx: &Ctx, args: &PsArgs) -> Result<()> {
    let mut rows = Vec::new();
    'next: for c in containers(&ctx.store()?).list()? {
        let st = c.state()?;
        if !args.all && st.status != ContainerStatus::Running {
            continue;
        }
        for f in &args.filters {
            let (k, v) = f.split_once('=').with_context(|| format!("--filter {f}: expected KEY=VALUE"))?;
            let hit = match k {
                "status" => st.status.to_string() == v,
                "name" => c.config.name.contains(v),
                "id" => c.config.id.starts_with(v),
                "ancestor" => c.config.image == v || c.config.image_digest == v,
                _ => bail!("--filter {f}: unknown key {k} (status, name, id, ancestor)"),
            };
            if !hit {
                continue 'next;
            }
        }
        rows.push((c, st));
    }
    if args.out.json || args.format.is_some() {
        let list: Vec<_> = rows
            .iter()
            .map(|(c, st)| {
                json!({ "Id": c.config.id, "Names": [c.config.name], "Image": c.config.image,
                        "ImageID": c.config.image_digest, "Command": c.config.spec.argv, "Created": c.config.created,
                        "State": st.status, "ExitCode": st.exit_code, "StartedAt": st.started, "FinishedAt": st.finished,
                        "Pid": st.pid, "Error": st.error,
                        "Ports": c.config.spec.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>() })
            })
            .collect();
        return match &args.format {
            Some(t) => output::templated(t, &list),
            None => output::json(&list),
        };
    }
    if args.quiet {
        for (c, _) in &rows {
            output::line(&c.config.id[..12])?;
        }
        return Ok(());
    }
    output::line(format!(
        "{:<12}  {:<28}  {:<24}  {:<22}  {:<28}  NAMES",
        "CONTAINER ID", "IMAGE", "COMMAND", "STATUS", "PORTS"
    ))?;
    for (c, _) in &rows {
        let mut cmd = c.config.spec.argv.join(" ");
        if cmd.chars().count() > 22 {
            cmd = format!("{}…", cmd.chars().take(21).collect::<String>());
        }
        // Docker's form: 127.0.0.1:8080->80/tcp.
        let ports: Vec<String> = c
            .config
            .spec
            .ports
            .iter()
            .map(|p| {
                let ip = p.host_ip.map_or("0.0.0.0".to_owned(), |i| i.to_string());
                format!("{ip}:{}->{}/{}", p.host_port, p.container_port, if p.udp { "udp" } else { "tcp" })
            })
            .collect();
        output::line(format!(
            "{:<12}  {:<28}  {:<24}  {:<22}  {:<28}  {}",
            &c.config.id[..12],
            c.config.image,
            format!("\"{cmd}\""),
            status_text(c)?,
            ports.join(", "),
            c.config.name
        ))?;
    }
    Ok(())
}

pub fn logs(ctx: &Ctx, args: &LogsArgs) -> Result<()> {
    let c = containers(&ctx.store()?).find(&args.container)?;
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<usize>().with_context(|| format!("--tail {n}: not a number"))?),
    };
    let opts = LogOptions { follow: args.follow, tail, since: args.since.clone() };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let mut failed = None;
    c.logs(&opts, |l| {
        let w: &mut dyn Write = if l.stream == "stderr" { &mut err } else { &mut out };
        let r = if args.timestamps { write!(w, "{} {}", l.time, l.log) } else { w.write_all(l.log.as_bytes()) };
        if let Err(e) = r.and_then(|()| if args.follow { w.flush() } else { Ok(()) }) {
            failed.get_or_insert(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(super::closed_output(anyhow::Error::new(e).context("could not write the logs"), true));
    }
    Ok(())
}

pub fn exec(ctx: &Ctx, args: &ExecArgs) -> Result<ExitCode> {
    let store = ctx.store()?;
    let c = containers(&store).find(&args.container)?;
    let opts = ExecOptions {
        argv: args.command.strip_prefix(&["--".to_owned()]).unwrap_or(&args.command).to_vec(),
        env: args.env.clone(),
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        tty: args.tty,
    };
    let code = if args.tty {
        with_terminal(|io| exec_in_container(&store, &c, &opts, io)).context("could not open a terminal")?
    } else {
        let stdin = if args.interactive { Stdio::inherit() } else { Stdio::null() };
        exec_in_container(&store, &c, &opts, ProcessIo { stdin, stdout: Stdio::inherit(), stderr: Stdio::inherit() })
    }
    .with_context(|| format!("could not run {} in {}", opts.argv[0], args.container))?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

pub fn stop(ctx: &Ctx, args: &StopArgs) -> Result<()> {
    each(ctx, &args.containers, |c| {
        c.stop(args.time)?;
        output::line(&c.config.name)
    })
}

pub fn kill(ctx: &Ctx, args: &KillArgs) -> Result<()> {
    let sig = parse_signal(&args.signal).with_context(|| format!("--signal {}", args.signal))?;
    each(ctx, &args.containers, |c| {
        if sig == nix::sys::signal::Signal::SIGKILL as i32 {
            // Killed by its user: the restart policy leaves it stopped.
            c.mark_stopped()?;
        }
        c.signal(sig)?;
        output::line(&c.config.name)
    })
}

pub fn rm(ctx: &Ctx, args: &RmArgs) -> Result<()> {
    let store = ctx.store()?;
    each(ctx, &args.containers, |c| {
        remove_container(&store, c, args.force, args.volumes)?;
        output::line(&c.config.name)
    })
}

pub fn port(ctx: &Ctx, args: &PortArgs) -> Result<()> {
    let c = containers(&ctx.store()?).find(&args.container)?;
    let want = match args.port.as_deref() {
        None => None,
        Some(p) => {
            let (n, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let n: u16 = n.parse().with_context(|| format!("{p}: not a port"))?;
            Some((n, proto == "udp"))
        }
    };
    let ports: Vec<_> = c
        .config
        .spec
        .ports
        .iter()
        .filter(|m| want.is_none_or(|(n, udp)| m.container_port == n && m.udp == udp))
        .collect();
    if ports.is_empty() {
        match &args.port {
            Some(p) => bail!("no public port {p} published for {}", c.config.name),
            None => return Ok(()),
        }
    }
    for m in ports {
        if want.is_some() {
            let ip = m.host_ip.map_or("0.0.0.0".to_owned(), |i| i.to_string());
            output::line(format!("{ip}:{}", m.host_port))?;
        } else {
            output::line(m.to_string())?;
        }
    }
    Ok(())
}

pub fn wait(ctx: &Ctx, args: &ContainersArgs) -> Result<()> {
    each(ctx, &args.containers, |c| {
        let st = c.wait(None)?;
        output::line(st.exit_code.map_or("-1".into(), |c| c.to_string()))
    })
}

/// Starts the monitor of `c` in a process of its own (outliving this one)
/// and returns once the container runs (or ended already).
pub fn start_monitor(ctx: &Ctx, c: &Container) -> Result<()> {
    if c.state()?.status == ContainerStatus::Running {
        bail!("container {} is already running", c.config.name);
    }
    let exe = std::env::current_exe().context("could not find this program to start the container's monitor")?;
    let before = c.state()?.started;
    std::process::Command::new(exe)
        .arg("--store")
        .arg(ctx.store_dir())
        .args(["container-monitor", c.id()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("could not start the container's monitor")?;
    // Once the monitor has it running (or it ended already), `ps` and
    // `logs` see it as the user expects.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let st = match c.state() {
            Ok(st) => st,
            // --rm, and it ended: its record goes first (config.json), then
            // the rest, so a state read mid-removal fails too.
            Err(_) if !c.dir.join("config.json").exists() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let begun = st.started != before && (st.pid.is_some() || st.status != ContainerStatus::Running);
        if let (true, Some(e)) = (begun, &st.error) {
            bail!("container {} could not start: {e}", c.config.name);
        }
        if begun || std::time::Instant::now() > deadline {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

pub fn start(ctx: &Ctx, args: &StartArgs) -> Result<ExitCode> {
    if args.attach && args.containers.len() > 1 {
        bail!("start -a takes one container");
    }
    let cs = containers(&ctx.store()?);
    for n in &args.containers {
        let c = cs.find(n)?;
        start_monitor(ctx, &c).with_context(|| format!("container {n}"))?;
        if args.attach {
            return follow(ctx, &c);
        }
        output::line(&c.config.name)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The output of the container's current run until it exits, then its
/// exit code (`start -a`, a kept foreground `run`).
pub fn follow(ctx: &Ctx, c: &Container) -> Result<ExitCode> {
    let follow =
        LogsArgs { container: c.id().into(), follow: true, tail: None, since: c.state()?.started, timestamps: false };
    logs(ctx, &follow)?;
    let code = c.wait(None)?.exit_code.unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

pub fn restart(ctx: &Ctx, args: &StopArgs) -> Result<()> {
    each(ctx, &args.containers, |c| {
        c.stop(args.time)?;
        start_monitor(ctx, c)?;
        output::line(&c.config.name)
    })
}

/// The monitor: a session of its own, then the container until it exits.
pub fn monitor(ctx: &Ctx, args: &MonitorArgs) -> Result<ExitCode> {
    let _ = nix::unistd::setsid();
    let store = ctx.store()?;
    let c = containers(&store).find(&args.id)?;
    let exec = executor_for(&store, c.config.runtime.as_deref())?;
    let code = c.run_monitored(exec.as_ref())?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

pub fn volume(ctx: &Ctx, cmd: &VolumeCommand) -> Result<()> {
    let store = ctx.store()?;
    let vs = volumes(&store);
    match cmd {
        VolumeCommand::Create(a) => output::line(vs.ensure(a.name.as_deref())?.name),
        VolumeCommand::Ls(a) => {
            let all = vs.list()?;
            if a.json {
                return output::json(&all);
            }
            output::line("VOLUME NAME")?;
            all.iter().try_for_each(|v| output::line(&v.name))
        }
        VolumeCommand::Inspect(a) => {
            let found = a
                .names
                .iter()
                .map(|n| vs.get(n).with_context(|| format!("no such volume: {n}")))
                .collect::<Result<Vec<_>>>()?;
            output::json(&found)
        }
        VolumeCommand::Rm(a) => {
            let in_use = volumes_in_use(&store)?;
            for n in &a.names {
                vs.remove(n, &in_use)?;
                output::line(n)?;
            }
            Ok(())
        }
        VolumeCommand::Prune(a) => super::hygiene::volume_prune(ctx, a),
    }
}

/// `CONTAINER:PATH`, or `None` for a host path (absolute, `./...`, or
/// without a colon), as Docker splits `cp` arguments.
fn container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':').filter(|(c, _)| !c.is_empty() && !c.contains('/'))
}

pub fn cp(ctx: &Ctx, args: &CpArgs) -> Result<()> {
    let cs = containers(&ctx.store()?);
    let (name, out) = match (container_path(&args.source), container_path(&args.destination)) {
        (Some((c, _)), None) => (c, true),
        (None, Some((c, _))) => (c, false),
        (None, None) if args.source == "-" || args.destination == "-" => {
            bail!("cp - streams a tar to or from a container: the other side is CONTAINER:PATH")
        }
        (Some(_), Some(_)) => bail!("cp copies between a container and the host, not between two containers"),
        (None, None) => bail!("cp needs a CONTAINER:PATH on one side (a local path with a colon: write it as ./PATH)"),
    };
    let c = cs.find(name)?;
    // Rootless: a running container is reached through its own processes'
    // view, as its owner; a stopped one's filesystem is mounted in a user
    // namespace of ours.
    if !rustix::process::geteuid().is_root() && c.state()?.status != ContainerStatus::Running {
        cargohold_runtime::rootless::enter().context("rootless: could not enter a user namespace")?;
    }
    // `-`: a tar stream on standard output or input, as docker cp.
    if out && args.destination == "-" {
        let (_, path) = container_path(&args.source).expect("checked above");
        let mut stdout = std::io::BufWriter::with_capacity(256 << 10, std::io::stdout());
        c.copy_out_tar(path, &mut stdout).map_err(|e| super::closed_output(e.into(), true))?;
        return std::io::Write::flush(&mut stdout)
            .context("could not write the tar to standard output")
            .map_err(|e| super::closed_output(e, true));
    }
    if !out && args.source == "-" {
        let (_, path) = container_path(&args.destination).expect("checked above");
        c.copy_in_tar(&mut std::io::stdin(), path)?;
        return Ok(());
    }
    let report = if out {
        let (_, path) = container_path(&args.source).expect("checked above");
        c.copy_out(path, &args.destination)?
    } else {
        let (_, path) = container_path(&args.destination).expect("checked above");
        c.copy_in(&args.source, path)?
    };
    let to = &args.destination;
    if !ctx.quiet {
        eprintln!("Successfully copied {} to {to}", output::human_size(report.bytes));
    }
    Ok(())
}
