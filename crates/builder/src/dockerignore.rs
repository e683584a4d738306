//! `.dockerignore`: which paths of the build context a build never sees.
//!
//! One pattern per line; `#` starts a comment line; blank lines are ignored;
//! patterns are cleaned (`./a/../b` is `b`, a leading `/` is dropped); `*`
//! matches within one path component, `?` one character, `[a-z]` a class,
//! `**` any number of components; `!pattern` re-includes. The last matching
//! pattern decides. A directory that is excluded excludes what is below it,
//! unless an exception could re-include something inside.

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dockerignore {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    parts: Vec<String>,
    exclude: bool,
}

impl Dockerignore {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        for line in text.lines() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let (exclude, pat) = match t.strip_prefix('!') {
                Some(rest) => (false, rest.trim()),
                None => (true, t),
            };
            let parts = clean(pat);
            if parts.is_empty() {
                continue;
            }
            rules.push(Rule { parts, exclude });
        }
        Dockerignore { rules }
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded.
    pub fn excluded(&self, path: &str) -> bool {
        self.excluded_bytes(path.as_bytes())
    }

    /// [`Dockerignore::excluded`] of a path whose names may not be UTF-8.
    pub fn excluded_path(&self, path: &std::path::Path) -> bool {
        use std::os::unix::ffi::OsStrExt as _;
        self.excluded_bytes(path.as_os_str().as_bytes())
    }

    fn excluded_bytes(&self, path: &[u8]) -> bool {
        let parts = clean_bytes(path);
        if parts.is_empty() {
            return false;
        }
        let mut excluded = false;
        for r in &self.rules {
            // A path is also excluded when one of its parent directories is.
            let hit = (1..=parts.len()).any(|n| matches(&r.parts, &parts[..n]));
            if hit {
                excluded = r.exclude;
            }
        }
        excluded
    }

    /// Whether a walk may skip the excluded directory `dir` entirely: no
    /// exception pattern could re-include anything below it.
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        self.excluded(dir) && !self.rules.iter().any(|r| !r.exclude)
    }

    /// [`Dockerignore::can_skip_dir`] of a path whose names may not be UTF-8.
    pub fn can_skip_dir_path(&self, dir: &std::path::Path) -> bool {
        self.excluded_path(dir) && !self.rules.iter().any(|r| !r.exclude)
    }
}

fn clean(p: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_owned()),
        }
    }
    out
}

/// [`clean`] of raw path bytes.
fn clean_bytes(p: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in p.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether the pattern components match the path components exactly.
/// `**` is a star over components; the match backtracks only to the last
/// star (the classic greedy algorithm), so it takes at most
/// `pattern × path` steps whatever the pattern.
fn matches(pat: &[String], path: &[&[u8]]) -> bool {
    star_match(pat.len(), path.len(), |i| pat[i] == "**", |i, j| glob(pat[i].as_bytes(), path[j]))
}

/// The greedy wildcard match over `n` pattern items and `m` subject items:
/// `is_star(i)` says whether pattern item `i` matches any run, `one(i, j)`
/// whether pattern item `i` matches subject item `j` alone.
fn star_match(n: usize, m: usize, is_star: impl Fn(usize) -> bool, one: impl Fn(usize, usize) -> bool) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while si < m {
        if pi < n && is_star(pi) {
            last_star = Some((pi, si));
            pi += 1;
        } else if pi < n && one(pi, si) {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = last_star {
            // Let the last star take one more item, and try again after it.
            last_star = Some((sp, ss + 1));
            pi = sp + 1;
            si = ss + 1;
        } else {
            return false;
        }
    }
    (pi..n).all(is_star)
}

/// Whether one path component matches one pattern component.
#[cfg(test)]
pub(crate) fn glob_component(pattern: &str, name: &str) -> bool {
    glob(pattern.as_bytes(), name.as_bytes())
}

/// [`glob_component`] of a name that may not be UTF-8.
pub(crate) fn glob_component_bytes(pattern: &str, name: &[u8]) -> bool {
    glob(pattern.as_bytes(), name)
}

/// One item of a component pattern.
enum Tok<'a> {
    Star,
    Any,
    /// A class: its body (ranges, members) and whether it is negated.
    Class(&'a [u8], bool),
    Lit(u8),
}

impl Tok<'_> {
    fn one(&self, c: u8) -> bool {
        match self {
            Tok::Star => true,
            Tok::Any => true,
            Tok::Lit(l) => *l == c,
            Tok::Class(class, negate) => {
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == b'-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != *negate
            }
        }
    }
}

fn tokens(p: &[u8]) -> Vec<Tok<'_>> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'*' => {
                // Runs of stars are one star.
                if !matches!(out.last(), Some(Tok::Star)) {
                    out.push(Tok::Star);
                }
                i += 1;
            }
            b'?' => {
                out.push(Tok::Any);
                i += 1;
            }
            b'[' => match p[i + 1..].iter().position(|&b| b == b']') {
                Some(len) => {
                    let mut class = &p[i + 1..i + 1 + len];
                    let negate = matches!(class.first(), Some(b'^' | b'!'));
                    if negate {
                        class = &class[1..];
                    }
                    out.push(Tok::Class(class, negate));
                    i += len + 2;
                }
                // No closing bracket: a literal `[`.
                None => {
                    out.push(Tok::Lit(b'['));
                    i += 1;
                }
            },
            b'\\' if i + 1 < p.len() => {
                out.push(Tok::Lit(p[i + 1]));
                i += 2;
            }
            c => {
                out.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    out
}

/// `*`, `?`, `[...]` (with `^`/`!` negation and ranges), `\\` escapes, within
/// one component; in at most `pattern × name` steps.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let toks = tokens(p);
    star_match(toks.len(), s.len(), |i| matches!(toks[i], Tok::Star), |i, j| toks[i].one(s[j]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_exceptions_and_directories() {
        let d = Dockerignore::parse(
            "# comment\n\n*.log\n/tmp\n**/node_modules\n!keep.log\ndocs/*.md\n!docs/README.md\nbuild/\n[a-c]?.txt\n",
        );
        for (path, excluded) in [
            ("app.log", true),
            ("keep.log", false),
            ("sub/app.log", false),
            ("tmp", true),
            ("tmp/x/y", true),
            ("a/b/node_modules/x", true),
            ("node_modules", true),
            ("docs/guide.md", true),
            ("docs/README.md", false),
            ("docs/sub/guide.md", false),
            ("build/out.o", true),
            ("b1.txt", true),
            ("d1.txt", false),
            ("src/main.rs", false),
            ("./app.log", true),
        ] {
            assert_eq!(d.excluded(path), excluded, "{path}");
        }
        assert!(!d.can_skip_dir("tmp"), "exceptions exist: the walk must look inside");
        assert!(Dockerignore::parse("tmp\n").can_skip_dir("tmp"));
        assert!(!Dockerignore::parse("").excluded("anything"));
    }

    #[test]
    fn pathological_patterns_take_linear_time() {
        let start = std::time::Instant::now();
        let name = "a".repeat(200);
        assert!(!glob_component("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", &name));
        assert!(glob_component("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a", &name));
        let deep = vec!["a"; 60].join("/") + "/z";
        let d = Dockerignore::parse("**/a/**/a/**/a/**/a/**/a/**/a/**/a/**/b\n");
        assert!(!d.excluded(&deep));
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "{:?}", start.elapsed());
        // The algorithm still matches what globs match.
        for (p, s, want) in [
            ("a*b?c", "axxbyc", true),
            ("a*b?c", "abc", false),
            ("*.[ch]", "x.c", true),
            ("*.[!ch]", "x.c", false),
            ("\\*x", "*x", true),
            ("[", "[", true),
            ("**", "anything", true),
            ("", "", true),
        ] {
            assert_eq!(glob_component(p, s), want, "{p} vs {s}");
        }
    }
}
