//! Token auth (distribution's `token` config with our JWT token server):
//! pull, push, cross-repository mount with a two-repository scope, OAuth2
//! refresh, and skopeo reading what we pushed with the same credentials.

use cargohold_image_core::{
    Blocking, CopyOptions, ImageLocation, ImageSource, NoProgress, Reference, Store, open_source,
};
use cargohold_registry::{ClientOptions, Credentials, Registry};

use cargohold_testkit::*;

fn open_layout(layout: &std::path::Path, store: &Store) -> Blocking<Box<dyn ImageSource + Send>> {
    let loc = ImageLocation::parse(&format!("oci:{}:v1", layout.display())).unwrap();
    Blocking::source(open_source(&loc, store).unwrap())
}

#[test]
fn token_auth_push_pull_mount_and_refresh() {
    // Tokens live 1 s: every later request re-authenticates, with the
    // refresh token the first answer carried.
    let (r, tokens) = TestRegistry::start_token("alice", "s3cret", 1);
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let creds = Credentials::new("alice", "s3cret");
    let reg = Registry::new(ClientOptions { credentials: Some(creds), ..ClientOptions::default() }).unwrap();
    let target: Reference = format!("{}/team/app:1", r.addr).parse().unwrap();

    let pushed =
        cargohold_registry::push(&reg, &open_layout(&layout, &store), &target, &CopyOptions::default(), 4, &NoProgress)
            .unwrap();
    assert_eq!(pushed.blobs_copied, 2);

    // Mount into another repository: no layer bytes sent, and the token asked
    // for covers both repositories.
    let other: Reference = format!("{}/mirror/app:1", r.addr).parse().unwrap();
    let mounted =
        cargohold_registry::push(&reg, &reg.source(&target), &other, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert_eq!((mounted.blobs_mounted, mounted.blobs_copied), (2, 0), "{mounted:?}");
    assert_eq!(mounted.manifest.digest, pushed.manifest.digest);
    let seen = tokens.requests.lock().unwrap().clone();
    assert!(
        seen.iter().any(|q| q.contains("repository:mirror/app:pull,push") && q.contains("repository:team/app:pull")),
        "a mount token covers both repositories: {seen:?}"
    );
    assert!(seen.iter().any(|q| q.starts_with("POST ") && q.contains("grant_type=refresh_token")), "{seen:?}");

    // Pull back, bit-identical.
    let fresh = Store::open(t.path().join("fresh")).unwrap();
    let pulled = cargohold_registry::pull(&reg, &other, &fresh, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert_eq!(pulled.manifest.digest, pushed.manifest.digest);
    // Each layer on a connection of its own: its token fetched there too
    // (they expire at once here).
    let own = Registry::new(ClientOptions {
        credentials: Some(Credentials::new("alice", "s3cret")),
        own_connection_size: 0,
        ..ClientOptions::default()
    })
    .unwrap();
    let asked = tokens.requests.lock().unwrap().len();
    let again = Store::open(t.path().join("again")).unwrap();
    let pulled = cargohold_registry::pull(&own, &other, &again, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert_eq!((pulled.manifest.digest, pulled.blobs_copied), (pushed.manifest.digest.clone(), 2));
    assert!(tokens.requests.lock().unwrap().len() >= asked + 3, "a token for the manifest and each layer");

    // Anonymous: the token server grants nothing; the error names the registry.
    let anonymous = Registry::new(ClientOptions::default()).unwrap();
    let empty = Store::open(t.path().join("empty")).unwrap();
    let err =
        cargohold_registry::pull(&anonymous, &target, &empty, &CopyOptions::default(), 4, &NoProgress).unwrap_err();
    let msg = format!("{err}: {}", std::error::Error::source(&err).map(|s| s.to_string()).unwrap_or_default());
    assert!(msg.contains(&r.addr), "{msg}");
    assert!(empty.list().unwrap().is_empty());

    // Wrong password: the token server refuses, and we say so.
    let wrong = Registry::new(ClientOptions {
        credentials: Some(Credentials::new("alice", "nope")),
        ..ClientOptions::default()
    })
    .unwrap();
    let err = wrong.block_on(wrong.client().ping(&r.addr)).unwrap_err();
    assert!(err.to_string().contains("token server") && err.to_string().contains("401"), "{err}");

    // skopeo, with an auth file we wrote, reads what we pushed.
    let authfile = t.path().join("auth.json");
    cargohold_registry::save_credentials(&authfile, &r.addr, &Credentials::new("alice", "s3cret")).unwrap();
    let out = run(skopeo(t.path())
        .args(["inspect", "--tls-verify=false", "--authfile"])
        .arg(&authfile)
        .arg(format!("docker://{other}")));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], pushed.manifest.digest.to_string());
}

#[test]
fn identity_tokens_use_the_oauth2_refresh_grant() {
    let (r, tokens) = TestRegistry::start_token("bob", "pw", 60);
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    // Get a refresh token the way `docker login` does, then use only it.
    let reg = Registry::new(ClientOptions { credentials: Some(Credentials::new("bob", "pw")), ..Default::default() })
        .unwrap();
    reg.block_on(reg.client().ping(&r.addr)).unwrap();
    let refresh = {
        let seen = tokens.requests.lock().unwrap();
        assert!(seen.iter().any(|q| q.contains("offline_token=true")), "{seen:?}");
        format!("refresh-{}", seen.len() - 1)
    };
    let with_token = Registry::new(ClientOptions {
        credentials: Some(Credentials::new("<token>", refresh)),
        ..ClientOptions::default()
    })
    .unwrap();
    let target: Reference = format!("{}/idt/app:1", r.addr).parse().unwrap();
    let pushed = cargohold_registry::push(
        &with_token,
        &open_layout(&layout, &store),
        &target,
        &CopyOptions::default(),
        2,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(pushed.blobs_copied, 2);
    let seen = tokens.requests.lock().unwrap().clone();
    let posts = seen.iter().filter(|q| q.starts_with("POST ") && q.contains("grant_type=refresh_token")).count();
    assert!(posts >= 1, "{seen:?}");
    // Tokens are cached per scope: one push needs only a handful of token requests.
    assert!(seen.len() < 10, "tokens are reused while valid: {seen:?}");
}
