//! `cargohold serve`: a registry over a directory or an S3 bucket.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cargohold_registry::server::{
    Acl, Endpoint, GcOptions, Htpasswd, LayerUrls, Listening, Metrics, Notifier, Proxy, RegistryConfig, S3Driver,
    S3Options, ServerOptions, Storage, TlsFiles, TokenAuth, TokenIssuer, debug_router, router, serve_with,
    server_config,
};

use super::Ctx;
use crate::cli::{S3Args, ServeArgs, ServeCommand, ServeGcArgs};
use crate::output;

fn read_config(file: Option<&std::path::Path>) -> Result<Option<RegistryConfig>> {
    let Some(f) = file else { return Ok(None) };
    let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
    Ok(Some(RegistryConfig::parse(&text, &f.display().to_string()).map_err(anyhow::Error::msg)?))
}

/// The storage flags (or else the config) name, and how to say where it is.
fn open_storage(
    root: Option<&std::path::Path>,
    s3: &S3Args,
    config: Option<&RegistryConfig>,
    must_exist: bool,
) -> Result<(Storage, String)> {
    let s3 = match (&s3.s3, root) {
        (Some(url), _) => {
            let rest = url.strip_prefix("s3://").with_context(|| format!("--s3 {url}: not s3://BUCKET[/PREFIX]"))?;
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("--s3 {url}: names no bucket");
            }
            Some(S3Options {
                bucket: bucket.to_owned(),
                root: prefix.to_owned(),
                region: s3.s3_region.clone().unwrap_or_default(),
                path_style: s3.s3_endpoint.is_some(),
                endpoint: s3.s3_endpoint.clone(),
                ..S3Options::default()
            })
        }
        (None, Some(_)) => None,
        (None, None) => config.and_then(|c| c.s3.clone()),
    };
    if let Some(mut o) = s3 {
        // The environment, as AWS's tools and distribution read it.
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(v) = env("REGISTRY_STORAGE_S3_ACCESSKEY")
            .or_else(|| o.access_key.is_empty().then(|| env("AWS_ACCESS_KEY_ID")).flatten())
        {
            o.access_key = v;
        }
        if let Some(v) = env("REGISTRY_STORAGE_S3_SECRETKEY")
            .or_else(|| o.secret_key.is_empty().then(|| env("AWS_SECRET_ACCESS_KEY")).flatten())
        {
            o.secret_key = v;
        }
        if o.session_token.is_none() {
            o.session_token = env("AWS_SESSION_TOKEN");
        }
        if o.region.is_empty() {
            o.region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).unwrap_or_default();
        }
        if o.access_key.is_empty() || o.secret_key.is_empty() {
            bail!(
                "S3 bucket {}: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or storage.s3.accesskey and secretkey)",
                o.bucket
            );
        }
        let place = format!("s3://{}/{}", o.bucket, o.root.trim_matches('/'));
        let driver = S3Driver::new(&o).with_context(|| format!("cannot use {place}"))?;
        return Ok((Storage::new(Arc::new(driver)), place));
    }
    let root = root.map(std::path::Path::to_path_buf).or_else(|| config.and_then(|c| c.root.clone()));
    let Some(root) = root else { bail!("give --root DIR or --s3 s3://BUCKET (or storage in --config)") };
    if must_exist && !root.join("blobs").is_dir() {
        bail!("{} is not a registry's storage (no blobs/)", root.display());
    }
    let storage = Storage::filesystem(&root)
        .with_context(|| format!("cannot use {} as the registry's storage", root.display()))?;
    Ok((storage, root.display().to_string()))
}

fn gc(args: &ServeGcArgs) -> Result<()> {
    let config = read_config(args.config.as_deref())?;
    let (storage, place) = open_storage(args.root.as_deref(), &args.s3, config.as_ref(), true)?;
    let opts = GcOptions {
        delete_untagged: args.delete_untagged,
        dry_run: args.dry_run,
        min_age: std::time::Duration::from_secs(args.min_age),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let report = rt.block_on(storage.gc(&opts)).with_context(|| format!("garbage collection of {place} failed"))?;
    if args.out.json {
        return output::json(&report);
    }
    let verb = if args.dry_run { "would delete" } else { "deleted" };
    for m in &report.manifests_deleted {
        output::line(format!("{verb} manifest {m}"))?;
    }
    for b in &report.blobs_deleted {
        output::line(format!("{verb} blob {b}"))?;
    }
    output::line(format!(
        "{} manifests kept; {verb} {} manifests and {} blobs ({})",
        report.manifests_kept,
        report.manifests_deleted.len(),
        report.blobs_deleted.len(),
        output::human_size(report.bytes_freed)
    ))
}

pub fn run(ctx: &Ctx, args: &ServeArgs) -> Result<()> {
    if let Some(ServeCommand::Gc(g)) = &args.command {
        return gc(g);
    }
    let config = read_config(args.config.as_deref())?;
    let addr = args
        .addr
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.addr.clone()))
        .unwrap_or_else(|| "127.0.0.1:5000".into());
    let delete_enabled = !args.no_delete && config.as_ref().is_none_or(|c| c.delete_enabled);
    let read_only = args.read_only || config.as_ref().is_some_and(|c| c.read_only);
    let htpasswd = match (&args.htpasswd, config.as_ref().and_then(|c| c.htpasswd.clone())) {
        (Some(f), _) => Some(Htpasswd::load(f, "cargohold", args.anonymous_pull).map_err(anyhow::Error::msg)?),
        (None, Some((f, realm))) => Some(Htpasswd::load(&f, &realm, false).map_err(anyhow::Error::msg)?),
        (None, None) => None,
    };
    // Read-only serves a storage that is there (creating it would write).
    let (storage, place) = open_storage(args.root.as_deref(), &args.s3, config.as_ref(), read_only)?;
    let htpasswd = htpasswd.map(Arc::new);
    let (token, issuer) = match (&args.token_acl, &args.token_certs, config.as_ref().and_then(|c| c.token.clone())) {
        (Some(acl), _, _) => {
            let text = std::fs::read_to_string(acl).with_context(|| format!("cannot read {}", acl.display()))?;
            let acl = Acl::parse(&text, &acl.display().to_string()).map_err(anyhow::Error::msg)?;
            let issuer = TokenIssuer::new(
                args.token_key.as_deref(),
                &args.token_issuer,
                &args.token_service,
                acl,
                htpasswd.clone(),
            )
            .map_err(anyhow::Error::msg)?;
            let auth = TokenAuth::own(&issuer, args.token_realm.clone());
            (Some(Arc::new(auth)), Some(Arc::new(issuer)))
        }
        (None, Some(certs), _) => {
            let realm = args.token_realm.as_deref().unwrap_or_default();
            let auth = TokenAuth::external(realm, &args.token_service, &args.token_issuer, certs)
                .map_err(anyhow::Error::msg)?;
            (Some(Arc::new(auth)), None)
        }
        (None, None, Some((realm, service, iss, bundle))) => {
            let auth = TokenAuth::external(&realm, &service, &iss, &bundle).map_err(anyhow::Error::msg)?;
            (Some(Arc::new(auth)), None)
        }
        (None, None, None) => (None, None),
    };
    let access_log = !ctx.is_quiet() && config.as_ref().is_none_or(|c| c.access_log);
    let logger: Option<cargohold_registry::server::RequestLogger> = access_log.then(|| {
        Arc::new(|r: &cargohold_registry::server::RequestLog| {
            output::status(&format!("{} {} {} {:.1}ms", r.method, r.path, r.status, r.elapsed.as_secs_f64() * 1000.0));
        }) as cargohold_registry::server::RequestLogger
    });
    let opts = ServerOptions {
        delete_enabled,
        read_only,
        htpasswd,
        token,
        issuer,
        logger,
        headers: config.as_ref().map(|c| c.headers.clone()).unwrap_or_default(),
        ..ServerOptions::default()
    };
    // A read-only registry writes nothing: stale uploads stay.
    let purging = config
        .as_ref()
        .map_or(Some((std::time::Duration::from_secs(168 * 3600), std::time::Duration::from_secs(24 * 3600))), |c| {
            c.upload_purging
        })
        .filter(|_| !read_only);
    let tls = match (&args.tls_cert, &args.tls_key, config.as_ref().and_then(|c| c.tls.clone())) {
        (Some(cert), Some(key), _) => Some(TlsFiles {
            certificate: cert.clone(),
            key: key.clone(),
            client_cas: args.tls_client_ca.clone(),
            tls13_only: false,
        }),
        (_, _, from_config) => from_config,
    };
    let tls = match (tls, args.tls_min_version.as_deref()) {
        (Some(files), Some(v)) => Some(TlsFiles { tls13_only: v == "1.3", ..files }),
        (None, Some(_)) => bail!("--tls-min-version is for HTTPS: give --tls-cert and --tls-key (or http.tls)"),
        (tls, None) => tls,
    };
    let tls = tls.map(|f| server_config(&f).map_err(anyhow::Error::msg)).transpose()?;
    let proxy = match (&args.proxy, config.as_ref().and_then(|c| c.proxy.clone())) {
        (Some(url), _) => {
            let creds = args.proxy_creds.as_deref().map(|c| super::parse_creds(c, "--proxy-creds")).transpose()?;
            Some((url.clone(), creds))
        }
        (None, Some((url, creds))) => Some((url, creds.map(|(u, p)| cargohold_registry::Credentials::new(u, p)))),
        (None, None) => None,
    };
    if read_only && proxy.is_some() {
        bail!(
            "a read-only registry cannot be a pull-through cache (the cache writes what it fetches): drop one of them"
        );
    }
    let proxy = match proxy {
        Some((url, creds)) => {
            let (plain, host) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
                (Some(h), _) => (true, h),
                (None, Some(h)) => (false, h),
                _ => bail!("--proxy {url}: not an http(s) URL"),
            };
            let host = host.trim_end_matches('/').to_owned();
            if host.is_empty() || host.contains('/') {
                bail!("--proxy {url}: give the registry's address only (https://HOST[:PORT])");
            }
            let mut opts = ctx.client_options()?;
            // Upstream down: answer from the cache after one retry, not five.
            opts.max_attempts = 2;
            opts.timeout = opts.timeout.min(std::time::Duration::from_secs(15));
            if plain {
                opts.insecure.push(host.clone());
            }
            if let Some(c) = creds {
                opts.registry_credentials.push((host.clone(), c));
            }
            let registry =
                if host == "registry-1.docker.io" || host == "index.docker.io" { "docker.io".into() } else { host };
            Some(Proxy { registry, client: Arc::new(cargohold_registry::RegistryClient::new(opts)?) })
        }
        None => None,
    };
    // The debug address: health, and metrics (always with the flag; with
    // config.yml, when http.debug.prometheus is enabled).
    let debug = match (&args.debug_addr, config.as_ref().and_then(|c| c.debug_addr.clone())) {
        (Some(a), _) => Some((a.clone(), Some("/metrics".to_owned()))),
        (None, Some(a)) => Some((a, config.as_ref().and_then(|c| c.prometheus_path.clone()))),
        (None, None) => None,
    };
    let metrics = debug.as_ref().and_then(|(_, path)| path.clone()).map(|p| (Arc::new(Metrics::new()), p));
    // Layer URLs: the flags' patterns beside config.yml's.
    let (mut allow, mut deny) = config.as_ref().map(|c| c.layer_url_patterns.clone()).unwrap_or_default();
    allow.extend(args.allow_layer_url.iter().cloned());
    deny.extend(args.deny_layer_url.iter().cloned());
    let layer_urls = LayerUrls::new(&allow, &deny).map_err(|e| {
        anyhow::anyhow!("a layer URL pattern (--allow-layer-url, --deny-layer-url) is not a regular expression: {e}")
    })?;
    let opts = ServerOptions {
        proxy,
        https: tls.is_some(),
        metrics: metrics.as_ref().map(|(m, _)| m.clone()),
        layer_urls,
        ..opts
    };
    let drain = args
        .drain_timeout
        .map(std::time::Duration::from_secs)
        .or_else(|| config.as_ref().and_then(|c| c.drain_timeout))
        .unwrap_or(std::time::Duration::from_secs(30));
    let threads = match args.threads {
        Some(n) => usize::from(n),
        // Every thread is woken for each new connection: a few do.
        None => std::thread::available_parallelism().map_or(1, usize::from).min(16),
    };
    // This thread's runtime serves its share of the connections beside the
    // signals, notifications and upload purging; the others serve theirs.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    rt.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr().context("the listening address")?;
        if !ctx.is_quiet() {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mode = if read_only { " (read-only)" } else { "" };
            output::status(&format!("serving a registry on {scheme}://{local} from {place}{mode}"));
            for note in config.iter().flat_map(|c| &c.notes) {
                output::status(&format!("note: {note}"));
            }
        }
        if let Some((debug_addr, _)) = &debug {
            let listener = tokio::net::TcpListener::bind(debug_addr)
                .await
                .with_context(|| format!("cannot listen on {debug_addr} (the debug address)"))?;
            if !ctx.is_quiet() {
                let what = metrics.as_ref().map_or(String::new(), |(_, p)| format!(" and metrics at {p}"));
                output::status(&format!(
                    "serving /debug/health{what} on http://{}",
                    listener.local_addr().context("the debug address")?
                ));
            }
            let app = debug_router(metrics.clone());
            tokio::spawn(async move {
                let _ = cargohold_registry::server::serve(listener, app, std::future::pending()).await;
            });
        }
        let mut endpoints = config.as_ref().map(|c| c.endpoints.clone()).unwrap_or_default();
        for (i, url) in args.notify.iter().enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--notify {url}: not an http(s) URL");
            }
            endpoints.push(Endpoint {
                name: format!("notify{i}"),
                url: url.clone(),
                headers: Vec::new(),
                timeout: std::time::Duration::from_secs(5),
                backoff: std::time::Duration::from_secs(1),
                ignored_media_types: Vec::new(),
                ignored_actions: Vec::new(),
            });
        }
        let mut opts = opts;
        if !endpoints.is_empty() {
            opts.notifier = Some(Notifier::start(endpoints, &local.to_string()));
        }
        if let Some((age, interval)) = purging {
            let storage = storage.clone();
            tokio::spawn(async move {
                loop {
                    let _ = storage.purge_uploads(age).await;
                    tokio::time::sleep(interval).await;
                }
            });
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot handle SIGTERM")?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let how = Listening { tls, threads: threads - 1 };
        let server = serve_with(listener, router(storage, opts), how, shutdown);
        let mut server = std::pin::pin!(server);
        tokio::select! {
            r = &mut server => return r.context("the server failed"),
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        // No new connections; those open finish what they are doing, for
        // so long.
        let _ = stop.send(());
        // A second SIGTERM or Ctrl-C stops at once (as docker and podman do).
        let said = tokio::select! {
            r = tokio::time::timeout(drain, &mut server) => match r {
                Ok(r) => return r.context("the server failed"),
                Err(_) => format!("stopped after {}s of draining: the connections still open were closed", drain.as_secs()),
            },
            _ = term.recv() => "stopped at a second signal: the connections still open were closed".to_owned(),
            _ = tokio::signal::ctrl_c() => "stopped at a second signal: the connections still open were closed".to_owned(),
        };
        if !ctx.is_quiet() {
            output::status(&said);
        }
        Ok(())
    })
}
