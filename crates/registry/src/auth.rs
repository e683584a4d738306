//! `WWW-Authenticate` challenges.

use std::collections::BTreeMap;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lowercased).
    pub scheme: String,
    /// Parameters (`realm`, `service`, `scope`...), keys lowercased.
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` value (RFC 7235): several challenges, each a
/// scheme then `key=value` or `key="quoted, with \"escapes\""` parameters.
/// Scopes like `repository:host:5000/a/b:pull,push` survive intact.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            return out;
        }
        let start = i;
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'=' | b',') {
            i += 1;
        }
        let token = &header[start..i];
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            // A parameter of the current challenge.
            i = j + 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch = header[i..].chars().next().expect("in bounds");
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1;
                v
            } else {
                let s = i;
                while i < b.len() && b[i] != b',' && b[i] != b' ' {
                    i += 1;
                }
                header[s..i].to_owned()
            };
            out.last_mut().expect("checked").params.insert(token.to_ascii_lowercase(), value);
        } else if !token.is_empty() {
            out.push(Challenge { scheme: token.to_ascii_lowercase(), params: BTreeMap::new() });
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_with_port_scopes_and_multiple_challenges() {
        let h = r#"Bearer realm="https://auth.example.com:8443/token",service="registry.example.com:5000",scope="repository:registry.example.com:5000/team/app:pull,push", Basic realm="x\"y""#;
        let c = parse_www_authenticate(h);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.example.com:8443/token");
        assert_eq!(c[0].params["scope"], "repository:registry.example.com:5000/team/app:pull,push");
        assert_eq!(c[1].scheme, "basic");
        assert_eq!(c[1].params["realm"], "x\"y");
        let c = parse_www_authenticate("Basic realm=registry");
        assert_eq!(c[0].params["realm"], "registry");
        assert!(parse_www_authenticate("").is_empty());
    }
}
