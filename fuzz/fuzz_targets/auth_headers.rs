//! Properties: `WWW-Authenticate` and `Link` parsing never panic on arbitrary
//! input, and values written into a well-formed header (quoted, escaped) come
//! back exactly: realm, service and scope of a Bearer challenge followed by a
//! Basic one; the `rel="next"` target of a Link header.
#![no_main]

use cargohold_registry::{parse_link_next, parse_www_authenticate};
use libfuzzer_sys::fuzz_target;

fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = parse_www_authenticate(s);
    let _ = parse_link_next(s);

    let mut parts = s.splitn(3, '\u{1}');
    let (realm, service, scope) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let header = format!("Bearer realm={},service={},scope={}, Basic realm={}", quote(realm), quote(service), quote(scope), quote(service));
    let c = parse_www_authenticate(&header);
    assert_eq!(c.len(), 2, "{header:?} -> {c:?}");
    assert_eq!(c[0].scheme, "bearer");
    assert_eq!(c[0].params.get("realm").map(String::as_str), Some(realm), "{header:?}");
    assert_eq!(c[0].params.get("service").map(String::as_str), Some(service), "{header:?}");
    assert_eq!(c[0].params.get("scope").map(String::as_str), Some(scope), "{header:?}");
    assert_eq!(c[1].params.get("realm").map(String::as_str), Some(service), "{header:?}");

    if !realm.contains(['<', '>', ',', ';']) && !realm.is_empty() {
        let link = format!("<{realm}>; rel=\"next\"");
        assert_eq!(parse_link_next(&link).as_deref(), Some(realm), "{link:?}");
    }
});
