//! The reference grammar of `distribution/reference` (regexp.go), transcribed
//! pattern by pattern so that matching and capture semantics (leftmost-first, as
//! in Go's RE2) are the same. Go's `\w` is ASCII-only, hence the explicit class.

use std::sync::LazyLock;

use regex::Regex;

const ALPHANUMERIC: &str = "[a-z0-9]+";
const SEPARATOR: &str = "(?:[._]|__|[-]+)";
const DOMAIN_NAME_COMPONENT: &str = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const OPTIONAL_PORT: &str = "(?::[0-9]+)?";
const TAG: &str = "[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}";
const DIGEST: &str = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}";
const IPV6: &str = r"\[(?:[a-fA-F0-9:]+)\]";

fn domain_and_port() -> String {
    let domain_name = format!(r"{DOMAIN_NAME_COMPONENT}(?:\.{DOMAIN_NAME_COMPONENT})*");
    format!("(?:{domain_name}|{IPV6}){OPTIONAL_PORT}")
}

fn remote_name() -> String {
    let path_component = format!("{ALPHANUMERIC}(?:{SEPARATOR}{ALPHANUMERIC})*");
    format!("{path_component}(?:/{path_component})*")
}

/// `^(name)(?::(tag))?(?:@(digest))?$`
pub(crate) static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let name = format!("(?:{}/)?{}", domain_and_port(), remote_name());
    Regex::new(&format!("^({name})(?::({TAG}))?(?:@({DIGEST}))?$")).expect("reference pattern is a constant")
});

/// `^(?:(domain)/)?(remote-name)$`
pub(crate) static ANCHORED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("^(?:({})/)?({})$", domain_and_port(), remote_name())).expect("name pattern is a constant")
});

/// `^remote-name$`: a repository path with no registry part.
pub(crate) static ANCHORED_REMOTE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^{}$", remote_name())).expect("remote-name pattern is a constant"));

/// `^[\w][\w.-]{0,127}$`
pub(crate) static ANCHORED_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^{TAG}$")).expect("tag pattern is a constant"));

/// A bare 64-hex identifier, which Docker refuses as a repository name.
pub(crate) fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `s` is a syntactically valid domain (host and optional port).
pub(crate) fn is_domain(s: &str) -> bool {
    static DOMAIN: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(&format!("^{}$", domain_and_port())).expect("domain pattern is a constant"));
    DOMAIN.is_match(s)
}
