//! DUCC wish lists (YAML, version 1) and the output-reference template.

use cargohold_image_core::{Digest, ImageUrl};

use crate::error::{Error, Result};

/// The default thin-image name: the input's name with `_thin`.
pub const DEFAULT_OUTPUT_FORMAT: &str = "$(scheme)://$(registry)/$(repository)_thin:$(tag)";

/// A parsed wish list.
#[derive(Debug, Clone)]
pub struct Wishlist {
    /// The account that pushes thin images.
    pub user: String,
    /// The publish target: a directory (local backend) or a CernVM-FS repository name.
    pub cvmfs_repo: String,
    /// Template of thin-image references (see [`expand_output`]).
    pub output_format: String,
    /// The inputs that parsed, in order.
    pub inputs: Vec<WishInput>,
    /// Inputs that did not parse, with their line: reported, then skipped.
    pub problems: Vec<WishProblem>,
    /// `ignoreErrors`: patterns (Go's `filepath.Match`, as DUCC) of inputs
    /// whose failures are reported but do not fail the run.
    pub ignore_errors: Vec<String>,
}

impl Wishlist {
    /// Whether failures of an image are ignored: the input as written, or
    /// the concrete image (`registry/repository:tag`), matches a pattern.
    pub fn ignores(&self, input: &str, image: &str) -> bool {
        self.ignore_errors.iter().any(|p| go_match(p, input).unwrap_or(false) || go_match(p, image).unwrap_or(false))
    }
}

/// Go's `filepath.Match`: `*` is any run of non-`/` characters, `?` one
/// non-`/` character, `[...]` a class (ranges, `^` negates), `\\` escapes.
/// An invalid pattern is an error (its reason).
pub fn go_match(pattern: &str, name: &str) -> std::result::Result<bool, String> {
    fn class(p: &[char], c: char) -> std::result::Result<(bool, usize), String> {
        // p starts after '['; returns (matched, chars consumed incl. ']').
        let mut i = 0;
        let negate = p.first() == Some(&'^');
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        loop {
            let Some(&ch) = p.get(i) else { return Err("unclosed [".into()) };
            if ch == ']' && !first {
                return Ok((matched != negate, i + 1));
            }
            first = false;
            let lo = if ch == '\\' {
                i += 1;
                *p.get(i).ok_or("a trailing \\")?
            } else {
                ch
            };
            i += 1;
            let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|c| *c != ']') {
                i += 1;
                let h = if p[i] == '\\' {
                    i += 1;
                    *p.get(i).ok_or("a trailing \\")?
                } else {
                    p[i]
                };
                i += 1;
                h
            } else {
                lo
            };
            if lo <= c && c <= hi {
                matched = true;
            }
        }
    }
    fn go(p: &[char], n: &[char]) -> std::result::Result<bool, String> {
        let (mut pi, mut ni) = (0, 0);
        while pi < p.len() {
            match p[pi] {
                '*' => {
                    let rest = &p[pi + 1..];
                    for k in ni..=n.len() {
                        if k > ni && n[k - 1] == '/' {
                            break;
                        }
                        if go(rest, &n[k..])? {
                            return Ok(true);
                        }
                    }
                    // Validate the rest even when nothing matched.
                    go(rest, &[])?;
                    return Ok(false);
                }
                '?' => {
                    if ni >= n.len() || n[ni] == '/' {
                        return Ok(false);
                    }
                    pi += 1;
                    ni += 1;
                }
                '[' => {
                    let Some(&c) = n.get(ni) else {
                        class(&p[pi + 1..], '\0')?;
                        return Ok(false);
                    };
                    let (ok, used) = class(&p[pi + 1..], c)?;
                    if !ok || c == '/' {
                        return Ok(false);
                    }
                    pi += 1 + used;
                    ni += 1;
                }
                '\\' => {
                    let lit = *p.get(pi + 1).ok_or("a trailing \\")?;
                    if n.get(ni) != Some(&lit) {
                        return Ok(false);
                    }
                    pi += 2;
                    ni += 1;
                }
                c => {
                    if n.get(ni) != Some(&c) {
                        return Ok(false);
                    }
                    pi += 1;
                    ni += 1;
                }
            }
        }
        Ok(ni == n.len())
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    go(&p, &n)
}

/// The patterns of a `DUCC_IGNORE_ERRORS_FILE` (YAML: `ignoreErrors: [...]`),
/// checked; `source` names it in errors.
pub fn parse_ignore_errors(text: &str, source: &str) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(rename = "ignoreErrors", default)]
        ignore_errors: Vec<String>,
    }
    let bad = |reason: String| Error::Wishlist { path: source.into(), reason };
    let f: File = serde_yaml_ng::from_str(text).map_err(|e| bad(e.to_string()))?;
    check_patterns(&f.ignore_errors).map_err(bad)?;
    Ok(f.ignore_errors)
}

/// The `wishlists:` of DUCC's prune config (`ducc-prune.yaml`); `source`
/// names it in errors.
pub fn parse_prune_config(text: &str, source: &str) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PruneConfig {
        wishlists: Vec<String>,
    }
    let c: PruneConfig =
        serde_yaml_ng::from_str(text).map_err(|e| Error::Wishlist { path: source.into(), reason: e.to_string() })?;
    Ok(c.wishlists)
}

/// The `images:` YAML DUCC's `expand-wildcard -o` writes.
pub fn expanded_yaml(images: &[String]) -> String {
    #[derive(serde::Serialize)]
    struct Expanded<'a> {
        images: &'a [String],
    }
    serde_yaml_ng::to_string(&Expanded { images }).expect("a list of strings serializes")
}

fn check_patterns(patterns: &[String]) -> std::result::Result<(), String> {
    for p in patterns {
        go_match(p, "").map_err(|why| format!("ignoreErrors: {p:?} is not a pattern: {why}"))?;
    }
    Ok(())
}

/// One image (or tag pattern) to convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WishInput {
    /// Line of the wish list (1-based).
    pub line: usize,
    /// The entry as written.
    pub text: String,
    /// The parsed URL.
    pub url: ImageUrl,
}

/// An input entry that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WishProblem {
    /// Line of the wish list (1-based).
    pub line: usize,
    /// The entry as written.
    pub text: String,
    /// Why it was skipped.
    pub reason: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: serde_yaml_ng::Value,
    user: Option<String>,
    cvmfs_repo: Option<String>,
    output_format: Option<String>,
    input: Option<Vec<serde_yaml_ng::Value>>,
    #[serde(rename = "ignoreErrors")]
    ignore_errors: Option<Vec<String>>,
}

/// Parses a wish list. `source` names it in errors. The whole list is refused
/// when its structure is wrong (version other than 1, missing `cvmfs_repo` or
/// `input`); single entries that do not parse become [`WishProblem`]s.
pub fn parse(text: &str, source: &str) -> Result<Wishlist> {
    let bad = |reason: String| Error::Wishlist { path: source.into(), reason };
    let raw: Raw = serde_yaml_ng::from_str(text).map_err(|e| {
        let at = e.location().map(|l| format!("line {}: ", l.line())).unwrap_or_default();
        bad(format!("{at}{e}"))
    })?;
    let version = match &raw.version {
        serde_yaml_ng::Value::Number(n) => n.as_u64(),
        serde_yaml_ng::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    if version != Some(1) {
        return Err(bad(format!("version must be 1, found {}", yaml_text(&raw.version))));
    }
    let cvmfs_repo = raw.cvmfs_repo.filter(|r| !r.trim().is_empty()).ok_or_else(|| bad("no cvmfs_repo".into()))?;
    let entries = raw.input.ok_or_else(|| bad("no input list".into()))?;
    let output_format = raw.output_format.unwrap_or_else(|| DEFAULT_OUTPUT_FORMAT.into());
    check_template(&output_format).map_err(|r| bad(format!("output_format: {r}")))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut search_from = lines.iter().position(|l| l.trim_start().starts_with("input")).unwrap_or(0);
    let mut inputs = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        let text = yaml_text(&entry);
        // The line of this entry: the next line from where the last one was found.
        let line = match lines.iter().skip(search_from).position(|l| !text.is_empty() && l.contains(text.as_str())) {
            Some(i) => {
                search_from += i + 1;
                search_from
            }
            None => search_from + 1,
        };
        let parsed = match &entry {
            serde_yaml_ng::Value::String(s) => ImageUrl::parse(s.trim()).map_err(|e| e.to_string()),
            _ => Err("is not a string".into()),
        };
        match parsed {
            Ok(url) => inputs.push(WishInput { line, text, url }),
            Err(reason) => problems.push(WishProblem { line, text, reason }),
        }
    }
    let ignore_errors = raw.ignore_errors.unwrap_or_default();
    check_patterns(&ignore_errors).map_err(bad)?;
    Ok(Wishlist { user: raw.user.unwrap_or_default(), cvmfs_repo, output_format, inputs, problems, ignore_errors })
}

fn yaml_text(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).map(|s| s.trim().to_owned()).unwrap_or_default(),
    }
}

const VARIABLES: &[&str] = &["scheme", "registry", "repository", "tag", "digest", "reference", "image"];

fn check_template(t: &str) -> std::result::Result<(), String> {
    let mut rest = t;
    while let Some(i) = rest.find("$(") {
        let after = &rest[i + 2..];
        let end = after.find(')').ok_or_else(|| format!("unclosed $( in {t:?}"))?;
        let name = &after[..end];
        if !VARIABLES.contains(&name) {
            return Err(format!("unknown variable $({name}); known: {}", VARIABLES.join(", ")));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Fills the output template for one concrete image: `$(scheme)`,
/// `$(registry)`, `$(repository)`, `$(tag)`, `$(digest)`, `$(reference)` (the
/// tag, else the digest) and `$(image)` (repository plus `:tag` or `@digest`).
pub fn expand_output(template: &str, url: &ImageUrl, tag: Option<&str>, digest: Option<&Digest>) -> String {
    let digest = digest.map(Digest::to_string).unwrap_or_default();
    let tag = tag.unwrap_or_default();
    let reference = if tag.is_empty() { digest.clone() } else { tag.to_owned() };
    let image =
        if tag.is_empty() { format!("{}@{digest}", url.repository) } else { format!("{}:{tag}", url.repository) };
    template
        .replace("$(scheme)", &url.scheme)
        .replace("$(registry)", &url.registry)
        .replace("$(repository)", &url.repository)
        .replace("$(tag)", tag)
        .replace("$(digest)", &digest)
        .replace("$(reference)", &reference)
        .replace("$(image)", &image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ducc_wishlists_and_reports_bad_lines() {
        let text = "version: 1\nuser: smosciat\ncvmfs_repo: unpacked.example.org\noutput_format: '$(scheme)://registry.example.org/thin/$(image)'\ninput:\n  - 'https://registry.hub.docker.com/library/fedora:latest'\n  - 'https://registry.example/Bad/Repo:1'\n  - 'https://127.0.0.1:5000/team/app:*'\n";
        let w = parse(text, "w.yaml").unwrap();
        assert_eq!(w.user, "smosciat");
        assert_eq!(w.cvmfs_repo, "unpacked.example.org");
        assert_eq!(w.inputs.len(), 2);
        assert_eq!(w.inputs[0].line, 6);
        assert_eq!(w.inputs[1].line, 8);
        assert!(w.inputs[1].url.is_tag_pattern());
        assert_eq!(w.problems.len(), 1);
        assert_eq!(w.problems[0].line, 7);
        let out = expand_output(&w.output_format, &w.inputs[0].url, Some("latest"), None);
        assert_eq!(out, "https://registry.example.org/thin/library/fedora:latest");
    }

    #[test]
    fn ignore_errors_match_as_ducc_does() {
        let text = "version: 1\ncvmfs_repo: r\ninput:\n  - 'https://h/a/b:1'\nignoreErrors:\n  - 'https://h/a/*'\n  - 'h/c/d:[0-9]*'\n";
        let w = parse(text, "w.yaml").unwrap();
        assert!(w.ignores("https://h/a/b:1", "h/a/b:1"));
        assert!(w.ignores("https://h/c/d:*", "h/c/d:7.1"));
        assert!(!w.ignores("https://h/c/d:*", "h/c/d:x"));
        assert!(!w.ignores("https://h/a/b/c:1", "h/a/b/c:1"), "* stops at /");
        assert_eq!(go_match("a?c", "abc"), Ok(true));
        assert_eq!(go_match("[^a]bc", "abc"), Ok(false));
        assert_eq!(go_match("\\*x", "*x"), Ok(true));
        assert!(go_match("[a", "a").is_err());
        let e = parse("version: 1\ncvmfs_repo: r\ninput: []\nignoreErrors: ['[z']\n", "w.yaml").unwrap_err();
        assert!(e.to_string().contains("ignoreErrors") && e.to_string().contains("[z"), "{e}");
        assert_eq!(parse_ignore_errors("ignoreErrors: ['x/*']\n", "f").unwrap(), ["x/*"]);
        assert!(parse_ignore_errors("ignoreErrorz: []\n", "f").is_err());
    }

    #[test]
    fn refuses_wrong_versions_and_shapes() {
        for (text, needle) in [
            ("version: 2\ncvmfs_repo: r\ninput: []\n", "version must be 1"),
            ("version: 1\ninput: []\n", "cvmfs_repo"),
            ("version: 1\ncvmfs_repo: r\n", "input"),
            ("version: 1\ncvmfs_repo: r\ninput: [\n", "w.yaml"),
            ("version: 1\ncvmfs_repo: r\noutput_format: '$(nope)'\ninput: []\n", "unknown variable"),
            ("version: 1\ncvmfs_repo: r\nimput: []\n", "imput"),
        ] {
            let e = parse(text, "w.yaml").unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("w.yaml"), "{text:?}: {e}");
        }
        assert_eq!(
            expand_output(DEFAULT_OUTPUT_FORMAT, &ImageUrl::parse("http://h:5000/a/b:1").unwrap(), Some("1"), None),
            "http://h:5000/a/b_thin:1"
        );
    }
}
