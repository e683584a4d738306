//! The registry client as configured like skopeo and podman: TLS with
//! private CAs (certs.d, the system store, client certificates, no
//! verification), plain HTTP only as a fallback.

use super::*;

/// A private CA, a server certificate for `localhost` and `127.0.0.1`, and a
/// client certificate, made with openssl.
pub(crate) struct Pki {
    pub(crate) ca: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) client_cert: PathBuf,
    pub(crate) client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

impl Pki {
    pub(crate) fn new(dir: &Path) -> Pki {
        require("openssl");
        std::fs::create_dir_all(dir).unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=cargohold test CA", "-keyout", "ca.key"];
        ca.extend(ec);
        ca.extend(["-out", "ca.crt", "-addext", "basicConstraints=critical,CA:TRUE"]);
        ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(dir, &ca);
        for (name, cn, ext) in [
            (
                "server",
                "localhost",
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
            ),
            ("client", "cargohold test client", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"),
        ] {
            let subj = format!("/CN={cn}");
            let (key, csr, crt, extfile) =
                (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
            std::fs::write(dir.join(&extfile), ext).unwrap();
            let mut req = vec!["req", "-subj", &subj, "-keyout", &key, "-out", &csr];
            req.extend(ec);
            openssl(dir, &req);
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-days",
                    "2",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-extfile",
                    &extfile,
                    "-out",
                    &crt,
                ],
            );
        }
        Pki {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        }
    }

    /// docker-registry's `http.tls` for this server certificate (asking
    /// for a client certificate from this CA when `mtls`).
    fn registry_tls(&self, mtls: bool) -> String {
        let mut s = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            self.server_cert.display(),
            self.server_key.display()
        );
        if mtls {
            s.push_str(&format!("    clientcas:\n      - {}\n", self.ca.display()));
        }
        s
    }

    /// A certs.d tree for `host`: the CA, and the client pair when `client`.
    pub(crate) fn certs_d(&self, dir: &Path, host: &str, client: bool) -> PathBuf {
        let d = dir.join(host);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(&self.ca, d.join("ca.crt")).unwrap();
        if client {
            std::fs::copy(&self.client_cert, d.join("client.cert")).unwrap();
            std::fs::copy(&self.client_key, d.join("client.key")).unwrap();
        }
        dir.to_owned()
    }
}

fn fails(out: &std::process::Output, wanted: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected a failure, got success: {err}");
    for w in wanted {
        assert!(err.contains(w), "{w:?} not in the error: {err}");
    }
    err
}

#[test]
fn tls_registries_with_a_private_ca_certs_d_the_system_store_and_no_verification() {
    require("docker-registry");
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(&t.path().join("pki"));
    let reg = start_registry(tempfile::tempdir().unwrap(), "", &pki.registry_tls(false));
    let port = reg.1.rsplit(':').next().unwrap().to_owned();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let target = format!("{}/team/app:1", reg.1);
    let none = t.path().join("no-certs");

    // An unknown CA: refused as such, never retried in plain HTTP.
    let out = ch(&store, &["--cert-dir", none.to_str().unwrap(), "push", "app:1", &target]);
    let err = fails(&out, &["certificate"]);
    assert!(!err.contains("answered 400"), "no plain-HTTP fallback after a certificate error: {err}");

    // certs.d: HOST:PORT/ca.crt.
    let certs = pki.certs_d(&t.path().join("certs.d"), &reg.1, false);
    let pushed = json(&store, &["--cert-dir", certs.to_str().unwrap(), "push", "app:1", &target, "--json"]);
    let digest = pushed["report"]["manifest"]["digest"].as_str().unwrap().to_owned();

    // The system store as OpenSSL finds it: SSL_CERT_FILE.
    let other = t.path().join("other");
    let out = bin()
        .arg("--store")
        .arg(&other)
        .args(["--cert-dir", none.to_str().unwrap(), "pull", &target, "--json"])
        .env("SSL_CERT_FILE", &pki.ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pulled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pulled["report"]["manifest"]["digest"], digest.as_str());

    // --tls-verify=false: TLS without verification.
    let tags = json(&store, &["--cert-dir", none.to_str().unwrap(), "--tls-verify=false", "tags", &target, "--json"]);
    assert_eq!(tags["tags"], serde_json::json!(["1"]));
    // --insecure-registry HOST: the same for that registry only.
    let tags =
        json(&store, &["--cert-dir", none.to_str().unwrap(), "--insecure-registry", &reg.1, "tags", &target, "--json"]);
    assert_eq!(tags["tags"], serde_json::json!(["1"]));

    // localhost: TLS first (its certificate names localhost).
    let local = format!("localhost:{port}/team/app:1");
    let certs_local = pki.certs_d(&t.path().join("certs.d"), &format!("localhost:{port}"), false);
    let d = json(&store, &["--cert-dir", certs_local.to_str().unwrap(), "digest", &local, "--json"]);
    assert_eq!(d["digest"], digest.as_str(), "{d}");

    // skopeo reads what we pushed, trusting the same CA.
    let out = run(skopeo(t.path())
        .args(["inspect", "--format", "{{.Digest}}", "--cert-dir"])
        .arg(certs.join(&reg.1))
        .arg(format!("docker://{target}")));
    assert_eq!(out.trim(), digest);

    // Broken certs.d files: errors naming the file; nothing is sent.
    let bad = t.path().join("bad.d");
    std::fs::create_dir_all(bad.join(&reg.1)).unwrap();
    std::fs::write(bad.join(&reg.1).join("ca.crt"), "not a certificate\n").unwrap();
    let out = ch(&store, &["--cert-dir", bad.to_str().unwrap(), "tags", &target]);
    fails(&out, &[&format!("{}/ca.crt", reg.1), "certificate"]);
    std::fs::remove_file(bad.join(&reg.1).join("ca.crt")).unwrap();
    std::fs::copy(&pki.client_key, bad.join(&reg.1).join("me.key")).unwrap();
    let out = ch(&store, &["--cert-dir", bad.to_str().unwrap(), "tags", &target]);
    fails(&out, &["me.key", "me.cert"]);
}

/// Each side of a copy or sync gets its own TLS, as with skopeo: a
/// certificate directory (`--src-cert-dir`, `--dest-cert-dir`, a sync
/// file's `cert-dir`; and `--cert-dir` itself holding the certificates, as
/// podman's and skopeo's) and `--src-tls-verify`/`--dest-tls-verify` apply
/// to that side's registry alone; `=true` verifies a registry that
/// registries.conf marks insecure.
#[test]
fn copy_and_sync_take_each_sides_tls_for_its_registry_alone() {
    require("docker-registry");
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(&t.path().join("pki"));
    let a = start_registry(tempfile::tempdir().unwrap(), "", &pki.registry_tls(false));
    let b = start_registry(tempfile::tempdir().unwrap(), "", &pki.registry_tls(false));
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let none = t.path().join("no-certs");
    let none = none.to_str().unwrap();
    // The CA in a directory of its own, as podman and skopeo take it.
    let ca_dir = t.path().join("ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::copy(&pki.ca, ca_dir.join("ca.crt")).unwrap();
    let ca = ca_dir.to_str().unwrap();
    let pushed = json(&store, &["--cert-dir", ca, "push", "app:1", &format!("{}/team/app:1", a.1), "--json"]);
    let digest = pushed["report"]["manifest"]["digest"].as_str().unwrap().to_owned();
    let (src, dest) = (format!("docker://{}/team/app:1", a.1), format!("docker://{}/team/app:1", b.1));

    // The source's settings do not reach the destination: its certificate
    // is checked against what it has (nothing), and fails as such.
    let out = ch(&store, &["--cert-dir", none, "copy", "--src-tls-verify=false", &src, &dest]);
    let err = fails(&out, &["certificate", &b.1]);
    assert!(!err.contains("answered 400"), "no plain-HTTP fallback for the destination: {err}");
    let out = ch(&store, &["--cert-dir", none, "copy", "--src-cert-dir", ca, &src, &dest]);
    fails(&out, &["certificate", &b.1]);
    // Each side its own: a CA directory, no verification.
    ok(&store, &["--cert-dir", none, "copy", "--src-tls-verify=false", "--dest-cert-dir", ca, &src, &dest]);
    let dest2 = format!("docker://{}/team/app:2", b.1);
    ok(&store, &["--cert-dir", none, "copy", "--src-cert-dir", ca, "--dest-tls-verify=false", &src, &dest2]);
    // skopeo reads the copies, trusting the same CA.
    for d in [&dest, &dest2] {
        let out = run(skopeo(t.path()).args(["inspect", "--format", "{{.Digest}}", "--cert-dir", ca]).arg(d));
        assert_eq!(out.trim(), digest);
    }

    // registries.conf marks the destination insecure: taken as such, unless
    // --dest-tls-verify=true says to verify it.
    let conf = t.path().join("registries.conf");
    std::fs::write(&conf, format!("[[registry]]\nlocation = \"{}\"\ninsecure = true\n", b.1)).unwrap();
    let conf = conf.to_str().unwrap();
    let dest3 = format!("docker://{}/team/app:3", b.1);
    let mut args = vec!["--cert-dir", none, "--registries-conf", conf, "copy", "--src-cert-dir", ca, &src, &dest3];
    ok(&store, &args);
    args.insert(5, "--dest-tls-verify=true");
    fails(&ch(&store, &args), &["certificate", &b.1]);

    // Contradictions and a side that is no registry: refused before anything moves.
    let out = ch(&store, &["--tls-verify=false", "copy", "--src-tls-verify=true", &src, &dest]);
    fails(&out, &["--src-tls-verify=true contradicts --tls-verify=false"]);
    let out = ch(&store, &["--insecure-registry", &b.1, "copy", "--dest-tls-verify=true", &src, &dest]);
    fails(&out, &["--dest-tls-verify=true contradicts --insecure-registry"]);
    let same = format!("docker://{}/team/other:1", a.1);
    let out = ch(&store, &["copy", "--src-tls-verify=false", "--dest-tls-verify=true", &src, &same]);
    fails(&out, &["the other side's registry", &a.1]);
    let out = ch(&store, &["copy", "--dest-cert-dir", ca, "app:1", &format!("oci:{}/l:1", t.path().display())]);
    fails(&out, &["--dest-cert-dir is for a registry"]);
    let out = ch(&store, &["--cert-dir", none, "copy", "--src-cert-dir", none, &src, &dest]);
    fails(&out, &[none, "cannot read the directory"]);

    // sync: the flags, and a sync file's cert-dir.
    let synced = json(
        &store,
        &["--cert-dir", none, "sync", "--src-cert-dir", ca, "--dest-tls-verify=false", &format!("{}/team/app", a.1)]
            .into_iter()
            .chain([format!("{}/synced", b.1).as_str(), "--json"])
            .collect::<Vec<_>>(),
    );
    assert_eq!(synced["copied"], 1, "{synced}");
    let yaml = t.path().join("sync.yaml");
    std::fs::write(&yaml, format!("{}:\n  images:\n    team/app: ['1']\n  cert-dir: {ca}\n", a.1)).unwrap();
    let args = ["--cert-dir", none, "sync", "--src", "yaml", yaml.to_str().unwrap(), "--dest-cert-dir", ca];
    let from_yaml =
        json(&store, &args.into_iter().chain([format!("{}/fromyaml", b.1).as_str(), "--json"]).collect::<Vec<_>>());
    assert_eq!(from_yaml["copied"], 1, "{from_yaml}");
    let out = ch(&store, &["sync", "--src", "yaml", yaml.to_str().unwrap(), "--src-tls-verify=false", &b.1]);
    fails(&out, &["come from the YAML file", "--src-tls-verify"]);
}

#[test]
fn mutual_tls_presents_the_certs_d_client_certificate() {
    require("docker-registry");
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(&t.path().join("pki"));
    let reg = start_registry(tempfile::tempdir().unwrap(), "", &pki.registry_tls(true));
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let target = format!("{}/team/app:1", reg.1);

    // The CA alone: the registry wants a client certificate.
    let ca_only = pki.certs_d(&t.path().join("ca-only"), &reg.1, false);
    let out = ch(&store, &["--cert-dir", ca_only.to_str().unwrap(), "push", "app:1", &target]);
    let err = fails(&out, &[]);
    assert!(!err.contains("answered 400"), "no plain-HTTP fallback once TLS was spoken: {err}");

    // A client certificate with another certificate's key: refused before
    // any connection, naming the file.
    let mismatched = pki.certs_d(&t.path().join("mismatched"), &reg.1, true);
    std::fs::copy(&pki.server_key, mismatched.join(&reg.1).join("client.key")).unwrap();
    let out = ch(&store, &["--cert-dir", mismatched.to_str().unwrap(), "push", "app:1", &target]);
    fails(&out, &["client.cert", "no usable pair"]);

    let certs = pki.certs_d(&t.path().join("certs.d"), &reg.1, true);
    ok(&store, &["--cert-dir", certs.to_str().unwrap(), "push", "app:1", &target]);
    let other = t.path().join("other");
    ok(&other, &["--cert-dir", certs.to_str().unwrap(), "pull", &target]);
    // A layer large enough to be read on a TLS connection of its own (the
    // client certificate presented there too), whole.
    require("tar");
    let root = t.path().join("big-root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("noise.bin"), cargohold_testkit::noise(6 << 20, 7)).unwrap();
    let tar = t.path().join("big.tar");
    run(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg("."));
    ok(&store, &["import", tar.to_str().unwrap(), "big:1"]);
    let big = format!("{}/team/big:1", reg.1);
    ok(&store, &["--cert-dir", certs.to_str().unwrap(), "push", "big:1", &big]);
    let pulled = json(&other, &["--cert-dir", certs.to_str().unwrap(), "pull", &big, "--json"]);
    assert_eq!(pulled["digest"], json(&store, &["inspect", "big:1", "--json"])["digest"]);
    // And skopeo, with the same directory, reads it.
    run(skopeo(t.path())
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(certs.join(&reg.1))
        .arg(format!("docker://{target}")));
}

#[test]
fn registries_conf_mirrors_with_fallback_locations_blocks_and_aliases() {
    let (mirror, primary) = (registry(), registry());
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    // app:1 only on the mirror, app:2 only on the registry itself.
    ok(&store, &["push", "app:1", &format!("{}/team/app:1", mirror.1)]);
    ok(&store, &["push", "app:1", &format!("{}/team/app:2", primary.1)]);
    let conf = t.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"example.invalid/team\"\nlocation = \"{}/team\"\n\
             [[registry.mirror]]\nlocation = \"{}/team\"\n\n\
             [[registry]]\nprefix = \"blocked.example\"\nblocked = true\n",
            primary.1, mirror.1
        ),
    )
    .unwrap();
    // A drop-in beside it adds an alias.
    std::fs::create_dir(t.path().join("registries.conf.d")).unwrap();
    std::fs::write(
        t.path().join("registries.conf.d/50-alias.conf"),
        "[aliases]\n\"myapp\" = \"example.invalid/team/app\"\n",
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    let other = t.path().join("other");
    let pulled = json(&other, &["--registries-conf", c, "pull", "example.invalid/team/app:1", "--json"]);
    assert_eq!(pulled["reference"], "example.invalid/team/app:1");
    let pulled2 = json(&other, &["--registries-conf", c, "pull", "myapp:2", "--json"]);
    assert_eq!(pulled2["reference"], "example.invalid/team/app:2", "the alias, then the registry after the mirror");
    let names = ok(&other, &["images", "--json"]);
    assert!(names.contains("example.invalid/team/app:1") && names.contains("example.invalid/team/app:2"), "{names}");
    // Tags and pushes go to the location.
    let tags = json(&other, &["--registries-conf", c, "tags", "example.invalid/team/app", "--json"]);
    assert_eq!(tags["tags"], serde_json::json!(["2"]));
    ok(&other, &["--registries-conf", c, "push", "example.invalid/team/app:1", "example.invalid/team/app:3"]);
    let tags = json(&other, &["tags", &format!("{}/team/app", primary.1), "--json"]);
    let mut tags: Vec<&str> = tags["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    tags.sort();
    assert_eq!(tags, ["2", "3"]);

    // Blocked: named as blocked, by file; nothing stored.
    let before = ok(&other, &["images", "-q"]);
    let out = ch(&other, &["--registries-conf", c, "pull", "blocked.example/x:1"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && err.contains("blocked") && err.contains(c), "{err}");
    let out = ch(&other, &["--registries-conf", c, "push", "example.invalid/team/app:1", "blocked.example/x:1"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("blocked"));
    assert_eq!(ok(&other, &["images", "-q"]), before);

    // A malformed file: its name and line.
    let bad = t.path().join("bad.conf");
    std::fs::write(&bad, "[[registry]]\nprefix = \"a.example\"\ninsecure = maybe\n").unwrap();
    let out = ch(&other, &["--registries-conf", bad.to_str().unwrap(), "pull", "a.example/x:1"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && err.contains(&format!("{}, line 3", bad.display())), "{err}");
}

#[test]
fn sync_all_tags_globs_yaml_and_layouts_incrementally() {
    let (a, b) = (registry(), registry());
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    for tag in ["1.0", "1.1", "2.0"] {
        ok(&store, &["push", "app:1", &format!("{}/team/app:{tag}", a.1)]);
    }
    let sorted_tags = |repo: &str| {
        let v = json(&store, &["tags", repo, "--json"]);
        let mut tags: Vec<String> = v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().into()).collect();
        tags.sort();
        tags
    };
    let src = format!("{}/team/app", a.1);
    let dry = json(&store, &["sync", &src, &format!("{}/mirror", b.1), "--dry-run", "--json"]);
    assert_eq!(dry["images"].as_array().unwrap().len(), 3);
    assert!(!ch(&store, &["tags", &format!("{}/mirror/app", b.1)]).status.success(), "a dry run copies nothing");

    let first = json(&store, &["sync", &src, &format!("{}/mirror", b.1), "--json"]);
    assert_eq!((first["copied"].as_u64(), first["failed"].as_u64()), (Some(3), Some(0)), "{first}");
    assert_eq!(sorted_tags(&format!("{}/mirror/app", b.1)), ["1.0", "1.1", "2.0"]);
    // The second run moves nothing.
    let second = json(&store, &["sync", &src, &format!("{}/mirror", b.1), "--json"]);
    assert_eq!((second["copied"].as_u64(), second["up_to_date"].as_u64()), (Some(0), Some(3)), "{second}");
    // skopeo reads what sync wrote.
    run(skopeo(t.path()).args(["inspect", "--tls-verify=false"]).arg(format!("docker://{}/mirror/app:1.1", b.1)));
    // --format, as skopeo sync's: Docker schema 2 at the destination, and
    // a second run finds it held in that form.
    let v2s2 = json(&store, &["sync", "--format", "v2s2", &src, &format!("{}/v2s2", b.1), "--json"]);
    assert_eq!(v2s2["copied"], 3, "{v2s2}");
    let raw = run(skopeo(t.path())
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/v2s2/app:1.0", b.1)));
    assert!(raw.contains("application/vnd.docker.distribution.manifest.v2+json"), "{raw}");
    let again = json(&store, &["sync", "--format", "v2s2", &src, &format!("{}/v2s2", b.1), "--json"]);
    assert_eq!((again["copied"].as_u64(), again["up_to_date"].as_u64()), (Some(0), Some(3)), "{again}");

    // A glob of tags.
    json(&store, &["sync", "--tag", "1.*", &src, &format!("{}/globbed", b.1), "--json"]);
    assert_eq!(sorted_tags(&format!("{}/globbed/app", b.1)), ["1.0", "1.1"]);
    // A skopeo sync YAML file.
    let yaml = t.path().join("sync.yaml");
    std::fs::write(&yaml, format!("{}:\n  images:\n    team/app: ['2.0']\n  tls-verify: false\n", a.1)).unwrap();
    let from_yaml =
        json(&store, &["sync", "--src", "yaml", yaml.to_str().unwrap(), &format!("{}/fromyaml", b.1), "--json"]);
    assert_eq!(from_yaml["copied"], 1, "{from_yaml}");
    assert_eq!(sorted_tags(&format!("{}/fromyaml/app", b.1)), ["2.0"]);

    // Registry -> OCI layouts -> registry.
    let dir = t.path().join("layouts");
    json(&store, &["sync", "--dest", "oci", &src, dir.to_str().unwrap(), "--json"]);
    run(skopeo(t.path()).arg("inspect").arg(format!("oci:{}:1.1", dir.join("app").display())));
    let again = json(&store, &["sync", "-s", "docker", "-d", "oci", &src, dir.to_str().unwrap(), "--json"]);
    assert_eq!(again["up_to_date"], 3, "{again}");
    let back =
        json(&store, &["sync", "--src", "oci", dir.join("app").to_str().unwrap(), &format!("{}/back", b.1), "--json"]);
    assert_eq!(back["copied"], 3, "{back}");
    assert_eq!(sorted_tags(&format!("{}/back/app", b.1)), ["1.0", "1.1", "2.0"]);

    // Failures are reported and make the exit code; the other images still
    // move (skopeo's --keep-going, the way sync always goes here).
    let out = ch(&store, &["sync", &format!("{}/team/app:9.9", a.1), &format!("{}/mirror", b.1)]);
    assert!(!out.status.success(), "{out:?}");
    let partly = t.path().join("partly.yaml");
    std::fs::write(&partly, format!("{}:\n  images:\n    team/app: ['9.9', '2.0']\n  tls-verify: false\n", a.1))
        .unwrap();
    let out = ch(&store, &["sync", "-s", "yaml", "--keep-going", partly.to_str().unwrap(), &format!("{}/partly", b.1)]);
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 copied, 0 up to date, 1 failed"), "{out:?}");
    assert_eq!(sorted_tags(&format!("{}/partly/app", b.1)), ["2.0"]);
    let bad = t.path().join("bad.yaml");
    std::fs::write(&bad, format!("{}:\n  images:\n    team/app: []\n  images-by-semver: x\n", a.1)).unwrap();
    let out = ch(&store, &["sync", "--src", "yaml", bad.to_str().unwrap(), &format!("{}/x", b.1)]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("bad.yaml"), "{out:?}");
    // A cert-dir that is not there: named, nothing copied.
    let missing = t.path().join("missing-certs");
    std::fs::write(&bad, format!("{}:\n  images:\n    team/app: []\n  cert-dir: {}\n", a.1, missing.display()))
        .unwrap();
    let out = ch(&store, &["sync", "--src", "yaml", bad.to_str().unwrap(), &format!("{}/certless", b.1)]);
    assert!(!out.status.success(), "{out:?}");
    fails(&out, &[missing.to_str().unwrap(), "cannot read the directory"]);
    let out = ch(&store, &["tags", &format!("{}/certless/app", b.1)]);
    assert!(!out.status.success(), "nothing was copied: {out:?}");
}

/// skopeo's `dir:` transport: `sync --dest dir` writes what skopeo reads,
/// `sync --src dir` reads what `skopeo sync --dest dir` wrote, a second sync
/// moves nothing, `copy` takes `dir:` both ways, and a directory that is not
/// an image is neither read nor written into.
#[test]
fn sync_and_copy_through_skopeo_dir_images() {
    let (a, b) = (registry(), registry());
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    for tag in ["1.0", "2.0"] {
        ok(&store, &["push", "app:1", &format!("{}/team/app:{tag}", a.1)]);
    }
    let src = format!("{}/team/app", a.1);

    // Ours -> dir images -> skopeo.
    let ours = t.path().join("ours");
    let first = json(&store, &["sync", "--dest", "dir", &src, ours.to_str().unwrap(), "--json"]);
    assert_eq!(first["copied"], 2, "{first}");
    assert_eq!(std::fs::read_to_string(ours.join("app:1.0/version")).unwrap(), "Directory Transport Version: 1.1\n");
    let inspect: Value = serde_json::from_str(&run(skopeo(t.path())
        .arg("inspect")
        .arg(format!("dir:{}", ours.join("app:2.0").display()))))
    .unwrap();
    let pushed = json(&store, &["inspect", &format!("docker://{src}:2.0"), "--json"]);
    assert_eq!(inspect["Digest"], pushed["digest"], "{inspect}\n{pushed}");
    let again = json(&store, &["sync", "--dest", "dir", &src, ours.to_str().unwrap(), "--json"]);
    assert_eq!(again["up_to_date"], 2, "{again}");
    run(skopeo(t.path())
        .arg("copy")
        .arg(format!("dir:{}", ours.join("app:1.0").display()))
        .arg(format!("oci:{}:x", t.path().join("via-skopeo").display())));

    // skopeo -> dir images -> ours -> a registry, by NAME:TAG.
    let theirs = t.path().join("theirs");
    run(skopeo(t.path())
        .args(["sync", "--src", "docker", "--dest", "dir", "--src-tls-verify=false", &src])
        .arg(&theirs));
    let back = json(&store, &["sync", "--src", "dir", theirs.to_str().unwrap(), &format!("{}/back", b.1), "--json"]);
    assert_eq!((back["copied"].as_u64(), back["failed"].as_u64()), (Some(2), Some(0)), "{back}");
    let tags = json(&store, &["tags", &format!("{}/back/app", b.1), "--json"]);
    let mut tags: Vec<&str> = tags["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    tags.sort_unstable();
    assert_eq!(tags, ["1.0", "2.0"]);
    // One image directory alone, with a tag glob that leaves it out.
    let one = json(
        &store,
        &["sync", "--src", "dir", theirs.join("app:1.0").to_str().unwrap(), &format!("{}/one", b.1), "--json"],
    );
    assert_eq!(one["copied"], 1, "{one}");
    let none = json(
        &store,
        &["sync", "--src", "dir", "--tag", "3.*", theirs.to_str().unwrap(), &format!("{}/none", b.1), "--json"],
    );
    assert_eq!(none["copied"], 0, "{none}");

    // copy dir: <-> the store.
    let copied = json(&store, &["copy", &format!("dir:{}", theirs.join("app:2.0").display()), "fromdir:1", "--json"]);
    assert_eq!(copied["manifest"]["digest"], pushed["digest"], "{copied}");
    let out_dir = t.path().join("out");
    ok(&store, &["copy", "fromdir:1", &format!("dir:{}", out_dir.display())]);
    run(skopeo(t.path()).arg("inspect").arg(format!("dir:{}", out_dir.display())));

    // Not an image: refused by name, nothing written or changed.
    let junk = t.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("notes.txt"), "mine").unwrap();
    let out = ch(&store, &["copy", "fromdir:1", &format!("dir:{}", junk.display())]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&junk.display().to_string()), "{err}");
    assert_eq!(std::fs::read_dir(&junk).unwrap().count(), 1);
    let out = ch(&store, &["copy", &format!("dir:{}", junk.display()), "x:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no version file"), "{err}");
}
