//! distribution's `config.yml`, so users of the `registry:2` image and of
//! Debian's docker-registry can point `cargohold serve --config` at their
//! file. What the server does not do yet is refused by its key, never
//! silently dropped.

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

/// What a `config.yml` sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// `storage.filesystem.rootdirectory`.
    pub root: Option<PathBuf>,
    /// `storage.s3` (credentials left empty are the caller's to find).
    pub s3: Option<super::S3Options>,
    /// `http.addr` (`:5000` becomes `0.0.0.0:5000`).
    pub addr: Option<String>,
    /// `storage.delete.enabled`.
    pub delete_enabled: bool,
    /// `auth.htpasswd`: the file and realm.
    pub htpasswd: Option<(PathBuf, String)>,
    /// `auth.token`: realm, service, issuer, rootcertbundle.
    pub token: Option<(String, String, String, PathBuf)>,
    /// `http.headers`: added to every response.
    pub headers: Vec<(String, String)>,
    /// Whether requests are logged (`log.accesslog.disabled`, `log.level`).
    pub access_log: bool,
    /// `http.tls`: certificate, key, client CAs.
    pub tls: Option<super::TlsFiles>,
    /// `proxy.remoteurl` and its `username`/`password`.
    pub proxy: Option<(String, Option<(String, String)>)>,
    /// `notifications.endpoints` (enabled ones).
    pub endpoints: Vec<super::Endpoint>,
    /// `storage.maintenance.uploadpurging`: age and interval (`None`: off).
    pub upload_purging: Option<(Duration, Duration)>,
    /// `storage.maintenance.readonly.enabled`: pulls only.
    pub read_only: bool,
    /// `http.draintimeout`: how long requests in flight may take to finish
    /// once the server is told to stop.
    pub drain_timeout: Option<Duration>,
    /// `http.debug.addr`: where `/debug/health` (and the metrics) are served.
    pub debug_addr: Option<String>,
    /// `http.debug.prometheus`: the path of the metrics on the debug
    /// address, when enabled (distribution's default `/metrics`).
    pub prometheus_path: Option<String>,
    /// `validation.manifests.urls.allow` and `.deny`: the patterns layer
    /// URLs must and must not match (see [`RegistryConfig::layer_urls`]).
    pub layer_url_patterns: (Vec<String>, Vec<String>),
    /// Keys read but with nothing to do here (said once at start).
    pub notes: Vec<String>,
}

fn err(file: &str, key: &str, reason: impl std::fmt::Display) -> String {
    format!("{file}: {key}: {reason}")
}

fn map<'a>(v: &'a Value, file: &str, key: &str) -> Result<&'a Mapping, String> {
    v.as_mapping().ok_or_else(|| err(file, key, "must be a mapping"))
}

fn string(v: &Value, file: &str, key: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(err(file, key, "must be a string")),
    }
}

fn boolean(v: &Value, file: &str, key: &str) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
        _ => Err(err(file, key, "must be true or false")),
    }
}

/// A Go duration (`10s`, `168h`, `1h30m`).
fn duration(v: &Value, file: &str, key: &str) -> Result<Duration, String> {
    let s = string(v, file, key)?;
    crate::parse_go_duration(&s).ok_or_else(|| err(file, key, format!("{s:?} is not a duration (e.g. 10s, 168h)")))
}

fn not_yet(file: &str, key: &str) -> String {
    err(file, key, "is not supported by cargohold serve yet")
}

/// `storage.s3`, as distribution's s3 driver reads it.
fn s3(m: &Mapping, file: &str) -> Result<super::S3Options, String> {
    let mut o = super::S3Options { region: String::new(), ..Default::default() };
    let (mut secure, mut path_style) = (true, None);
    for (k, v) in m {
        let key = format!("storage.s3.{}", string(k, file, "storage.s3")?);
        let must_be = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(err(file, &key, format!("is not supported by cargohold serve yet (only {what})")))
            }
        };
        match key.rsplit('.').next().unwrap_or("") {
            "accesskey" => o.access_key = string(v, file, &key)?,
            "secretkey" => o.secret_key = string(v, file, &key)?,
            "sessiontoken" => o.session_token = Some(string(v, file, &key)?).filter(|t| !t.is_empty()),
            "region" => o.region = string(v, file, &key)?,
            "regionendpoint" => o.endpoint = Some(string(v, file, &key)?).filter(|e| !e.is_empty()),
            "forcepathstyle" => path_style = Some(boolean(v, file, &key)?),
            "bucket" => o.bucket = string(v, file, &key)?,
            "rootdirectory" => o.root = string(v, file, &key)?,
            "secure" => secure = boolean(v, file, &key)?,
            "skipverify" => o.skip_verify = boolean(v, file, &key)?,
            "v4auth" => must_be(boolean(v, file, &key)?, "v4auth: true (signature version 4)")?,
            "chunksize" => {
                let n: usize =
                    string(v, file, &key)?.parse().map_err(|_| err(file, &key, "must be a number of bytes"))?;
                if n < super::MIN_PART_SIZE {
                    return Err(err(
                        file,
                        &key,
                        format!("must be at least {} (S3's smallest part)", super::MIN_PART_SIZE),
                    ));
                }
                o.part_size = n;
            }
            "encrypt" => must_be(!boolean(v, file, &key)?, "encrypt: false")?,
            "usedualstack" | "accelerate" => must_be(!boolean(v, file, &key)?, "false")?,
            "storageclass" => must_be(string(v, file, &key)?.eq_ignore_ascii_case("STANDARD"), "STANDARD")?,
            "objectacl" => must_be(string(v, file, &key)? == "private", "private")?,
            "loglevel" => must_be(string(v, file, &key)? == "off", "off")?,
            _ => return Err(not_yet(file, &key)),
        }
    }
    if o.bucket.is_empty() {
        return Err(err(file, "storage.s3.bucket", "is required"));
    }
    if let Some(e) = &mut o.endpoint
        && !e.contains("://")
    {
        *e = format!("{}://{e}", if secure { "https" } else { "http" });
    }
    // As distribution 2.x: an endpoint of one's own means path-style requests.
    o.path_style = path_style.unwrap_or(o.endpoint.is_some());
    Ok(o)
}

impl RegistryConfig {
    /// Parses `config.yml` text (`file` names it in errors).
    pub fn parse(text: &str, file: &str) -> Result<Self, String> {
        let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e.location().map_or_else(String::new, |l| format!(", line {}", l.line()));
            format!("{file}{at}: {e}")
        })?;
        let top = map(&doc, file, "(top level)")?;
        let mut c = RegistryConfig {
            root: None,
            s3: None,
            addr: None,
            delete_enabled: false,
            htpasswd: None,
            token: None,
            headers: Vec::new(),
            tls: None,
            endpoints: Vec::new(),
            proxy: None,
            access_log: true,
            upload_purging: Some((Duration::from_secs(168 * 3600), Duration::from_secs(24 * 3600))),
            read_only: false,
            drain_timeout: None,
            debug_addr: None,
            prometheus_path: None,
            layer_url_patterns: (Vec::new(), Vec::new()),
            notes: Vec::new(),
        };
        for (k, v) in top {
            let k = string(k, file, "(key)")?;
            match k.as_str() {
                "version" => {
                    if string(v, file, "version")? != "0.1" {
                        return Err(err(file, "version", "must be 0.1"));
                    }
                }
                "loglevel" => c.set_level(&string(v, file, "loglevel")?),
                "log" => {
                    for (lk, lv) in map(v, file, "log")? {
                        let lk = string(lk, file, "log")?;
                        match lk.as_str() {
                            "level" => c.set_level(&string(lv, file, "log.level")?),
                            "fields" => c.notes.push("log.fields: request logs are plain lines".into()),
                            "formatter" if string(lv, file, "log.formatter")? == "text" => {}
                            "accesslog" => {
                                for (ak, av) in map(lv, file, "log.accesslog")? {
                                    match string(ak, file, "log.accesslog")?.as_str() {
                                        "disabled" => c.access_log = !boolean(av, file, "log.accesslog.disabled")?,
                                        other => return Err(not_yet(file, &format!("log.accesslog.{other}"))),
                                    }
                                }
                            }
                            other => return Err(not_yet(file, &format!("log.{other}"))),
                        }
                    }
                }
                "storage" => c.storage(map(v, file, "storage")?, file)?,
                "http" => c.http(map(v, file, "http")?, file)?,
                "auth" => {
                    for (ak, av) in map(v, file, "auth")? {
                        match string(ak, file, "auth")?.as_str() {
                            "htpasswd" => {
                                let m = map(av, file, "auth.htpasswd")?;
                                let mut path = None;
                                let mut realm = "registry".to_owned();
                                for (hk, hv) in m {
                                    match string(hk, file, "auth.htpasswd")?.as_str() {
                                        "path" => path = Some(PathBuf::from(string(hv, file, "auth.htpasswd.path")?)),
                                        "realm" => realm = string(hv, file, "auth.htpasswd.realm")?,
                                        other => return Err(not_yet(file, &format!("auth.htpasswd.{other}"))),
                                    }
                                }
                                let path = path.ok_or_else(|| err(file, "auth.htpasswd", "needs a path"))?;
                                c.htpasswd = Some((path, realm));
                            }
                            "token" => {
                                let (mut realm, mut service, mut issuer, mut bundle) = (None, None, None, None);
                                for (tk, tv) in map(av, file, "auth.token")? {
                                    let key = format!("auth.token.{}", string(tk, file, "auth.token")?);
                                    match key.rsplit('.').next().unwrap_or("") {
                                        "realm" => realm = Some(string(tv, file, &key)?),
                                        "service" => service = Some(string(tv, file, &key)?),
                                        "issuer" => issuer = Some(string(tv, file, &key)?),
                                        "rootcertbundle" => bundle = Some(string(tv, file, &key)?),
                                        "autoredirect" if !boolean(tv, file, &key)? => {}
                                        _ => return Err(not_yet(file, &key)),
                                    }
                                }
                                let need = |v: Option<_>, k: &str| {
                                    v.ok_or_else(|| err(file, &format!("auth.token.{k}"), "is required"))
                                };
                                c.token = Some((
                                    need(realm, "realm")?,
                                    need(service, "service")?,
                                    need(issuer, "issuer")?,
                                    PathBuf::from(need(bundle, "rootcertbundle")?),
                                ));
                            }
                            other => return Err(not_yet(file, &format!("auth.{other}"))),
                        }
                    }
                }
                "notifications" => c.notifications(map(v, file, "notifications")?, file)?,
                "proxy" => {
                    let (mut url, mut user, mut password) = (None, None, None);
                    for (pk, pv) in map(v, file, "proxy")? {
                        let key = format!("proxy.{}", string(pk, file, "proxy")?);
                        match key.as_str() {
                            "proxy.remoteurl" => url = Some(string(pv, file, &key)?),
                            "proxy.username" => user = Some(string(pv, file, &key)?),
                            "proxy.password" => password = Some(string(pv, file, &key)?),
                            "proxy.ttl" => c.notes.push("proxy.ttl: tags are asked upstream on every pull".into()),
                            _ => return Err(not_yet(file, &key)),
                        }
                    }
                    let url = url.ok_or_else(|| err(file, "proxy", "needs a remoteurl"))?;
                    let creds = match (user, password) {
                        (Some(u), Some(p)) => Some((u, p)),
                        (None, None) => None,
                        _ => return Err(err(file, "proxy", "username and password go together")),
                    };
                    c.proxy = Some((url, creds));
                }
                "health" => {
                    c.notes.push("health: storage health checks are not run (the storage is checked at start)".into())
                }
                "validation" => c.validation(map(v, file, "validation")?, file)?,
                "compatibility" => {
                    for (ck, cv) in map(v, file, "compatibility")? {
                        let key = format!("compatibility.{}", string(ck, file, "compatibility")?);
                        if key != "compatibility.schema1" {
                            return Err(not_yet(file, &key));
                        }
                        for (sk, sv) in map(cv, file, &key)? {
                            let key = format!("{key}.{}", string(sk, file, &key)?);
                            match key.as_str() {
                                "compatibility.schema1.enabled" if boolean(sv, file, &key)? => {
                                    return Err(err(
                                        file,
                                        &key,
                                        "schema1 manifests are not taken here (as distribution 2.8's default)",
                                    ));
                                }
                                "compatibility.schema1.enabled" => {}
                                "compatibility.schema1.signingkeyfile" => {
                                    c.notes.push(format!("{key}: no schema1 manifests are signed (none are taken)"))
                                }
                                _ => return Err(not_yet(file, &key)),
                            }
                        }
                    }
                }
                other => return Err(not_yet(file, other)),
            }
        }
        Ok(c)
    }

    fn set_level(&mut self, level: &str) {
        // distribution logs each request at info.
        self.access_log = matches!(level, "debug" | "info");
    }

    fn storage(&mut self, m: &Mapping, file: &str) -> Result<(), String> {
        for (k, v) in m {
            let k = string(k, file, "storage")?;
            match k.as_str() {
                "filesystem" => {
                    for (fk, fv) in map(v, file, "storage.filesystem")? {
                        match string(fk, file, "storage.filesystem")?.as_str() {
                            "rootdirectory" => {
                                self.root = Some(PathBuf::from(string(fv, file, "storage.filesystem.rootdirectory")?))
                            }
                            "maxthreads" => {}
                            other => return Err(not_yet(file, &format!("storage.filesystem.{other}"))),
                        }
                    }
                }
                "delete" => {
                    for (dk, dv) in map(v, file, "storage.delete")? {
                        match string(dk, file, "storage.delete")?.as_str() {
                            "enabled" => self.delete_enabled = boolean(dv, file, "storage.delete.enabled")?,
                            other => return Err(not_yet(file, &format!("storage.delete.{other}"))),
                        }
                    }
                }
                "s3" => self.s3 = Some(s3(map(v, file, "storage.s3")?, file)?),
                "cache" => self.notes.push("storage.cache: blob descriptors are read from the filesystem".into()),
                "tag" => {
                    for (tk, tv) in map(v, file, "storage.tag")? {
                        let key = format!("storage.tag.{}", string(tk, file, "storage.tag")?);
                        if key != "storage.tag.concurrencylimit" {
                            return Err(not_yet(file, &key));
                        }
                        let n = string(tv, file, &key)?;
                        if n.parse::<u32>().map_or(true, |n| n == 0) {
                            return Err(err(file, &key, format!("{n:?} is not a positive number")));
                        }
                        self.notes.push(format!("{key}: tag lookups are not limited (each is one file read)"));
                    }
                }
                "redirect" => {}
                "maintenance" => {
                    for (mk, mv) in map(v, file, "storage.maintenance")? {
                        match string(mk, file, "storage.maintenance")?.as_str() {
                            "uploadpurging" => {
                                let (mut enabled, mut age, mut interval) =
                                    (true, Duration::from_secs(168 * 3600), Duration::from_secs(24 * 3600));
                                for (uk, uv) in map(mv, file, "storage.maintenance.uploadpurging")? {
                                    let key = format!("storage.maintenance.uploadpurging.{}", string(uk, file, "")?);
                                    match key.rsplit('.').next().unwrap_or("") {
                                        "enabled" => enabled = boolean(uv, file, &key)?,
                                        "age" => age = duration(uv, file, &key)?,
                                        "interval" => interval = duration(uv, file, &key)?,
                                        "dryrun" if !boolean(uv, file, &key)? => {}
                                        _ => return Err(not_yet(file, &key)),
                                    }
                                }
                                self.upload_purging = enabled.then_some((age, interval));
                            }
                            "readonly" => {
                                for (rk, rv) in map(mv, file, "storage.maintenance.readonly")? {
                                    let key = format!("storage.maintenance.readonly.{}", string(rk, file, "")?);
                                    match key.rsplit('.').next().unwrap_or("") {
                                        "enabled" => self.read_only = boolean(rv, file, &key)?,
                                        _ => return Err(not_yet(file, &key)),
                                    }
                                }
                            }
                            other => return Err(not_yet(file, &format!("storage.maintenance.{other}"))),
                        }
                    }
                }
                other => return Err(not_yet(file, &format!("storage.{other}"))),
            }
        }
        match (&self.root, &self.s3) {
            (None, None) => Err(err(file, "storage", "needs filesystem.rootdirectory or s3")),
            (Some(_), Some(_)) => Err(err(file, "storage", "names two drivers (filesystem and s3): keep one")),
            _ => Ok(()),
        }
    }

    fn notifications(&mut self, m: &Mapping, file: &str) -> Result<(), String> {
        let strings = |v: &Value, key: &str| -> Result<Vec<String>, String> {
            match v {
                Value::Sequence(list) => list.iter().map(|x| string(x, file, key)).collect(),
                other => Ok(vec![string(other, file, key)?]),
            }
        };
        for (k, v) in m {
            match string(k, file, "notifications")?.as_str() {
                "events" => {}
                "endpoints" => {
                    let Value::Sequence(list) = v else {
                        return Err(err(file, "notifications.endpoints", "must be a list"));
                    };
                    for (i, e) in list.iter().enumerate() {
                        let at = format!("notifications.endpoints[{i}]");
                        let mut ep = super::Endpoint {
                            name: format!("endpoint{i}"),
                            url: String::new(),
                            headers: Vec::new(),
                            timeout: Duration::from_secs(1),
                            backoff: Duration::from_secs(1),
                            ignored_media_types: Vec::new(),
                            ignored_actions: Vec::new(),
                        };
                        let mut disabled = false;
                        for (ek, ev) in map(e, file, &at)? {
                            let key = format!("{at}.{}", string(ek, file, &at)?);
                            match key.rsplit('.').next().unwrap_or("") {
                                "name" => ep.name = string(ev, file, &key)?,
                                "url" => ep.url = string(ev, file, &key)?,
                                "disabled" => disabled = boolean(ev, file, &key)?,
                                "timeout" => ep.timeout = duration(ev, file, &key)?,
                                "backoff" => ep.backoff = duration(ev, file, &key)?,
                                "threshold" => {}
                                "headers" => {
                                    for (hk, hv) in map(ev, file, &key)? {
                                        let name = string(hk, file, &key)?;
                                        for value in strings(hv, &key)? {
                                            ep.headers.push((name.clone(), value));
                                        }
                                    }
                                }
                                "ignoredmediatypes" => ep.ignored_media_types.extend(strings(ev, &key)?),
                                "ignore" => {
                                    for (ik, iv) in map(ev, file, &key)? {
                                        match string(ik, file, &key)?.as_str() {
                                            "mediatypes" => ep.ignored_media_types.extend(strings(iv, &key)?),
                                            "actions" => ep.ignored_actions.extend(strings(iv, &key)?),
                                            other => return Err(not_yet(file, &format!("{key}.{other}"))),
                                        }
                                    }
                                }
                                _ => return Err(not_yet(file, &key)),
                            }
                        }
                        if !(ep.url.starts_with("http://") || ep.url.starts_with("https://")) {
                            return Err(err(file, &format!("{at}.url"), "must be an http(s) URL"));
                        }
                        if !disabled {
                            self.endpoints.push(ep);
                        }
                    }
                }
                other => return Err(not_yet(file, &format!("notifications.{other}"))),
            }
        }
        Ok(())
    }

    fn http(&mut self, m: &Mapping, file: &str) -> Result<(), String> {
        for (k, v) in m {
            let k = string(k, file, "http")?;
            match k.as_str() {
                "addr" => {
                    let a = string(v, file, "http.addr")?;
                    self.addr = Some(if a.starts_with(':') { format!("0.0.0.0{a}") } else { a });
                }
                "headers" => {
                    for (hk, hv) in map(v, file, "http.headers")? {
                        let name = string(hk, file, "http.headers")?;
                        let values = match hv {
                            Value::Sequence(s) => {
                                s.iter().map(|x| string(x, file, "http.headers")).collect::<Result<Vec<_>, _>>()?
                            }
                            other => vec![string(other, file, "http.headers")?],
                        };
                        for value in values {
                            self.headers.push((name.clone(), value));
                        }
                    }
                }
                "tls" => {
                    let (mut cert, mut key, mut cas, mut tls13_only) = (None, None, Vec::new(), false);
                    for (tk, tv) in map(v, file, "http.tls")? {
                        let key_name = format!("http.tls.{}", string(tk, file, "http.tls")?);
                        match key_name.as_str() {
                            "http.tls.certificate" => cert = Some(PathBuf::from(string(tv, file, &key_name)?)),
                            "http.tls.key" => key = Some(PathBuf::from(string(tv, file, &key_name)?)),
                            "http.tls.clientcas" => match tv {
                                Value::Sequence(list) => {
                                    for ca in list {
                                        cas.push(PathBuf::from(string(ca, file, &key_name)?));
                                    }
                                }
                                _ => return Err(err(file, &key_name, "must be a list of files")),
                            },
                            "http.tls.minimumtls" => match string(tv, file, &key_name)?.as_str() {
                                "tls1.0" | "tls1.1" => self.notes.push(format!(
                                    "{key_name}: TLS 1.2 is the oldest version offered (rustls has no older)"
                                )),
                                "tls1.2" => {}
                                "tls1.3" => tls13_only = true,
                                other => {
                                    return Err(err(
                                        file,
                                        &key_name,
                                        format!("{other:?} is not one of tls1.0, tls1.1, tls1.2, tls1.3"),
                                    ));
                                }
                            },
                            _ => return Err(not_yet(file, &key_name)),
                        }
                    }
                    let certificate = cert.ok_or_else(|| err(file, "http.tls", "needs a certificate"))?;
                    let key = key.ok_or_else(|| err(file, "http.tls", "needs a key"))?;
                    self.tls = Some(super::TlsFiles { certificate, key, client_cas: cas, tls13_only });
                }
                "secret" => self.notes.push("http.secret: uploads are not signed (their ids are random)".into()),
                "draintimeout" => self.drain_timeout = Some(duration(v, file, "http.draintimeout")?),
                "host" => self.notes.push("http.host: Location headers are relative paths, under any host name".into()),
                "net" => {
                    let net = string(v, file, "http.net")?;
                    if net != "tcp" {
                        return Err(err(file, "http.net", format!("{net:?} is not supported (only tcp)")));
                    }
                }
                "relativeurls" => {
                    if !boolean(v, file, "http.relativeurls")? {
                        self.notes.push("http.relativeurls: Location headers are relative paths all the same".into());
                    }
                }
                "debug" => self.debug(map(v, file, "http.debug")?, file)?,
                other => return Err(not_yet(file, &format!("http.{other}"))),
            }
        }
        Ok(())
    }

    /// `validation`: which URLs pushed manifests' layers may name.
    fn validation(&mut self, m: &Mapping, file: &str) -> Result<(), String> {
        for (k, v) in m {
            let key = format!("validation.{}", string(k, file, "validation")?);
            match key.as_str() {
                // `enabled` is distribution's older spelling of `!disabled`.
                "validation.disabled" | "validation.enabled" => {
                    if boolean(v, file, &key)? == (key == "validation.disabled") {
                        return Err(err(file, &key, "manifests are always validated here (their blobs must exist)"));
                    }
                }
                "validation.manifests" => {
                    for (mk, mv) in map(v, file, &key)? {
                        let key = format!("{key}.{}", string(mk, file, &key)?);
                        if key != "validation.manifests.urls" {
                            return Err(not_yet(file, &key));
                        }
                        for (uk, uv) in map(mv, file, &key)? {
                            let key = format!("{key}.{}", string(uk, file, &key)?);
                            let list = match key.as_str() {
                                "validation.manifests.urls.allow" => &mut self.layer_url_patterns.0,
                                "validation.manifests.urls.deny" => &mut self.layer_url_patterns.1,
                                _ => return Err(not_yet(file, &key)),
                            };
                            let Value::Sequence(patterns) = uv else {
                                return Err(err(file, &key, "must be a list of regular expressions"));
                            };
                            for p in patterns {
                                let p = string(p, file, &key)?;
                                regex::Regex::new(&p).map_err(|e| err(file, &key, format!("{p:?}: {e}")))?;
                                list.push(p);
                            }
                        }
                    }
                }
                _ => return Err(not_yet(file, &key)),
            }
        }
        Ok(())
    }

    /// The layer URL rules `validation.manifests.urls` sets.
    pub fn layer_urls(&self) -> Result<super::LayerUrls, String> {
        super::LayerUrls::new(&self.layer_url_patterns.0, &self.layer_url_patterns.1)
    }

    /// `http.debug`: its address, and Prometheus metrics there.
    fn debug(&mut self, m: &Mapping, file: &str) -> Result<(), String> {
        let (mut prometheus, mut path) = (false, "/metrics".to_owned());
        for (k, v) in m {
            let key = format!("http.debug.{}", string(k, file, "http.debug")?);
            match key.as_str() {
                "http.debug.addr" => {
                    let a = string(v, file, &key)?;
                    self.debug_addr = Some(if a.starts_with(':') { format!("0.0.0.0{a}") } else { a });
                }
                "http.debug.prometheus" => {
                    for (pk, pv) in map(v, file, &key)? {
                        let key = format!("{key}.{}", string(pk, file, &key)?);
                        match key.as_str() {
                            "http.debug.prometheus.enabled" => prometheus = boolean(pv, file, &key)?,
                            "http.debug.prometheus.path" => path = string(pv, file, &key)?,
                            _ => return Err(not_yet(file, &key)),
                        }
                    }
                }
                _ => return Err(not_yet(file, &key)),
            }
        }
        if !path.starts_with('/') || path == "/debug/health" || path.contains(['{', '}', '*']) {
            return Err(err(
                file,
                "http.debug.prometheus.path",
                format!("{path:?} must be a plain path other than /debug/health"),
            ));
        }
        if self.debug_addr.is_none() {
            return Err(err(file, "http.debug", "needs an addr"));
        }
        self.prometheus_path = prometheus.then_some(path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debians_default_config_and_refusals() {
        let c = RegistryConfig::parse(
            "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: /var/lib/docker-registry\n  delete:\n    enabled: true\nhttp:\n  addr: :5000\n  headers:\n    X-Content-Type-Options: [nosniff]\nauth:\n  htpasswd:\n    realm: basic-realm\n    path: /etc/docker/registry\nhealth:\n  storagedriver:\n    enabled: true\n    interval: 10s\n    threshold: 3\n",
            "config.yml",
        )
        .unwrap();
        assert_eq!(c.addr.as_deref(), Some("0.0.0.0:5000"));
        assert_eq!(c.root, Some(PathBuf::from("/var/lib/docker-registry")));
        assert!(c.delete_enabled);
        assert_eq!(c.headers, [("X-Content-Type-Options".to_owned(), "nosniff".to_owned())]);
        assert_eq!(c.htpasswd, Some((PathBuf::from("/etc/docker/registry"), "basic-realm".to_owned())));
        for (text, key) in [
            ("version: 0.1\nstorage:\n  s3:\n    bucket: x\n    encrypt: true\n", "storage.s3.encrypt"),
            ("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /x\nredis:\n  addr: r:6379\n", "redis"),
            (
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /x\nnotifications:\n  endpoints:\n    - name: a\n      url: http://x/\n      queuepurge: 1\n",
                "queuepurge",
            ),
            (
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /x\nproxy:\n  remoteurl: https://r\n  x: 1\n",
                "proxy.x",
            ),
            (
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /x\nauth:\n  token:\n    realm: r\n    jwks: j\n",
                "auth.token",
            ),
        ] {
            let e = RegistryConfig::parse(text, "c.yml").unwrap_err();
            assert!(e.contains(key) && e.contains("not supported"), "{e}");
        }
        let e = RegistryConfig::parse("version: 0.1\nstorage: [\n", "c.yml").unwrap_err();
        assert!(e.contains("c.yml, line"), "{e}");
        let c = RegistryConfig::parse(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /x\n  maintenance:\n    uploadpurging:\n      enabled: true\n      age: 2h\n      interval: 1h30m\n",
            "c.yml",
        )
        .unwrap();
        assert_eq!(c.upload_purging, Some((Duration::from_secs(7200), Duration::from_secs(5400))));
        assert_eq!(c.drain_timeout, None);
        assert!(!c.read_only);
        let c = RegistryConfig::parse(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /x\n  maintenance:\n    readonly:\n      enabled: true\n",
            "c.yml",
        )
        .unwrap();
        assert!(c.read_only);
        let e = RegistryConfig::parse(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /x\n  maintenance:\n    readonly:\n      enabled: maybe\n",
            "c.yml",
        )
        .unwrap_err();
        assert!(e.contains("storage.maintenance.readonly.enabled"), "{e}");
        let c = RegistryConfig::parse(
            "version: 0.1\nhttp:\n  draintimeout: 1m\n  relativeurls: false\n  net: tcp\n  host: https://r.example\n",
            "c.yml",
        )
        .unwrap();
        assert_eq!(c.drain_timeout, Some(Duration::from_secs(60)));
        assert!(c.notes.iter().any(|n| n.starts_with("http.relativeurls")), "{:?}", c.notes);
        assert!(c.notes.iter().any(|n| n.starts_with("http.host")), "{:?}", c.notes);
        let e = RegistryConfig::parse("version: 0.1\nhttp:\n  draintimeout: soon\n", "c.yml").unwrap_err();
        assert!(e.contains("http.draintimeout"), "{e}");
        let tls = |v: &str| {
            RegistryConfig::parse(
                &format!("version: 0.1\nhttp:\n  tls:\n    certificate: c.pem\n    key: k.pem\n    minimumtls: {v}\n"),
                "c.yml",
            )
        };
        assert!(tls("tls1.3").unwrap().tls.unwrap().tls13_only);
        assert!(!tls("tls1.2").unwrap().tls.unwrap().tls13_only);
        assert!(tls("tls1.0").unwrap().notes.iter().any(|n| n.contains("minimumtls")));
        assert!(tls("ssl3").unwrap_err().contains("http.tls.minimumtls"));
        let e = RegistryConfig::parse("version: 0.1\nhttp:\n  net: unix\n", "c.yml").unwrap_err();
        assert!(e.contains("http.net") && e.contains("unix"), "{e}");
        // http.debug: the address, metrics only when enabled, their path.
        let debug = |d: &str| RegistryConfig::parse(&format!("version: 0.1\nhttp:\n  debug:\n{d}"), "c.yml");
        let c = debug("    addr: :5001\n    prometheus:\n      enabled: true\n").unwrap();
        assert_eq!((c.debug_addr.as_deref(), c.prometheus_path.as_deref()), (Some("0.0.0.0:5001"), Some("/metrics")));
        let c = debug("    addr: 127.0.0.1:5001\n    prometheus:\n      enabled: true\n      path: /m\n").unwrap();
        assert_eq!(c.prometheus_path.as_deref(), Some("/m"));
        let c = debug("    addr: 127.0.0.1:5001\n").unwrap();
        assert_eq!((c.debug_addr.as_deref(), c.prometheus_path), (Some("127.0.0.1:5001"), None));
        // compatibility.schema1 off, as here; a tag lookup limit noted.
        let c = RegistryConfig::parse(
            "version: 0.1\ncompatibility:\n  schema1:\n    enabled: false\nstorage:\n  filesystem:\n    rootdirectory: /x\n  tag:\n    concurrencylimit: 8\n",
            "c.yml",
        )
        .unwrap();
        assert!(c.notes.iter().any(|n| n.starts_with("storage.tag.concurrencylimit")), "{:?}", c.notes);
        for (text, key) in [
            ("compatibility:\n  schema1:\n    enabled: true\n", "compatibility.schema1.enabled"),
            (
                "storage:\n  filesystem:\n    rootdirectory: /x\n  tag:\n    concurrencylimit: 0\n",
                "storage.tag.concurrencylimit",
            ),
        ] {
            let e = RegistryConfig::parse(&format!("version: 0.1\n{text}"), "c.yml").unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
        // validation.manifests.urls: the patterns, checked.
        let c = RegistryConfig::parse(
            "version: 0.1\nvalidation:\n  disabled: false\n  manifests:\n    urls:\n      allow:\n        - ^https?://([^/]+\\.)*example\\.com/\n      deny:\n        - ^https?://www\\.example\\.com/\n",
            "c.yml",
        )
        .unwrap();
        assert_eq!(c.layer_urls().unwrap().allow.len(), 1);
        assert_eq!(c.layer_url_patterns.1, ["^https?://www\\.example\\.com/"]);
        for (text, key) in [
            ("validation:\n  disabled: true\n", "validation.disabled"),
            (
                "validation:\n  manifests:\n    urls:\n      allow:\n        - \"(\"\n",
                "validation.manifests.urls.allow",
            ),
            ("validation:\n  manifests:\n    urls:\n      deny: x\n", "validation.manifests.urls.deny"),
            ("validation:\n  manifests:\n    indexes:\n      platforms: all\n", "validation.manifests.indexes"),
        ] {
            let e = RegistryConfig::parse(&format!("version: 0.1\n{text}"), "c.yml").unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
        for (d, key) in [
            ("    prometheus:\n      enabled: true\n", "http.debug: needs an addr"),
            (
                "    addr: :5001\n    prometheus:\n      enabled: true\n      path: metrics\n",
                "http.debug.prometheus.path",
            ),
            ("    addr: :5001\n    prometheus:\n      enabled: yes please\n", "http.debug.prometheus.enabled"),
            ("    addr: :5001\n    tls:\n      certificate: c\n", "http.debug.tls"),
        ] {
            let e = debug(d).unwrap_err();
            assert!(e.contains(key), "{d}: {e}");
        }
    }
}
