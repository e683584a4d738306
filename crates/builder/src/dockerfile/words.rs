//! Words of instruction arguments the way Docker's shell lexer reads them:
//! quotes removed, the escape character honoured, and variables substituted:
//! `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`,
//! `${VAR+alt}`, `${VAR:?message}`, `${VAR?message}` (nested words expand too),
//! `${VAR#pattern}`, `${VAR##pattern}`, `${VAR%pattern}`, `${VAR%%pattern}`,
//! `${VAR/pattern/replacement}`, `${VAR//pattern/replacement}`, as BuildKit's
//! lexer reads them: positional (`$1`) and special (`$@`, `$$`, ...)
//! parameters are never set and expand to nothing.
//! Single quotes keep everything literal; double quotes still expand.

/// The most a word may expand to: a chain of `ARG`s that double each other
/// stops here with an error instead of exhausting memory.
pub const MAX_EXPANSION: usize = 1 << 20;

fn capped(out: &mut String, more: &str) -> Result<(), WordError> {
    if out.len() + more.len() > MAX_EXPANSION {
        return Err(WordError(format!("the word expands to more than {MAX_EXPANSION} bytes")));
    }
    out.push_str(more);
    Ok(())
}

/// POSIX's special parameters (never set in a Dockerfile: they expand to nothing).
fn is_special(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// A shell pattern (`*`, `?`, `\\` escapes) as an anchored regex; `*` is
/// lazy unless `greedy`. The regex crate matches in linear time.
fn shell_pattern(pattern: &str, greedy: bool) -> Result<regex::Regex, WordError> {
    pattern_regex(pattern, if greedy { "(?s:.*)" } else { "(?s:.*?)" }, "^")
}

/// A shell pattern anywhere in the value (greedy, as `${v/p/r}`).
fn shell_pattern_unanchored(pattern: &str) -> Result<regex::Regex, WordError> {
    pattern_regex(pattern, "(?s:.*)", "")
}

fn pattern_regex(pattern: &str, star: &str, anchor: &str) -> Result<regex::Regex, WordError> {
    let mut out = String::from(anchor);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(star),
            '?' => out.push_str("(?s:.)"),
            '\\' => match chars.next() {
                Some(n @ ('*' | '?' | '\\')) => out.push_str(&regex::escape(&n.to_string())),
                Some(n) => return Err(WordError(format!("invalid escape '\\{n}' in pattern {pattern:?}"))),
                None => return Err(WordError(format!("a trailing escape in pattern {pattern:?}"))),
            },
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    regex::RegexBuilder::new(&out)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| WordError(format!("invalid pattern ({pattern}) in substitution: {e}")))
}

fn trim_prefix(re: &regex::Regex, value: &str) -> String {
    match re.find(value) {
        Some(m) => value[m.end()..].to_owned(),
        None => value.to_owned(),
    }
}

/// A pattern reversed, its escapes kept in front of what they escape.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            units.push(format!("\\{}", chars[i + 1]));
            i += 2;
        } else {
            units.push(chars[i].to_string());
            i += 1;
        }
    }
    units.into_iter().rev().collect()
}

/// A word could not be processed (the message says why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WordError(pub String);

/// Splits `text` into words on unquoted whitespace, processing each
/// (quotes removed, variables substituted from `vars`).
pub fn words(text: &str, escape: char, vars: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, WordError> {
    let mut lexer = Lexer { chars: text.chars().collect(), pos: 0, escape, vars };
    let mut out = Vec::new();
    loop {
        while lexer.peek().is_some_and(char::is_whitespace) {
            lexer.pos += 1;
        }
        if lexer.peek().is_none() {
            return Ok(out);
        }
        out.push(lexer.word(&|c| c.is_whitespace())?);
    }
}

/// Processes `text` as one word (whitespace kept): quotes removed, variables substituted.
pub fn word(text: &str, escape: char, vars: &dyn Fn(&str) -> Option<String>) -> Result<String, WordError> {
    let mut lexer = Lexer { chars: text.chars().collect(), pos: 0, escape, vars };
    lexer.word(&|_| false)
}

/// Substitutes variables in `text` and nothing else (quotes stay, as in a
/// heredoc body): `$VAR`, `${VAR...}`; the escape character before `$`
/// keeps a literal `$`.
pub fn expand(text: &str, escape: char, vars: &dyn Fn(&str) -> Option<String>) -> Result<String, WordError> {
    let mut lexer = Lexer { chars: text.chars().collect(), pos: 0, escape, vars };
    let mut out = String::new();
    while let Some(c) = lexer.peek() {
        lexer.pos += 1;
        match c {
            e if e == escape && lexer.peek() == Some('$') => {
                out.push('$');
                lexer.pos += 1;
            }
            '$' => capped(&mut out, &lexer.dollar()?)?,
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `ENV`/`LABEL`/`ARG`-style pairs: `k=v k2="v 2"`, or the legacy `k v with spaces`
/// (when `legacy` and the first word has no `=`). Values are processed.
pub fn key_values(
    text: &str,
    escape: char,
    vars: &dyn Fn(&str) -> Option<String>,
    legacy: bool,
) -> Result<Vec<(String, String)>, WordError> {
    let first = text.split_whitespace().next().unwrap_or_default();
    if legacy && !first.contains('=') {
        let rest = text.trim_start()[first.len()..].trim();
        if rest.is_empty() {
            return Err(WordError(format!("{first} needs a value (NAME=VALUE or NAME VALUE)")));
        }
        return Ok(vec![(first.to_owned(), word(rest, escape, vars)?)]);
    }
    let mut out = Vec::new();
    for w in words(text, escape, &|n| vars(n))? {
        let (k, v) = w.split_once('=').ok_or_else(|| WordError(format!("{w:?} is not NAME=VALUE")))?;
        if k.is_empty() {
            return Err(WordError(format!("{w:?} has an empty name")));
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    vars: &'a dyn Fn(&str) -> Option<String>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// Reads until an unquoted character for which `stop` holds.
    fn word(&mut self, stop: &dyn Fn(char) -> bool) -> Result<String, WordError> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if stop(c) {
                break;
            }
            self.pos += 1;
            match c {
                '\'' => loop {
                    match self.peek() {
                        None => return Err(WordError("unterminated single quote".into())),
                        Some('\'') => {
                            self.pos += 1;
                            break;
                        }
                        Some(q) => {
                            out.push(q);
                            self.pos += 1;
                        }
                    }
                },
                '"' => loop {
                    match self.peek() {
                        None => return Err(WordError("unterminated double quote".into())),
                        Some('"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(e) if e == self.escape => {
                            self.pos += 1;
                            match self.peek() {
                                Some(n @ ('"' | '$')) => {
                                    out.push(n);
                                    self.pos += 1;
                                }
                                Some(n) if n == self.escape => {
                                    out.push(n);
                                    self.pos += 1;
                                }
                                _ => out.push(e),
                            }
                        }
                        Some('$') => {
                            self.pos += 1;
                            capped(&mut out, &self.dollar()?)?;
                        }
                        Some(q) => {
                            out.push(q);
                            self.pos += 1;
                        }
                    }
                },
                e if e == self.escape => match self.peek() {
                    Some(n) => {
                        out.push(n);
                        self.pos += 1;
                    }
                    None => out.push(e),
                },
                '$' => capped(&mut out, &self.dollar()?)?,
                c => out.push(c),
            }
        }
        Ok(out)
    }

    /// After a `$`: the substituted value (or a literal `$`).
    fn dollar(&mut self) -> Result<String, WordError> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                match self.peek() {
                    None => return Err(WordError("syntax error: missing '}'".into())),
                    Some('{' | '}' | ':') => return Err(WordError("syntax error: bad substitution".into())),
                    _ => {}
                }
                let name = self.name();
                if name.is_empty() {
                    return Err(WordError("bad substitution: ${} needs a variable name".into()));
                }
                let value = (self.vars)(&name);
                let Some(op) = self.peek() else { return Err(WordError("syntax error: missing '}'".into())) };
                self.pos += 1;
                match op {
                    '}' => Ok(value.unwrap_or_default()),
                    ':' | '-' | '+' | '?' => {
                        let colon = op == ':';
                        let op = if colon {
                            let o = self.peek().ok_or_else(|| WordError("syntax error: missing '}'".into()))?;
                            self.pos += 1;
                            o
                        } else {
                            op
                        };
                        if !matches!(op, '-' | '+' | '?') {
                            return Err(WordError(format!(
                                "unsupported modifier ({}{op}) in substitution",
                                if colon { ":" } else { "" }
                            )));
                        }
                        let arg = self.braced_word()?;
                        // With ':' an empty value counts as unset.
                        let set = match &value {
                            Some(v) => !(colon && v.is_empty()),
                            None => false,
                        };
                        Ok(match op {
                            '-' => {
                                if set {
                                    value.unwrap_or_default()
                                } else {
                                    arg
                                }
                            }
                            '+' => {
                                if set {
                                    arg
                                } else {
                                    String::new()
                                }
                            }
                            _ => {
                                if set {
                                    value.unwrap_or_default()
                                } else {
                                    let why = if !arg.is_empty() {
                                        arg
                                    } else if value.is_some() {
                                        "is not allowed to be empty".to_owned()
                                    } else {
                                        "is not allowed to be unset".to_owned()
                                    };
                                    return Err(WordError(format!("{name}: {why}")));
                                }
                            }
                        })
                    }
                    '#' | '%' => {
                        // `#`/`%` remove the shortest matching prefix/suffix,
                        // `##`/`%%` the longest.
                        let greedy = self.peek() == Some(op);
                        if greedy {
                            self.pos += 1;
                        }
                        let pattern = self.raw_until(&['}'])?;
                        self.pos += 1;
                        let value = value.unwrap_or_default();
                        let re = shell_pattern(&pattern, greedy)?;
                        Ok(if op == '#' {
                            trim_prefix(&re, &value)
                        } else {
                            // The shortest rightmost match: the leftmost on the reversed strings.
                            let rev_re = shell_pattern(&reverse_pattern(&pattern), greedy)?;
                            let rev: String = value.chars().rev().collect();
                            trim_prefix(&rev_re, &rev).chars().rev().collect()
                        })
                    }
                    '/' => {
                        let all = self.peek() == Some('/');
                        if all {
                            self.pos += 1;
                        }
                        let pattern = self.raw_until(&['/'])?;
                        self.pos += 1;
                        let replacement = self.raw_until(&['}'])?;
                        self.pos += 1;
                        let value = value.unwrap_or_default();
                        let re = shell_pattern_unanchored(&pattern)?;
                        let replacement = replacement.replace('$', "$$");
                        let out = if all {
                            re.replace_all(&value, replacement.as_str()).into_owned()
                        } else {
                            re.replace(&value, replacement.as_str()).into_owned()
                        };
                        if out.len() > MAX_EXPANSION {
                            return Err(WordError(format!("the word expands to more than {MAX_EXPANSION} bytes")));
                        }
                        Ok(out)
                    }
                    other => Err(WordError(format!("unsupported modifier ({other}) in substitution"))),
                }
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '_' || is_special(c) => {
                let name = self.name();
                Ok((self.vars)(&name).unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }

    /// The word of a `${name:-word}` form, up to its `}` (consumed).
    fn braced_word(&mut self) -> Result<String, WordError> {
        let arg = self.word(&|c| c == '}')?;
        if self.peek() != Some('}') {
            return Err(WordError("syntax error: missing '}'".into()));
        }
        self.pos += 1;
        Ok(arg)
    }

    /// The raw text of a pattern or replacement, up to one of `stops` (left
    /// unconsumed); `\\` keeps the next character (escaped `}` and `/` lose
    /// the backslash, as BuildKit's patterns do).
    fn raw_until(&mut self, stops: &[char]) -> Result<String, WordError> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(WordError(format!("syntax error: missing '{}'", stops[0]))),
                Some(c) if stops.contains(&c) => return Ok(out),
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(n @ ('}' | '/')) => out.push(n),
                        Some(n) => {
                            out.push('\\');
                            out.push(n);
                        }
                        None => return Err(WordError("syntax error: missing '}'".into())),
                    }
                    self.pos += 1;
                }
                Some('$') => {
                    self.pos += 1;
                    capped(&mut out, &self.dollar()?)?;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// A name (letters, digits, `_`); a leading digit reads digits only
    /// (a positional parameter), and a special parameter (`@*#?-$!0`) is one
    /// character: BuildKit's reading, where those are never set.
    fn name(&mut self) -> String {
        let mut n = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    n.push(d);
                    self.pos += 1;
                }
                return n;
            }
            Some(c) if is_special(c) => {
                self.pos += 1;
                return c.to_string();
            }
            _ => {}
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                n.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildkits_parameter_forms() {
        let vars = |n: &str| match n {
            "v" => Some("a/b/c".to_owned()),
            "e" => Some(String::new()),
            _ => None,
        };
        for (text, want) in [
            ("$1", ""),
            ("$1x", "x"),
            ("$12y", "y"),
            ("[$@][$*][$#][$?][$$][$!][$-][$0]", "[][][][][][][][]"),
            ("${#}", ""),
            ("${v#*/}", "b/c"),
            ("${v##*/}", "c"),
            ("${v%/*}", "a/b"),
            ("${v%%/*}", "a"),
            ("${v#x}", "a/b/c"),
            ("${v/b/X}", "a/X/c"),
            ("${v//\\//-}", "a-b-c"),
            ("${v/?/Z}", "Z/b/c"),
            ("${nope##*}", ""),
            ("${e:-d}", "d"),
            ("${e-d}", ""),
        ] {
            assert_eq!(word(text, '\\', &vars).unwrap(), want, "{text}");
        }
        for (text, err) in [
            ("${nope:?}", "is not allowed to be unset"),
            ("${e:?}", "is not allowed to be empty"),
            ("${v", "missing '}'"),
            ("${}", "bad substitution"),
            ("${v@x}", "unsupported modifier"),
        ] {
            let e = word(text, '\\', &vars).unwrap_err();
            assert!(e.0.contains(err), "{text}: {e}");
        }
    }

    #[test]
    fn expansion_is_capped() {
        let big = "x".repeat(600 << 10);
        let vars = |n: &str| (n == "A").then(|| big.clone());
        assert_eq!(word("$A", '\\', &vars).unwrap().len(), 600 << 10);
        let e = word("$A$A", '\\', &vars).unwrap_err();
        assert!(e.0.contains("expands to more than"), "{e}");
        assert!(expand("${A}${A}", '\\', &vars).is_err());
        assert!(words("a \"$A$A\"", '\\', &vars).is_err());
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/root".into()),
            "EMPTY" => Some(String::new()),
            "V" => Some("1.2".into()),
            _ => None,
        }
    }

    #[test]
    fn substitution_forms() {
        for (input, expected) in [
            ("$HOME/x", "/root/x"),
            ("${HOME}x", "/rootx"),
            ("${NOPE:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${EMPTY-def}", ""),
            ("${NOPE-def}", "def"),
            ("${HOME:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${NOPE:-${V}}", "1.2"),
            ("'$HOME'", "$HOME"),
            ("\"$HOME a\"", "/root a"),
            ("\\$HOME", "$HOME"),
            ("\"\\$HOME\"", "$HOME"),
            ("a$", "a$"),
            ("$NOPE", ""),
        ] {
            assert_eq!(word(input, '\\', &env).unwrap(), expected, "{input}");
        }
        assert!(word("${NOPE:?must be set}", '\\', &env).unwrap_err().0.contains("must be set"));
        assert!(word("${HOME", '\\', &env).is_err());
        assert!(word("'open", '\\', &env).is_err());
        assert_eq!(word("`$HOME", '`', &env).unwrap(), "$HOME");
    }

    #[test]
    fn words_and_pairs() {
        assert_eq!(words("a \"b c\" 'd e' $V", '\\', &env).unwrap(), ["a", "b c", "d e", "1.2"]);
        assert_eq!(
            key_values("A=1 B=\"two words\" C=$HOME", '\\', &env, true).unwrap(),
            [("A".into(), "1".into()), ("B".into(), "two words".into()), ("C".into(), "/root".into())]
        );
        assert_eq!(
            key_values("LEGACY some value", '\\', &env, true).unwrap(),
            [("LEGACY".into(), "some value".into())]
        );
        assert!(key_values("=x", '\\', &env, false).is_err());
        assert!(key_values("ONLY", '\\', &env, true).is_err());
    }
}
