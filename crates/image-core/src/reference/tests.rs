use proptest::prelude::*;

use super::*;

const D: &str = "sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";

/// (input, registry, repository, tag, digest?, familiar)
type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, bool, &'a str);

#[test]
fn valid_references_normalize_like_docker() {
    let cases: &[Case<'_>] = &[
        ("ubuntu", "docker.io", "library/ubuntu", None, false, "ubuntu"),
        ("ubuntu:22.04", "docker.io", "library/ubuntu", Some("22.04"), false, "ubuntu:22.04"),
        ("library/ubuntu", "docker.io", "library/ubuntu", None, false, "ubuntu"),
        ("docker.io/ubuntu", "docker.io", "library/ubuntu", None, false, "ubuntu"),
        ("docker.io/library/ubuntu", "docker.io", "library/ubuntu", None, false, "ubuntu"),
        ("index.docker.io/ubuntu", "docker.io", "library/ubuntu", None, false, "ubuntu"),
        (
            "index.docker.io/library/debian:stable",
            "docker.io",
            "library/debian",
            Some("stable"),
            false,
            "debian:stable",
        ),
        ("docker/docker", "docker.io", "docker/docker", None, false, "docker/docker"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar", None, false, "library/foo/bar"),
        ("localhost/foo", "localhost", "foo", None, false, "localhost/foo"),
        ("localhost:5000/foo/bar:tag", "localhost:5000", "foo/bar", Some("tag"), false, "localhost:5000/foo/bar:tag"),
        ("127.0.0.1:5000/debian", "127.0.0.1:5000", "debian", None, false, "127.0.0.1:5000/debian"),
        ("[::1]:5000/foo", "[::1]:5000", "foo", None, false, "[::1]:5000/foo"),
        ("[2001:db8::1]/foo:v1", "[2001:db8::1]", "foo", Some("v1"), false, "[2001:db8::1]/foo:v1"),
        ("Foo.com/bar", "Foo.com", "bar", None, false, "Foo.com/bar"),
        ("FOO/bar:Tag_1", "FOO", "bar", Some("Tag_1"), false, "FOO/bar:Tag_1"),
        (
            "sub-dom1.foo.com/bar/baz/quux",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            None,
            false,
            "sub-dom1.foo.com/bar/baz/quux",
        ),
        ("foo--bar/x", "docker.io", "foo--bar/x", None, false, "foo--bar/x"),
        ("foo__bar", "docker.io", "library/foo__bar", None, false, "foo__bar"),
        ("a.b/c.d_e-f", "a.b", "c.d_e-f", None, false, "a.b/c.d_e-f"),
    ];
    for (input, registry, repository, tag, has_digest, familiar) in cases {
        let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(r.registry(), *registry, "{input}");
        assert_eq!(r.repository(), *repository, "{input}");
        assert_eq!(r.tag(), *tag, "{input}");
        assert_eq!(r.digest().is_some(), *has_digest, "{input}");
        assert_eq!(r.familiar(), *familiar, "{input}");
        assert_eq!(Reference::parse(&r.canonical()).unwrap(), r, "{input}");
    }
}

#[test]
fn digests_and_pull_resolution() {
    let r = Reference::parse(&format!("ubuntu@{D}")).unwrap();
    assert_eq!(r.canonical(), format!("docker.io/library/ubuntu@{D}"));
    assert_eq!(r.pull_reference().canonical(), format!("docker.io/library/ubuntu@{D}"));

    let r = Reference::parse(&format!("ubuntu:22.04@{D}")).unwrap();
    assert_eq!(r.canonical(), format!("docker.io/library/ubuntu:22.04@{D}"));
    assert_eq!(r.familiar(), format!("ubuntu:22.04@{D}"));
    assert_eq!(r.pull_reference().canonical(), format!("docker.io/library/ubuntu@{D}"), "digest wins");

    let r = Reference::parse("ubuntu").unwrap();
    assert_eq!(r.pull_reference().canonical(), "docker.io/library/ubuntu:latest");
    assert!(r.is_name_only());
    let r = Reference::parse("ubuntu:22.04").unwrap();
    assert_eq!(r.pull_reference().canonical(), "docker.io/library/ubuntu:22.04");

    let sha512 = format!("sha512:{}", "ab".repeat(64));
    assert!(Reference::parse(&format!("foo@{sha512}")).is_ok());
}

#[test]
fn a_first_component_that_is_not_a_domain_stays_in_the_path() {
    // distribution/reference: "a.b_c" contains a '.', so it is split off as a
    // domain, but it is not a valid host; the name regexp then reads the whole
    // string as a path, leaving the domain empty.
    let r = Reference::parse("a.b_c/d").unwrap();
    assert_eq!((r.registry(), r.repository()), ("", "a.b_c/d"));
    assert_eq!(r.canonical(), "a.b_c/d");
}

#[test]
fn path_length_limit_counts_the_path_only() {
    let ok = format!("registry.example.com:5000/{}", "a".repeat(255));
    assert!(Reference::parse(&ok).is_ok());
    let long = format!("registry.example.com:5000/{}", "a".repeat(256));
    assert!(matches!(Reference::parse(&long), Err(ReferenceError::NameTooLong { .. })));
    // A familiar name gains "library/", which counts.
    assert!(Reference::parse(&"a".repeat(247)).is_ok());
    assert!(matches!(Reference::parse(&"a".repeat(248)), Err(ReferenceError::NameTooLong { .. })));
}

#[test]
fn tag_length_limit() {
    assert!(Reference::parse(&format!("foo:{}", "t".repeat(128))).is_ok());
    assert!(matches!(Reference::parse(&format!("foo:{}", "t".repeat(129))), Err(ReferenceError::InvalidFormat { .. })));
}

#[derive(Debug, PartialEq)]
enum Kind {
    Empty,
    Upper,
    Format,
    TooLong,
    Ident,
    Digest,
}

fn kind(e: &ReferenceError) -> Kind {
    match e {
        ReferenceError::Empty { .. } => Kind::Empty,
        ReferenceError::Uppercase { .. } => Kind::Upper,
        ReferenceError::InvalidFormat { .. } | ReferenceError::InvalidTag { .. } => Kind::Format,
        ReferenceError::NameTooLong { .. } => Kind::TooLong,
        ReferenceError::Identifier { .. } => Kind::Ident,
        ReferenceError::Digest { .. } => Kind::Digest,
    }
}

#[test]
fn invalid_references_fail_with_the_right_error() {
    let hex64 = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";
    let cases: Vec<(String, Kind)> = vec![
        ("".into(), Kind::Empty),
        ("Uppercase".into(), Kind::Upper),
        ("UPPER:tag".into(), Kind::Upper),
        ("docker.io/Foo".into(), Kind::Upper),
        ("localhost:5000/Foo/bar".into(), Kind::Upper),
        ("https://foo/bar".into(), Kind::Format),
        ("foo:bar:baz".into(), Kind::Format),
        ("-foo".into(), Kind::Format),
        ("foo-".into(), Kind::Format),
        ("foo___bar".into(), Kind::Format),
        ("foo..bar".into(), Kind::Format),
        ("foo/../bar".into(), Kind::Format),
        ("foo//bar".into(), Kind::Format),
        ("foo/".into(), Kind::Format),
        ("/foo".into(), Kind::Format),
        ("foo:".into(), Kind::Format),
        ("foo:-tag".into(), Kind::Format),
        ("foo:.tag".into(), Kind::Format),
        ("foo@".into(), Kind::Format),
        ("foo@sha256:abc".into(), Kind::Format),
        ("localhost:/foo".into(), Kind::Format),
        ("[fe80::1%eth0]:5000/foo".into(), Kind::Format),
        ("-registry.example/foo".into(), Kind::Format),
        ("registry.example:port/foo".into(), Kind::Format),
        ("foo bar".into(), Kind::Format),
        ("foo\u{e9}".into(), Kind::Format),
        (hex64.into(), Kind::Ident),
        ("a".repeat(300), Kind::TooLong),
        (format!("foo@sha256:{}", "a".repeat(32)), Kind::Digest),
        (format!("foo@md5:{}", "a".repeat(32)), Kind::Digest),
        (format!("foo@sha256:{}", hex64.to_uppercase()), Kind::Digest),
    ];
    for (input, want) in cases {
        match Reference::parse(&input) {
            Ok(r) => panic!("{input:?} parsed as {r}"),
            Err(e) => {
                assert_eq!(kind(&e), want, "{input:?}: {e}");
                let msg = e.to_string();
                assert!(msg.contains("invalid") || msg.contains("must"), "{msg}");
            }
        }
    }
}

#[test]
fn canonical_parse_requires_canonical_input() {
    assert!(Reference::parse_canonical("docker.io/library/ubuntu:1").is_ok());
    assert!(Reference::parse_canonical("ubuntu:1").is_err());
}

fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}((\\.|_|__|-{1,2})[a-z0-9]{1,6}){0,2}"
}

fn registry() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("localhost".to_string())),
        Just(Some("docker.io".to_string())),
        Just(Some("[::1]:5000".to_string())),
        ("[a-z][a-z0-9]{0,5}(\\.[a-z0-9]{1,5}){1,2}", proptest::option::of(1u16..65535))
            .prop_map(|(h, p)| Some(p.map_or(h.clone(), |p| format!("{h}:{p}")))),
    ]
}

proptest! {
    #[test]
    fn parse_display_round_trip(
        reg in registry(),
        comps in proptest::collection::vec(component(), 1..4),
        tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        digest in proptest::option::of("[a-f0-9]{64}"),
    ) {
        let mut s = String::new();
        if let Some(r) = &reg { s.push_str(r); s.push('/'); }
        s.push_str(&comps.join("/"));
        if let Some(t) = &tag { s.push(':'); s.push_str(t); }
        if let Some(d) = &digest { s.push_str("@sha256:"); s.push_str(d); }
        let r = Reference::parse(&s).unwrap();
        prop_assert_eq!(&Reference::parse(&r.canonical()).unwrap(), &r);
        // Docker's familiar form drops `docker.io/`, so a first component that
        // looks like a host ("0.a/x") reads back as a registry: that is Docker's
        // behaviour too, and only those cases are exempt.
        let first = r.familiar_name().split('/').next().unwrap_or_default().to_owned();
        if r.registry() != DEFAULT_REGISTRY || !(first.contains(['.', ':']) || first == "localhost") || !r.familiar_name().contains('/') {
            prop_assert_eq!(&Reference::parse(&r.familiar()).unwrap(), &r);
        }
        prop_assert_eq!(&Reference::parse(&r.to_string()).unwrap(), &r);
        prop_assert_eq!(r.tag(), tag.as_deref());
        let pull = r.pull_reference();
        prop_assert!(pull.tag().is_some() != pull.digest().is_some());
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,80}") {
        let _ = Reference::parse(&s);
    }
}
