//! `cargohold serve` behind authentication: htpasswd Basic auth (with
//! distribution's config.yml), HTTPS and mutual TLS, token auth from our own
//! issuer and from an external one.

use super::serve::{serve_config, serve_with};
use super::*;
use cargohold_testkit::{TestRegistry, TokenServer};

#[test]
fn basic_auth_anonymous_pull_and_distributions_config_yml() {
    require("htpasswd");
    require("curl");
    let t = tempfile::tempdir().unwrap();
    let htpasswd = t.path().join("htpasswd");
    std::fs::write(&htpasswd, run(Command::new("htpasswd").args(["-Bbn", "alice", "s3cret"]))).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // A Debian-style config.yml, pointed at by --config.
    let config = t.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  \
             filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  headers:\n    \
             X-Content-Type-Options: [nosniff]\nauth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\nhealth:\n  \
             storagedriver:\n    enabled: true\n    interval: 10s\n    threshold: 3\n",
            t.path().join("data").display(),
            htpasswd.display()
        ),
    )
    .unwrap();
    let srv = serve_config(&config, port);
    let head =
        run(Command::new("curl").args(["-s", "-D", "-", "-o", "/dev/null"]).arg(format!("http://{}/v2/", srv.1)));
    assert!(head.starts_with("HTTP/1.1 401") && head.contains("basic-realm"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-content-type-options: nosniff"), "{head}");

    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let target = format!("{}/team/app:1", srv.1);
    let anonymous = |args: &[&str]| no_stored_creds(t.path()).arg("--store").arg(&store).args(args).output().unwrap();
    assert!(!anonymous(&["push", "app:1", &target]).status.success(), "no user, no push");
    assert!(!anonymous(&["--creds", "alice:wrong", "push", "app:1", &target]).status.success());
    let pushed = anonymous(&["--creds", "alice:s3cret", "push", "app:1", &target]);
    assert!(pushed.status.success(), "{pushed:?}");
    run(skopeo(t.path())
        .args(["inspect", "--tls-verify=false", "--creds", "alice:s3cret"])
        .arg(format!("docker://{target}")));
    // config.yml's htpasswd has no anonymous pulls.
    assert!(!anonymous(&["tags", &format!("{}/team/app", srv.1)]).status.success());
    drop(srv);

    // --htpasswd with --anonymous-pull: anyone pulls, only users push.
    let srv2 = serve_with(|c| {
        c.arg("--root").arg(t.path().join("data")).arg("--htpasswd").arg(&htpasswd).arg("--anonymous-pull");
    });
    let other = t.path().join("other");
    let pulled = no_stored_creds(t.path())
        .arg("--store")
        .arg(&other)
        .args(["pull", &format!("{}/team/app:1", srv2.1)])
        .output()
        .unwrap();
    assert!(pulled.status.success(), "anonymous pull: {pulled:?}");
    assert!(!anonymous(&["push", "app:1", &format!("{}/team/app:2", srv2.1)]).status.success());

    // Keys not supported yet are refused by name.
    let s3 = t.path().join("s3.yml");
    std::fs::write(&s3, "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    keyid: k\n").unwrap();
    let out = bin().args(["serve", "--config"]).arg(&s3).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("storage.s3.keyid") && err.contains("not supported"), "{err}");
}

/// curl's exit code and HTTP status for `https://ADDR/v2/` (the server's
/// certificate not checked) with `extra` options.
fn curl_tls(addr: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("curl")
        .args(["-s", "-k", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(extra)
        .arg(format!("https://{addr}/v2/"))
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn https_and_mutual_tls() {
    let t = tempfile::tempdir().unwrap();
    let pki = super::client::Pki::new(&t.path().join("pki"));
    let start = |extra: &[&std::ffi::OsStr]| {
        serve_with(|c| {
            c.arg("--root")
                .arg(t.path().join("data"))
                .arg("--tls-cert")
                .arg(&pki.server_cert)
                .arg("--tls-key")
                .arg(&pki.server_key)
                .args(extra);
        })
    };
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    {
        let srv = start(&[]);
        let certs = pki.certs_d(&t.path().join("certs.d"), &srv.1, false);
        let target = format!("{}/team/app:1", srv.1);
        ok(&store, &["--cert-dir", certs.to_str().unwrap(), "push", "app:1", &target]);
        run(skopeo(t.path()).args(["inspect", "--cert-dir"]).arg(certs.join(&srv.1)).arg(format!("docker://{target}")));
        let plain = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{}/v2/", srv.1))
            .output()
            .unwrap();
        assert_ne!(String::from_utf8_lossy(&plain.stdout), "200", "no plain HTTP on the TLS port");
        assert_eq!(curl_tls(&srv.1, &["--tls-max", "1.2"]), (Some(0), "200".to_owned()), "TLS 1.2 by default");
    }
    let ca = pki.ca.clone();
    let srv = start(&["--tls-client-ca".as_ref(), ca.as_os_str()]);
    let ca_only = pki.certs_d(&t.path().join("ca-only"), &srv.1, false);
    let target = format!("{}/team/app:2", srv.1);
    let refused = ch(&store, &["--cert-dir", ca_only.to_str().unwrap(), "push", "app:1", &target]);
    assert!(!refused.status.success(), "no client certificate, no push");
    let with_client = pki.certs_d(&t.path().join("client.d"), &srv.1, true);
    ok(&store, &["--cert-dir", with_client.to_str().unwrap(), "push", "app:1", &target]);
    let other = t.path().join("other");
    ok(&other, &["--cert-dir", with_client.to_str().unwrap(), "pull", &target]);
    drop(srv);
    // TLS 1.3 only: a TLS 1.2 client is refused, a 1.3 one served.
    let srv = start(&["--tls-min-version".as_ref(), "1.3".as_ref()]);
    assert_eq!(curl_tls(&srv.1, &["--tlsv1.3"]), (Some(0), "200".to_owned()));
    let (status, http) = curl_tls(&srv.1, &["--tls-max", "1.2"]);
    assert!(status != Some(0) && http == "000", "a TLS 1.2 client got {status:?} {http}");
    let data = t.path().join("data");
    let out =
        ch(&store, &["serve", "--root", data.to_str().unwrap(), "--addr", "127.0.0.1:0", "--tls-min-version", "1.3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--tls-min-version is for HTTPS"), "{err}");
}

/// Token auth with our own token service: per-repository rules for users
/// and anonymous pulls, checked through cargohold and skopeo; Debian's
/// docker-registry trusts the same tokens (our key ids and signatures are
/// distribution's).
#[test]
fn token_auth_with_our_issuer_and_per_repository_rules() {
    require("htpasswd");
    require("openssl");
    let t = tempfile::tempdir().unwrap();
    let htpasswd = t.path().join("htpasswd");
    let users = run(Command::new("htpasswd").args(["-Bbn", "alice", "s3cret"]))
        + &run(Command::new("htpasswd").args(["-Bbn", "bob", "b0b"]));
    std::fs::write(&htpasswd, users).unwrap();
    let acl = t.path().join("acl.yml");
    std::fs::write(
        &acl,
        "- account: alice\n  type: registry\n  name: catalog\n  actions: ['*']\n\
         - account: alice\n  name: '*'\n  actions: ['*']\n\
         - account: bob\n  name: team/*\n  actions: [pull]\n\
         - account: '*'\n  name: ${account}/*\n  actions: [pull, push]\n\
         - anonymous: true\n  name: public/*\n  actions: [pull]\n",
    )
    .unwrap();
    let (key, cert) = (t.path().join("token.key"), t.path().join("token.crt"));
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cargohold-tokens"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null()));
    let srv = serve_with(|c| {
        c.arg("--root").arg(t.path().join("data")).arg("--htpasswd").arg(&htpasswd);
        c.arg("--token-acl").arg(&acl).arg("--token-key").arg(&key);
    });
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let as_user = |creds: Option<&str>, args: &[&str]| {
        let mut c = no_stored_creds(t.path());
        c.arg("--store").arg(&store);
        if let Some(cr) = creds {
            c.args(["--creds", cr]);
        }
        c.args(args).output().unwrap()
    };
    let (alice, bob) = (Some("alice:s3cret"), Some("bob:b0b"));
    let team = format!("{}/team/app:1", srv.1);
    let head =
        run(Command::new("curl").args(["-s", "-D", "-", "-o", "/dev/null"]).arg(format!("http://{}/v2/", srv.1)));
    assert!(
        head.starts_with("HTTP/1.1 401")
            && head.contains(&format!("Bearer realm=\"http://{}/token\",service=\"cargohold\"", srv.1)),
        "{head}"
    );
    assert!(!as_user(None, &["push", "app:1", &team]).status.success(), "anonymous pushes nothing");
    assert!(!as_user(Some("alice:wrong"), &["push", "app:1", &team]).status.success());
    let pushed = as_user(alice, &["push", "app:1", &team]);
    assert!(pushed.status.success(), "{pushed:?}");
    assert!(
        !as_user(bob, &["push", "app:1", &format!("{}/team/app:2", srv.1)]).status.success(),
        "bob only pulls team/*"
    );
    assert!(as_user(bob, &["tags", &format!("{}/team/app", srv.1)]).status.success());
    let mine = as_user(bob, &["push", "app:1", &format!("{}/bob/app:1", srv.1)]);
    assert!(mine.status.success(), "${{account}}/*: {mine:?}");
    assert!(!as_user(None, &["tags", &format!("{}/team/app", srv.1)]).status.success());
    assert!(as_user(alice, &["push", "app:1", &format!("{}/public/app:1", srv.1)]).status.success());
    assert!(as_user(None, &["tags", &format!("{}/public/app", srv.1)]).status.success(), "anonymous pulls public/*");
    let digest = run(skopeo(t.path())
        .args(["inspect", "--tls-verify=false", "--creds", "bob:b0b", "--format", "{{.Digest}}"])
        .arg(format!("docker://{team}")));
    assert!(digest.trim().starts_with("sha256:"));
    assert!(!as_user(bob, &["catalog", &srv.1]).status.success(), "the catalog is alice's");
    assert!(as_user(alice, &["catalog", &srv.1]).status.success());
    assert!(!as_user(bob, &["delete", &team]).status.success(), "bob may not delete");
    assert!(as_user(alice, &["delete", &format!("{}/public/app:1", srv.1)]).status.success());

    // distribution trusts our tokens: a docker-registry behind our /token.
    let ours = TokenServer {
        realm: format!("http://{}/token", srv.1),
        service: "cargohold".into(),
        issuer: "cargohold".into(),
        cert: cert.clone(),
        requests: Default::default(),
    };
    let reg = TestRegistry::start_trusting(&ours);
    let pushed = as_user(alice, &["push", "app:1", &format!("{}/team/app:1", reg.addr)]);
    assert!(pushed.status.success(), "docker-registry accepts our tokens: {pushed:?}");
    assert!(!as_user(bob, &["push", "app:1", &format!("{}/team/app:2", reg.addr)]).status.success());
    assert!(as_user(bob, &["tags", &format!("{}/team/app", reg.addr)]).status.success());
}

/// Token auth from an external token service (distribution's `auth.token`
/// in config.yml, the test token service that docker-registry trusts).
#[test]
fn token_auth_from_an_external_issuer() {
    let t = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(t.path(), "carol", "pa55", 300);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = t.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    \
             realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            t.path().join("data").display(),
            tokens.realm,
            tokens.service,
            tokens.issuer,
            tokens.cert.display()
        ),
    )
    .unwrap();
    let srv = serve_config(&config, port);
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let target = format!("{}/team/app:1", srv.1);
    let with = |creds: &str, args: &[&str]| {
        no_stored_creds(t.path()).arg("--store").arg(&store).args(["--creds", creds]).args(args).output().unwrap()
    };
    assert!(!with("carol:wrong", &["push", "app:1", &target]).status.success());
    let pushed = with("carol:pa55", &["push", "app:1", &target]);
    assert!(pushed.status.success(), "{pushed:?}");
    run(skopeo(t.path())
        .args(["copy", "-q", "--src-tls-verify=false", "--src-creds", "carol:pa55"])
        .arg(format!("docker://{target}"))
        .arg(format!("oci:{}:1", t.path().join("back").display())));
    assert!(tokens.requests.lock().unwrap().iter().any(|r| r.contains("repository:team/app:pull,push")));

    // A token fetched elsewhere, given as it is (skopeo's
    // --src-registry-token): no credentials, no token request of ours.
    let url = format!("{}?service={}&scope=repository:team/app:pull", tokens.realm, tokens.service);
    let answer = run(std::process::Command::new("curl").args(["-sf", "-u", "carol:pa55", &url]));
    let token = serde_json::from_str::<Value>(&answer).unwrap()["token"].as_str().unwrap().to_owned();
    let asked = tokens.requests.lock().unwrap().len();
    let src = format!("docker://{target}");
    let copied = no_stored_creds(t.path())
        .arg("--store")
        .arg(&store)
        .args(["copy", "--src-registry-token", &token, &src])
        .arg(format!("oci:{}:1", t.path().join("by-token").display()))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{copied:?}");
    assert_eq!(tokens.requests.lock().unwrap().len(), asked, "no token was asked for");
    let bogus = no_stored_creds(t.path())
        .arg("--store")
        .arg(&store)
        .args(["copy", "--src-registry-token", "not-a-token", &src])
        .arg(format!("oci:{}:1", t.path().join("bogus").display()))
        .output()
        .unwrap();
    assert!(!bogus.status.success(), "{bogus:?}");
    // skopeo takes the same token.
    run(skopeo(t.path()).args(["inspect", "--tls-verify=false", "--registry-token", &token]).arg(&src));
}
