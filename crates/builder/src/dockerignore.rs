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
        let parts = clean(path);
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

/// Whether the pattern components match the path components exactly.
fn matches(pat: &[String], path: &[String]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| matches(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((p, prest)) => glob(first.as_bytes(), p.as_bytes()) && matches(rest, prest),
            None => false,
        },
    }
}

/// Whether one path component matches one pattern component.
pub(crate) fn glob_component(pattern: &str, name: &str) -> bool {
    glob(pattern.as_bytes(), name.as_bytes())
}

/// `*`, `?`, `[...]` (with `^`/`!` negation and ranges), `\` escapes, within one component.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|k| glob(&p[1..], &s[k..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(end) = p.iter().skip(1).position(|&b| b == b']').map(|i| i + 1) else {
                return !s.is_empty() && s[0] == b'[' && glob(&p[1..], &s[1..]);
            };
            let Some(&c) = s.first() else { return false };
            let mut class = &p[1..end];
            let negate = matches!(class.first(), Some(b'^' | b'!'));
            if negate {
                class = &class[1..];
            }
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
            hit != negate && glob(&p[end + 1..], &s[1..])
        }
        Some(b'\\') if p.len() > 1 => !s.is_empty() && s[0] == p[1] && glob(&p[2..], &s[1..]),
        Some(&c) => !s.is_empty() && s[0] == c && glob(&p[1..], &s[1..]),
    }
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
}
