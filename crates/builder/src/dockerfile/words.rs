//! Words of instruction arguments the way Docker's shell lexer reads them:
//! quotes removed, the escape character honoured, and variables substituted:
//! `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`,
//! `${VAR+alt}`, `${VAR:?message}`, `${VAR?message}` (nested words expand too).
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
                let name = self.name();
                if name.is_empty() {
                    return Err(WordError("bad substitution: ${} needs a variable name".into()));
                }
                let value = (self.vars)(&name);
                match self.peek() {
                    Some('}') => {
                        self.pos += 1;
                        Ok(value.unwrap_or_default())
                    }
                    Some(':') | Some('-') | Some('+') | Some('?') => {
                        let colon = self.peek() == Some(':');
                        if colon {
                            self.pos += 1;
                        }
                        let op = self.peek().ok_or_else(|| WordError(format!("bad substitution in ${{{name}")))?;
                        if !matches!(op, '-' | '+' | '?') {
                            return Err(WordError(format!("unsupported modifier {op:?} in ${{{name}...}}")));
                        }
                        self.pos += 1;
                        let arg = self.word(&|c| c == '}')?;
                        if self.peek() != Some('}') {
                            return Err(WordError(format!("missing }} in ${{{name}...")));
                        }
                        self.pos += 1;
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
                                    let why = if arg.is_empty() { "is not set".to_owned() } else { arg };
                                    return Err(WordError(format!("{name}: {why}")));
                                }
                            }
                        })
                    }
                    other => Err(WordError(format!("bad substitution: unexpected {other:?} in ${{{name}"))),
                }
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                let name = self.name();
                Ok((self.vars)(&name).unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }

    fn name(&mut self) -> String {
        let mut n = String::new();
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
