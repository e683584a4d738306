//! The Dockerfile parser: parser directives, comments, line continuations,
//! flags, shell and exec (JSON) forms, heredocs. Variable substitution is in
//! [`words`]. Errors name the file, line and column.

pub mod words;

use std::fmt;

/// An instruction keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs, reason = "the keywords are their own documentation")]
pub enum Keyword {
    From,
    Run,
    Cmd,
    Entrypoint,
    Env,
    Arg,
    Label,
    Maintainer,
    Expose,
    Volume,
    User,
    Workdir,
    Copy,
    Add,
    Shell,
    Stopsignal,
    Healthcheck,
    Onbuild,
}

impl Keyword {
    /// The keyword of `word` (any case).
    pub fn parse(word: &str) -> Option<Keyword> {
        Some(match word.to_ascii_uppercase().as_str() {
            "FROM" => Keyword::From,
            "RUN" => Keyword::Run,
            "CMD" => Keyword::Cmd,
            "ENTRYPOINT" => Keyword::Entrypoint,
            "ENV" => Keyword::Env,
            "ARG" => Keyword::Arg,
            "LABEL" => Keyword::Label,
            "MAINTAINER" => Keyword::Maintainer,
            "EXPOSE" => Keyword::Expose,
            "VOLUME" => Keyword::Volume,
            "USER" => Keyword::User,
            "WORKDIR" => Keyword::Workdir,
            "COPY" => Keyword::Copy,
            "ADD" => Keyword::Add,
            "SHELL" => Keyword::Shell,
            "STOPSIGNAL" => Keyword::Stopsignal,
            "HEALTHCHECK" => Keyword::Healthcheck,
            "ONBUILD" => Keyword::Onbuild,
            _ => return None,
        })
    }

    /// The keyword as written in Dockerfiles (upper case).
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::From => "FROM",
            Keyword::Run => "RUN",
            Keyword::Cmd => "CMD",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Env => "ENV",
            Keyword::Arg => "ARG",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Expose => "EXPOSE",
            Keyword::Volume => "VOLUME",
            Keyword::User => "USER",
            Keyword::Workdir => "WORKDIR",
            Keyword::Copy => "COPY",
            Keyword::Add => "ADD",
            Keyword::Shell => "SHELL",
            Keyword::Stopsignal => "STOPSIGNAL",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Onbuild => "ONBUILD",
        }
    }

    fn takes_flags(self) -> bool {
        matches!(self, Keyword::From | Keyword::Run | Keyword::Copy | Keyword::Add | Keyword::Healthcheck)
    }

    fn takes_heredocs(self) -> bool {
        matches!(self, Keyword::Run | Keyword::Copy | Keyword::Add)
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--name=value` (or `--name`) before an instruction's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The name without dashes.
    pub name: String,
    /// The value, when given with `=`.
    pub value: Option<String>,
}

/// A here-document (`<<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word.
    pub name: String,
    /// The body, each line ending with a newline.
    pub body: String,
    /// Variables are expanded in the body (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs were stripped from the body and the delimiter line.
    pub strip_tabs: bool,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// What it is.
    pub keyword: Keyword,
    /// Its first line (1-based).
    pub line: usize,
    /// Leading `--flags`.
    pub flags: Vec<Flag>,
    /// The arguments after the flags, continuation lines joined.
    pub args: String,
    /// The exec (JSON array) form, when the arguments are one.
    pub exec: Option<Vec<String>>,
    /// Here-documents, in order.
    pub heredocs: Vec<Heredoc>,
    /// The instruction as written (keyword, flags and arguments on one line).
    pub original: String,
    /// An empty line sat among its continuation lines (BuildKit warns:
    /// they are to become errors).
    pub empty_continuation: bool,
}

impl Instruction {
    /// The value of flag `name`, if given.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.iter().rev().find(|f| f.name == name).map(|f| f.value.as_deref().unwrap_or(""))
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\` unless `# escape=` said otherwise).
    pub escape: char,
    /// The `# syntax=` directive, if any (recorded, not acted on).
    pub syntax: Option<String>,
    /// The `# check=` directive: which warnings to skip, whether they fail.
    pub check: CheckDirective,
    /// The instructions in order.
    pub instructions: Vec<Instruction>,
}

/// `# check=skip=Rule1,Rule2;error=true`, as BuildKit reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckDirective {
    /// Rules whose warnings are not reported (`skip=`).
    pub skip: Vec<String>,
    /// `skip=all`: no warnings at all.
    pub skip_all: bool,
    /// `error=true`: a warning fails the check and the build.
    pub error: bool,
}

impl CheckDirective {
    fn parse(value: &str) -> Result<Self, String> {
        let mut c = CheckDirective::default();
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("check directive: {part:?} is not KEY=VALUE"))?;
            match k.trim() {
                "skip" => {
                    for rule in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        if rule.eq_ignore_ascii_case("all") {
                            c.skip_all = true;
                        } else {
                            c.skip.push(rule.to_owned());
                        }
                    }
                }
                "error" => {
                    c.error = match v.trim() {
                        "true" => true,
                        "false" => false,
                        other => return Err(format!("check directive: error={other}: use true or false")),
                    }
                }
                other => return Err(format!("check directive: unknown key {other:?} (skip and error are known)")),
            }
        }
        Ok(c)
    }

    /// Whether warnings of `rule` are reported.
    pub fn reports(&self, rule: &str) -> bool {
        !self.skip_all && !self.skip.iter().any(|r| r == rule)
    }
}

/// A Dockerfile that cannot be parsed: file, line, column and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ParseError {
    /// The file.
    pub file: String,
    /// Line (1-based).
    pub line: usize,
    /// Column (1-based).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses a Dockerfile; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let err = |line: usize, column: usize, message: String| ParseError { file: file.into(), line, column, message };
    // Parser directives: only at the very top, before any other line.
    let mut escape = '\\';
    let mut syntax = None;
    let mut check = CheckDirective::default();
    let mut seen: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some((key, value)) = directive(lines[i]) else { break };
        let lower = key.to_ascii_lowercase();
        if !matches!(lower.as_str(), "escape" | "syntax" | "check") {
            break; // an ordinary comment, which ends the directives
        }
        if seen.contains(&lower) {
            return Err(err(i + 1, 1, format!("the {lower} directive is given twice")));
        }
        seen.push(lower.clone());
        match lower.as_str() {
            "escape" => {
                escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(err(i + 1, 1, format!("invalid escape character {other:?}: use \\ or `")));
                    }
                }
            }
            "syntax" => syntax = Some(value.to_owned()),
            _ => check = CheckDirective::parse(value).map_err(|m| err(i + 1, 1, m))?,
        }
        i += 1;
    }
    let mut instructions = Vec::new();
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let mut start = i;
        // Join continuation lines; comment and empty lines inside are dropped.
        let mut logical = String::new();
        let mut current = trimmed.to_owned();
        let mut empty_continuation = false;
        loop {
            match strip_continuation(&current, escape) {
                Some(head) => {
                    logical.push_str(&head);
                    i += 1;
                    while i < lines.len() && {
                        let t = lines[i].trim_start();
                        empty_continuation |= t.is_empty();
                        t.is_empty() || t.starts_with('#')
                    } {
                        i += 1;
                    }
                    if i >= lines.len() {
                        break;
                    }
                    if logical.trim().is_empty() {
                        // Nothing but the escape character so far: the
                        // instruction starts on this line.
                        logical.clear();
                        start = i;
                    }
                    current = lines[i].to_owned();
                }
                None => {
                    logical.push_str(&current);
                    i += 1;
                    break;
                }
            }
        }
        let logical = logical.trim().to_owned();
        let (word, rest) = split_word(&logical);
        let column = lines[start].len() - lines[start].trim_start().len() + 1;
        let keyword =
            Keyword::parse(word).ok_or_else(|| err(start + 1, column, format!("unknown instruction {word}")))?;
        let (flags, args) = if keyword.takes_flags() { take_flags(rest) } else { (Vec::new(), rest.to_owned()) };
        if let Some(f) = flags.iter().find(|f| f.name.is_empty()) {
            return Err(err(start + 1, column, format!("{keyword}: empty flag {:?}", f.value)));
        }
        let mut heredocs = Vec::new();
        if keyword.takes_heredocs() {
            let starts = heredoc_starts(&args).map_err(|m| err(start + 1, column, format!("{keyword}: {m}")))?;
            for (name, expand, strip_tabs) in starts {
                let mut body = String::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let l = if strip_tabs { l.trim_start_matches('\t') } else { l };
                    if l == name {
                        closed = true;
                        break;
                    }
                    body.push_str(l);
                    body.push('\n');
                }
                if !closed {
                    return Err(err(start + 1, column, format!("{keyword}: here-document <<{name} is never closed")));
                }
                heredocs.push(Heredoc { name, body, expand, strip_tabs });
            }
        }
        let exec = if heredocs.is_empty() { json_array(&args) } else { None };
        if keyword == Keyword::Shell && exec.is_none() {
            return Err(err(start + 1, column, "SHELL needs the JSON form, like SHELL [\"/bin/sh\", \"-c\"]".into()));
        }
        // CMD and ENTRYPOINT may be empty; HEALTHCHECK NONE has a word.
        let may_be_empty = matches!(keyword, Keyword::Cmd | Keyword::Entrypoint);
        if args.trim().is_empty() && !may_be_empty {
            return Err(err(start + 1, column, format!("{keyword} needs arguments")));
        }
        instructions.push(Instruction {
            keyword,
            line: start + 1,
            flags,
            args: args.trim().to_owned(),
            exec,
            heredocs,
            original: logical.clone(),
            empty_continuation,
        });
    }
    Ok(Dockerfile { escape, syntax, check, instructions })
}

/// `# key=value` at the top of the file.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (key, value) = rest.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some((key, value.trim()))
}

/// The line without its trailing escape character (and whitespace after
/// it), if it continues on the next line.
fn strip_continuation(line: &str, escape: char) -> Option<String> {
    let t = line.trim_end_matches([' ', '\t']);
    let head = t.strip_suffix(escape)?;
    // An escaped escape character does not continue the line.
    let run = head.chars().rev().take_while(|&c| c == escape).count();
    (run % 2 == 0).then(|| head.to_owned())
}

fn split_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Leading `--name[=value]` words.
fn take_flags(mut rest: &str) -> (Vec<Flag>, String) {
    let mut flags = Vec::new();
    while let Some(after) = rest.strip_prefix("--") {
        let (word, tail) = split_word(after);
        match word.split_once('=') {
            Some((n, v)) => flags.push(Flag { name: n.to_owned(), value: Some(v.to_owned()) }),
            None => flags.push(Flag { name: word.to_owned(), value: None }),
        }
        rest = tail;
    }
    (flags, rest.to_owned())
}

/// The here-documents an instruction's arguments open: (name, expand,
/// strip_tabs), as BuildKit reads them: `[N]<<[-][blanks]WORD` outside
/// quotes, where WORD runs to the next unquoted blank; quotes in it are
/// removed and make the body literal (`<<'EOF'`, `<<E"O"F`), a backslash
/// keeps the next character (`<<eo\'f` is `eo'f`, still expanded), and
/// nothing else in it is expanded (`<<$EOF` is `$EOF`). A quote left open
/// in a delimiter is an error.
fn heredoc_starts(args: &str) -> Result<Vec<(String, bool, bool)>, String> {
    let mut out = Vec::new();
    let c: Vec<char> = args.chars().collect();
    let mut i = 0;
    let mut quote: Option<char> = None;
    // Where the current word began: `<<` opens a here-document only at the
    // start of a word, after a file descriptor's digits at most (`3<<EOF`).
    let mut word = 0;
    while i < c.len() {
        match (quote, c[i]) {
            (Some(q), ch) if ch == q => quote = None,
            (Some(_), _) => {}
            (None, ' ' | '\t') => word = i + 1,
            (None, '\\') => i += 1,
            (None, '\'' | '"') => quote = Some(c[i]),
            (None, '<')
                if c.get(i + 1) == Some(&'<')
                    && c.get(i + 2) != Some(&'<')
                    && c[word..i].iter().all(char::is_ascii_digit) =>
            {
                let mut j = i + 2;
                let strip_tabs = c.get(j) == Some(&'-');
                if strip_tabs {
                    j += 1;
                }
                while j < c.len() && (c[j] == ' ' || c[j] == '\t') {
                    j += 1;
                }
                let (mut name, mut quoted, mut open) = (String::new(), false, None::<char>);
                while j < c.len() {
                    let ch = c[j];
                    match open {
                        Some(q) if ch == q => open = None,
                        Some(_) => name.push(ch),
                        None if ch == ' ' || ch == '\t' => break,
                        None if ch == '\'' || ch == '"' => {
                            open = Some(ch);
                            quoted = true;
                        }
                        None if ch == '\\' && j + 1 < c.len() => {
                            j += 1;
                            name.push(c[j]);
                        }
                        None => name.push(ch),
                    }
                    j += 1;
                }
                if let Some(q) = open {
                    return Err(format!(
                        "here-document delimiter {:?} has an unterminated {q} quote",
                        &args[byte(args, i)..]
                    ));
                }
                if !name.is_empty() {
                    out.push((name, !quoted, strip_tabs));
                }
                i = j;
                word = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(out)
}

/// The byte offset of the `n`th character of `s`.
fn byte(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(b, _)| b)
}

/// The arguments as a JSON array of strings, if they are one.
fn json_array(args: &str) -> Option<Vec<String>> {
    let t = args.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Dockerfile {
        parse(text, "Dockerfile").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn continuations_comments_and_forms() {
        let d = p(
            "# syntax=docker/dockerfile:1\nARG BASE=busybox\nFROM ${BASE} AS build\n\n# a comment\nRUN echo a \\\n  # inside\n\n  && echo b\nCMD [\"/bin/sh\", \"-c\", \"echo hi\"]\nENTRYPOINT [not json\nrun   true\n",
        );
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        let k: Vec<Keyword> = d.instructions.iter().map(|i| i.keyword).collect();
        assert_eq!(k, [Keyword::Arg, Keyword::From, Keyword::Run, Keyword::Cmd, Keyword::Entrypoint, Keyword::Run]);
        assert_eq!(d.instructions[2].args, "echo a   && echo b");
        assert_eq!(d.instructions[2].line, 6);
        assert_eq!(d.instructions[3].exec.as_deref(), Some(&["/bin/sh".to_owned(), "-c".into(), "echo hi".into()][..]));
        assert_eq!(d.instructions[4].exec, None, "not JSON: shell form");
        assert_eq!(d.instructions[5].line, 12);
    }

    #[test]
    fn escape_directive_and_flags() {
        let d = p(
            "# escape=`\nFROM --platform=linux/amd64 scratch\nCOPY --from=build --chown=1:2 `\n  a b /dst/\nRUN dir c:\\\n",
        );
        assert_eq!(d.escape, '`');
        assert_eq!(d.instructions[0].flag("platform"), Some("linux/amd64"));
        assert_eq!(d.instructions[1].flag("from"), Some("build"));
        assert_eq!(d.instructions[1].flag("chown"), Some("1:2"));
        assert_eq!(d.instructions[1].args, "a b /dst/");
        assert_eq!(d.instructions[2].args, "dir c:\\", "a backslash is ordinary with escape=`");
    }

    #[test]
    fn heredocs() {
        let d = p(
            "FROM scratch\nRUN <<EOF\necho one\necho $HOME\nEOF\nCOPY <<-\"END\" /etc/motd\n\thello\n\tEND\nRUN cat <<A && cat <<'B'\na\nA\nb\nB\n",
        );
        let run = &d.instructions[1];
        assert_eq!(
            run.heredocs,
            vec![Heredoc {
                name: "EOF".into(),
                body: "echo one\necho $HOME\n".into(),
                expand: true,
                strip_tabs: false
            }]
        );
        let copy = &d.instructions[2];
        assert_eq!(copy.heredocs[0].body, "hello\n");
        assert!(!copy.heredocs[0].expand && copy.heredocs[0].strip_tabs);
        assert_eq!(copy.args, "<<-\"END\" /etc/motd");
        let two = &d.instructions[3];
        assert_eq!(two.heredocs.len(), 2);
        assert_eq!((two.heredocs[0].body.as_str(), two.heredocs[1].body.as_str()), ("a\n", "b\n"));
        assert!(two.heredocs[0].expand && !two.heredocs[1].expand);
        assert_eq!(d.instructions.len(), 4);
    }

    /// BuildKit's continuation cases: indentation kept, comment lines
    /// dropped, empty lines dropped but flagged.
    #[test]
    fn continuations_as_buildkit_joins_them() {
        let d = p(
            "FROM alpine:3.6\n\nRUN valid \\\n    continuation\n\nRUN something \\\n\n    following \\\n\n    more\n\nRUN another \\\n\n    thing\n\nRUN non-indented \\\n# this is a comment\n   after-comment\n\nRUN indented \\\n    # this is an indented comment\n    comment\n",
        );
        let got: Vec<(&str, bool, usize)> =
            d.instructions.iter().map(|i| (i.original.as_str(), i.empty_continuation, i.line)).collect();
        assert_eq!(
            got,
            [
                ("FROM alpine:3.6", false, 1),
                ("RUN valid     continuation", false, 3),
                ("RUN something     following     more", true, 6),
                ("RUN another     thing", true, 12),
                ("RUN non-indented    after-comment", false, 16),
                ("RUN indented     comment", false, 20),
            ]
        );
        let (_, warnings) =
            crate::plan::check("FROM scratch\nRUN a \\\n\n  b\n", &crate::plan::PlanOptions::default()).unwrap();
        assert!(
            warnings.iter().any(|w| w.rule == "NoEmptyContinuation"
                && w.line == 2
                && w.message.starts_with("Empty continuation line found in: RUN a   b")),
            "{warnings:?}"
        );
    }

    /// Delimiters as BuildKit's parser reads them (its heredoc tests'
    /// cases): (instruction line, body lines, expected (name, body, expand)).
    #[test]
    fn heredoc_delimiters_as_buildkit_reads_them() {
        for (line, body, want) in [
            ("RUN <<EMPTY", "EMPTY\n", Some(("EMPTY", "", true))),
            ("RUN 3<<EMPTY2", "EMPTY2\n", Some(("EMPTY2", "", true))),
            ("RUN \"<<NOHEREDOC\"", "", None),
            ("RUN '<<EOF'", "", None),
            ("RUN [\"<<EOF\"]", "", None),
            ("RUN [\"<<'EOF'\"]", "", None),
            ("RUN <<INDENT", "\tfoo\n\tbar\nINDENT\n", Some(("INDENT", "\tfoo\n\tbar\n", true))),
            ("RUN <<-UNINDENT2", "\tbaz\n\tquux\n\tUNINDENT2\n", Some(("UNINDENT2", "baz\nquux\n", true))),
            ("RUN <<-'NOEXPAND'", "\tdon't $NAME\nNOEXPAND\n", Some(("NOEXPAND", "don't $NAME\n", false))),
            ("RUN <<COMPLEX python3", "print(1)\nCOMPLEX\n", Some(("COMPLEX", "print(1)\n", true))),
            ("COPY <<file.txt /dest", "hello\nfile.txt\n", Some(("file.txt", "hello\n", true))),
            ("RUN <<eo'f'", "echo foo\neof\n", Some(("eof", "echo foo\n", false))),
            ("RUN <<eo\\'f", "echo foo\neo'f\n", Some(("eo'f", "echo foo\n", true))),
            ("RUN <<'e'o\\'f", "echo foo\neo'f\n", Some(("eo'f", "echo foo\n", false))),
            ("RUN <<'one two'", "echo bar\none two\n", Some(("one two", "echo bar\n", false))),
            ("RUN <<EO\"F\"", "x\nEOF\n", Some(("EOF", "x\n", false))),
            ("RUN <<$EOF", "$EOF\n", Some(("$EOF", "", true))),
            ("RUN <<  EOF", "EOF\n", Some(("EOF", "", true))),
            ("RUN <<  EOF  > foo", "EOF\n", Some(("EOF", "", true))),
            ("RUN <<- EOF", "\tEOF\n", Some(("EOF", "", true))),
            ("RUN << -EOF", "-EOF\n", Some(("-EOF", "", true))),
            (
                "RUN --mount=type=cache,target=/foo <<MOUNT",
                "echo hello\nMOUNT\n",
                Some(("MOUNT", "echo hello\n", true)),
            ),
            ("RUN echo $((1<<4)) <<<here", "", None),
        ] {
            let d = p(&format!("FROM scratch\n{line}\n{body}"));
            let got = d.instructions[1].heredocs.first().map(|h| (h.name.as_str(), h.body.as_str(), h.expand));
            assert_eq!(got, want, "{line:?}");
            assert_eq!(d.instructions.len(), 2, "{line:?}");
        }
        // Two in one line take their bodies in turn.
        let d = p("FROM scratch\nCOPY <<X <<Y /dest\nY\nX\nX\nY\n");
        let bodies: Vec<(&str, &str)> =
            d.instructions[1].heredocs.iter().map(|h| (h.name.as_str(), h.body.as_str())).collect();
        assert_eq!(bodies, [("X", "Y\n"), ("Y", "X\n")]);
        // A quote left open is an error; USER takes no here-document.
        for bad in ["RUN <<'EOF\nEOF\n", "RUN <<EOF'\nEOF\n", "RUN <<\"EOF\nEOF\n"] {
            let e = parse(&format!("FROM scratch\n{bad}"), "Dockerfile").unwrap_err();
            assert!(e.line == 2 && e.message.contains("unterminated"), "{bad:?}: {e}");
        }
        let e = parse("FROM scratch\nUSER <<INVALID\nINVALID\n", "Dockerfile").unwrap_err();
        assert!(e.line == 3 && e.message.contains("unknown instruction INVALID"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        for (text, line, col, needle) in [
            ("FROM a\n  FORM b\n", 2, 3, "unknown instruction FORM"),
            ("FROM a\nRUN <<EOF\necho\n", 2, 1, "never closed"),
            ("# escape=x\nFROM a\n", 1, 1, "invalid escape"),
            ("# escape=`\n# escape=\\\nFROM a\n", 2, 1, "twice"),
            ("FROM a\nSHELL /bin/bash -c\n", 2, 1, "JSON form"),
            ("FROM a\nCOPY\n", 2, 1, "needs arguments"),
        ] {
            let e = parse(text, "ctx/Dockerfile").unwrap_err();
            assert_eq!((e.line, e.column), (line, col), "{text:?}: {e}");
            assert!(
                e.to_string().starts_with(&format!("ctx/Dockerfile:{line}:{col}: ")) && e.message.contains(needle),
                "{e}"
            );
        }
        // A directive after the first instruction is a comment.
        let d = p("FROM a\n# escape=`\nRUN x \\\n y\n");
        assert_eq!(d.escape, '\\');
        assert_eq!(d.instructions[1].args, "x  y");
    }
}
