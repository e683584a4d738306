//! `--format TEMPLATE`: Go's text/template language as docker, podman and
//! skopeo take it, run over the document `--json` prints (one record at a
//! time). Fields: `.Name` finds `name`, `Name` or `NAME`, and `.MediaType`
//! finds `media_type`. Actions: `{{.A.B}}`, pipelines (`{{.A | json}}`),
//! `{{if}}`/`{{else}}`/`{{end}}`, `{{range}}` (with `$k, $v :=`),
//! variables (`$`, `$v`), string and number literals, `{{- -}}` trimming,
//! `{{/* comments */}}`, and the functions `json`, `index`, `len`, `join`,
//! `upper`, `lower`, `title`, `print`, `println`, `printf`, `eq`, `ne`,
//! `lt`, `le`, `gt`, `ge`, `not`, `and`, `or`. Anything else is an error
//! that names it.

use serde_json::Value;

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Text(String),
    Action(Pipeline),
    If { cond: Pipeline, then: Vec<Node>, otherwise: Vec<Node> },
    Range { vars: Vec<String>, over: Pipeline, body: Vec<Node>, otherwise: Vec<Node> },
}

#[derive(Debug, Clone)]
struct Pipeline(Vec<Vec<Arg>>);

#[derive(Debug, Clone)]
enum Arg {
    /// `.` then fields.
    Dot(Vec<String>),
    /// `$name` (`$` alone: the root) then fields.
    Var(String, Vec<String>),
    Literal(Value),
    Func(String),
    Sub(Pipeline),
}

/// What a `{{...}}` holds, once read.
enum Action {
    Pipe(Pipeline),
    If(Pipeline),
    Range(Vec<String>, Pipeline),
    Else,
    End,
    Comment,
}

const FUNCTIONS: [&str; 19] = [
    "json", "index", "len", "join", "upper", "lower", "title", "print", "println", "printf", "eq", "ne", "lt", "le",
    "gt", "ge", "not", "and", "or",
];

impl Template {
    /// Parses `text`; an error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let mut before = rest[..open].to_owned();
            let inner = &rest[open + 2..];
            let close =
                inner.find("}}").ok_or_else(|| format!("an action opened at {:?} is not closed", excerpt(inner)))?;
            let mut body = &inner[..close];
            if let Some(b) = body.strip_prefix("- ").or(if body == "-" { Some("") } else { None }) {
                before.truncate(before.trim_end().len());
                body = b;
            }
            let mut trim_after = false;
            if let Some(b) = body.strip_suffix(" -") {
                trim_after = true;
                body = b;
            }
            pieces.push(Piece::Text(before));
            pieces.push(Piece::Action(read_action(body.trim())?));
            rest = &inner[close + 2..];
            if trim_after {
                rest = rest.trim_start();
            }
        }
        pieces.push(Piece::Text(rest.to_owned()));
        let mut it = pieces.into_iter();
        let (nodes, end) = build(&mut it)?;
        match end {
            None => Ok(Template { nodes }),
            Some(word) => Err(format!("{{{{{word}}}}} without an {{{{if}}}} or {{{{range}}}}")),
        }
    }

    /// Renders the template with `data` as `.` and `$`.
    pub fn render(&self, data: &Value) -> Result<String, String> {
        let mut out = String::new();
        let mut vars = vec![("$".to_owned(), data.clone())];
        run(&self.nodes, data, &mut vars, &mut out)?;
        Ok(out)
    }
}

enum Piece {
    Text(String),
    Action(Action),
}

fn excerpt(s: &str) -> String {
    s.chars().take(20).collect()
}

/// Nodes up to an `{{else}}` or `{{end}}` (returned) or the end (`None`).
fn build(it: &mut impl Iterator<Item = Piece>) -> Result<(Vec<Node>, Option<&'static str>), String> {
    let mut nodes = Vec::new();
    while let Some(piece) = it.next() {
        match piece {
            Piece::Text(t) if t.is_empty() => {}
            Piece::Text(t) => nodes.push(Node::Text(t)),
            Piece::Action(Action::Comment) => {}
            Piece::Action(Action::Pipe(p)) => nodes.push(Node::Action(p)),
            Piece::Action(Action::Else) => return Ok((nodes, Some("else"))),
            Piece::Action(Action::End) => return Ok((nodes, Some("end"))),
            Piece::Action(Action::If(cond)) => {
                let (then, otherwise) = branches(it, "if")?;
                nodes.push(Node::If { cond, then, otherwise });
            }
            Piece::Action(Action::Range(vars, over)) => {
                let (body, otherwise) = branches(it, "range")?;
                nodes.push(Node::Range { vars, over, body, otherwise });
            }
        }
    }
    Ok((nodes, None))
}

/// The body of an `if` or `range`, and its `else` part.
fn branches(it: &mut impl Iterator<Item = Piece>, what: &str) -> Result<(Vec<Node>, Vec<Node>), String> {
    let (first, end) = build(it)?;
    match end {
        Some("end") => Ok((first, Vec::new())),
        Some(_) => match build(it)? {
            (second, Some("end")) => Ok((first, second)),
            (_, Some(_)) => Err(format!("a second {{{{else}}}} in one {{{{{what}}}}}")),
            (_, None) => Err(format!("{{{{{what}}}}} without {{{{end}}}}")),
        },
        None => Err(format!("{{{{{what}}}}} without {{{{end}}}}")),
    }
}

fn read_action(body: &str) -> Result<Action, String> {
    if body.starts_with("/*") {
        return if body.ends_with("*/") { Ok(Action::Comment) } else { Err(format!("unclosed comment {body:?}")) };
    }
    let tokens = tokenize(body)?;
    match tokens.first().map(String::as_str) {
        None => Err("an empty action {{}}".into()),
        Some("end") if tokens.len() == 1 => Ok(Action::End),
        Some("else") if tokens.len() == 1 => Ok(Action::Else),
        Some("else") => Err(format!("{{{{{body}}}}}: only a plain {{{{else}}}} is supported")),
        Some("if") => Ok(Action::If(pipeline(&tokens[1..], body)?)),
        Some("range") => {
            let rest = &tokens[1..];
            match rest.iter().position(|t| t == ":=") {
                Some(at) => {
                    let vars: Vec<String> = rest[..at].iter().filter(|t| *t != ",").cloned().collect();
                    if vars.is_empty() || vars.len() > 2 || vars.iter().any(|v| !v.starts_with('$') || v == "$") {
                        return Err(format!("{{{{{body}}}}}: range declares one or two $variables"));
                    }
                    Ok(Action::Range(vars, pipeline(&rest[at + 1..], body)?))
                }
                None => Ok(Action::Range(Vec::new(), pipeline(rest, body)?)),
            }
        }
        Some(word @ ("with" | "define" | "template" | "block" | "break" | "continue")) => {
            Err(format!("{{{{{word}}}}} is not supported in --format templates"))
        }
        Some(_) => Ok(Action::Pipe(pipeline(&tokens, body)?)),
    }
}

fn tokenize(body: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '`' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != c {
                if c == '"' && chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(format!("an unclosed string in {{{{{body}}}}}"));
            }
            i += 1;
            tokens.push(chars[start..i].iter().collect());
        } else if matches!(c, '|' | '(' | ')' | ',') {
            tokens.push(c.to_string());
            i += 1;
        } else if c == ':' && chars.get(i + 1) == Some(&'=') {
            tokens.push(":=".into());
            i += 2;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '|' | '(' | ')' | ',' | '"') {
                if chars[i] == ':' && chars.get(i + 1) == Some(&'=') {
                    break;
                }
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        }
    }
    Ok(tokens)
}

fn pipeline(tokens: &[String], body: &str) -> Result<Pipeline, String> {
    let mut commands = vec![Vec::new()];
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        match t.as_str() {
            "|" => commands.push(Vec::new()),
            "(" => {
                let mut depth = 1;
                let start = i + 1;
                while depth > 0 {
                    i += 1;
                    match tokens.get(i).map(String::as_str) {
                        Some("(") => depth += 1,
                        Some(")") => depth -= 1,
                        Some(_) => {}
                        None => return Err(format!("an unclosed ( in {{{{{body}}}}}")),
                    }
                }
                let sub = pipeline(&tokens[start..i], body)?;
                commands.last_mut().expect("one at least").push(Arg::Sub(sub));
            }
            ")" | "," | ":=" => return Err(format!("an unexpected {t} in {{{{{body}}}}}")),
            _ => commands.last_mut().expect("one at least").push(operand(t)?),
        }
        i += 1;
    }
    if commands.iter().any(Vec::is_empty) {
        return Err(format!("an empty command in {{{{{body}}}}}"));
    }
    for cmd in &commands {
        if cmd.len() > 1 && !matches!(cmd[0], Arg::Func(_)) {
            return Err(format!("{{{{{body}}}}}: only a function takes arguments"));
        }
    }
    Ok(Pipeline(commands))
}

fn fields(path: &str, token: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    if parts.iter().any(|p| p.is_empty() || !p.chars().all(|c| c.is_alphanumeric() || c == '_')) {
        return Err(format!("{token}: not a field name"));
    }
    Ok(parts)
}

fn operand(t: &str) -> Result<Arg, String> {
    if t == "." {
        return Ok(Arg::Dot(Vec::new()));
    }
    if let Some(path) = t.strip_prefix('.') {
        return Ok(Arg::Dot(fields(path, t)?));
    }
    if let Some(rest) = t.strip_prefix('$') {
        let (name, path) = rest.split_once('.').unwrap_or((rest, ""));
        return Ok(Arg::Var(format!("${name}"), fields(path, t)?));
    }
    if t.starts_with('"') {
        return serde_json::from_str::<String>(t)
            .map(|s| Arg::Literal(Value::String(s)))
            .map_err(|_| format!("{t}: not a string"));
    }
    if let Some(raw) = t.strip_prefix('`') {
        return Ok(Arg::Literal(Value::String(raw.trim_end_matches('`').to_owned())));
    }
    match t {
        "true" => return Ok(Arg::Literal(Value::Bool(true))),
        "false" => return Ok(Arg::Literal(Value::Bool(false))),
        "nil" => return Ok(Arg::Literal(Value::Null)),
        _ => {}
    }
    if t.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        return serde_json::from_str::<serde_json::Number>(t)
            .map(|n| Arg::Literal(Value::Number(n)))
            .map_err(|_| format!("{t}: not a number"));
    }
    if FUNCTIONS.contains(&t) {
        return Ok(Arg::Func(t.to_owned()));
    }
    Err(format!("{t}: no such function (there are {})", FUNCTIONS.join(", ")))
}

type Vars = Vec<(String, Value)>;

fn run(nodes: &[Node], dot: &Value, vars: &mut Vars, out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&show(&eval(p, dot, vars)?)),
            Node::If { cond, then, otherwise } => {
                let branch = if truthy(&eval(cond, dot, vars)?) { then } else { otherwise };
                run(branch, dot, vars, out)?;
            }
            Node::Range { vars: names, over, body, otherwise } => {
                let items: Vec<(Value, Value)> = match eval(over, dot, vars)? {
                    Value::Array(a) => a.into_iter().enumerate().map(|(i, v)| (Value::from(i), v)).collect(),
                    Value::Object(o) => {
                        let mut entries: Vec<(String, Value)> = o.into_iter().collect();
                        entries.sort_by(|a, b| a.0.cmp(&b.0));
                        entries.into_iter().map(|(k, v)| (Value::String(k), v)).collect()
                    }
                    Value::Null => Vec::new(),
                    other => return Err(format!("range over {}: not a list or a map", show(&other))),
                };
                if items.is_empty() {
                    run(otherwise, dot, vars, out)?;
                }
                for (key, item) in items {
                    let depth = vars.len();
                    match names.as_slice() {
                        [v] => vars.push((v.clone(), item.clone())),
                        [k, v] => {
                            vars.push((k.clone(), key));
                            vars.push((v.clone(), item.clone()));
                        }
                        _ => {}
                    }
                    let done = run(body, &item, vars, out);
                    vars.truncate(depth);
                    done?;
                }
            }
        }
    }
    Ok(())
}

fn eval(p: &Pipeline, dot: &Value, vars: &Vars) -> Result<Value, String> {
    let mut piped: Option<Value> = None;
    for cmd in &p.0 {
        let value = match &cmd[0] {
            Arg::Func(name) => {
                let mut args = cmd[1..].iter().map(|a| arg(a, dot, vars)).collect::<Result<Vec<_>, _>>()?;
                args.extend(piped.take());
                call(name, &args)?
            }
            only if piped.is_none() => arg(only, dot, vars)?,
            _ => return Err("a value piped into something that is not a function".into()),
        };
        piped = Some(value);
    }
    Ok(piped.unwrap_or(Value::Null))
}

fn arg(a: &Arg, dot: &Value, vars: &Vars) -> Result<Value, String> {
    match a {
        Arg::Dot(path) => walk(dot, path, "."),
        Arg::Var(name, path) => {
            let (_, v) =
                vars.iter().rev().find(|(n, _)| n == name).ok_or_else(|| format!("{name}: no such variable"))?;
            walk(v, path, name)
        }
        Arg::Literal(v) => Ok(v.clone()),
        Arg::Func(name) => call(name, &[]),
        Arg::Sub(p) => eval(p, dot, vars),
    }
}

/// `name` of an object: the key as written, else the one it names in
/// another case or with underscores (`MediaType`: `media_type`).
fn field<'a>(map: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    let fold = |s: &str| s.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect::<String>();
    map.get(name).or_else(|| {
        let want = fold(name);
        map.iter().find(|(k, _)| fold(k) == want).map(|(_, v)| v)
    })
}

fn walk(start: &Value, path: &[String], from: &str) -> Result<Value, String> {
    let mut v = start;
    let mut at = from.trim_end_matches('.').to_owned();
    for name in path {
        at = format!("{at}.{name}");
        v = match v {
            Value::Object(map) => field(map, name).ok_or_else(|| {
                let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
                keys.sort_unstable();
                format!("{at}: no such field (there are {})", keys.join(", "))
            })?,
            Value::Null => return Ok(Value::Null),
            other => return Err(format!("{at}: {} has no fields", kind(other))),
        };
    }
    Ok(v.clone())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A value as Go's `%v` prints it (a missing one as `<no value>`).
fn show(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let mut entries: Vec<(&String, &Value)> = o.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            format!("map[{}]", entries.iter().map(|(k, v)| format!("{k}:{}", show(v))).collect::<Vec<_>>().join(" "))
        }
        other => other.to_string(),
    }
}

fn number(v: &Value, f: &str) -> Result<f64, String> {
    v.as_f64().ok_or_else(|| format!("{f}: {} is not a number", show(v)))
}

fn compare(f: &str, a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => number(a, f)?.partial_cmp(&number(b, f)?).ok_or_else(|| format!("{f}: not comparable")),
    }
}

fn want(f: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() == n { Ok(()) } else { Err(format!("{f} takes {n} argument(s), not {}", args.len())) }
}

fn call(f: &str, args: &[Value]) -> Result<Value, String> {
    let text = |v: &Value| show(v);
    Ok(match f {
        "json" => {
            want(f, args, 1)?;
            Value::String(serde_json::to_string(&args[0]).map_err(|e| e.to_string())?)
        }
        "index" => {
            let (first, keys) = args.split_first().ok_or("index takes a value and keys")?;
            let mut v = first.clone();
            for k in keys {
                v = match (&v, k) {
                    (Value::Array(a), Value::Number(n)) => {
                        let i = n.as_u64().ok_or_else(|| format!("index: {n} is not a position"))?;
                        a.get(i as usize).cloned().ok_or_else(|| format!("index: {i} is past the end"))?
                    }
                    (Value::Object(o), Value::String(s)) => o.get(s).cloned().unwrap_or(Value::String(String::new())),
                    (Value::Null, _) => Value::Null,
                    (other, k) => return Err(format!("index of {} by {}", kind(other), text(k))),
                };
            }
            v
        }
        "len" => {
            want(f, args, 1)?;
            Value::from(match &args[0] {
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                Value::String(s) => s.len(),
                Value::Null => 0,
                other => return Err(format!("len of {}", kind(other))),
            })
        }
        "join" => {
            want(f, args, 2)?;
            let sep = text(&args[1]);
            match &args[0] {
                Value::Array(a) => Value::String(a.iter().map(text).collect::<Vec<_>>().join(&sep)),
                Value::Null => Value::String(String::new()),
                other => return Err(format!("join of {}: not a list", kind(other))),
            }
        }
        "upper" | "lower" | "title" => {
            want(f, args, 1)?;
            let s = text(&args[0]);
            Value::String(match f {
                "upper" => s.to_uppercase(),
                "lower" => s.to_lowercase(),
                _ => {
                    let mut c = s.chars();
                    c.next().map(|h| h.to_uppercase().chain(c).collect()).unwrap_or_default()
                }
            })
        }
        "print" | "println" => {
            let mut s = String::new();
            for (i, a) in args.iter().enumerate() {
                // Go's Sprint spaces two operands when neither is a string; Sprintln always.
                let spaced = f == "println" || (i > 0 && !args[i - 1].is_string() && !a.is_string());
                if i > 0 && spaced {
                    s.push(' ');
                }
                s.push_str(&text(a));
            }
            if f == "println" {
                s.push('\n');
            }
            Value::String(s)
        }
        "printf" => {
            let (format, rest) = args.split_first().ok_or("printf takes a format")?;
            Value::String(printf(&text(format), rest)?)
        }
        "eq" => {
            let (a, others) = args.split_first().ok_or("eq takes two values at least")?;
            if others.is_empty() {
                return Err("eq takes two values at least".into());
            }
            Value::Bool(others.iter().any(|b| b == a || (a.as_f64().is_some() && a.as_f64() == b.as_f64())))
        }
        "ne" => {
            want(f, args, 2)?;
            Value::Bool(args[0] != args[1] && !(args[0].as_f64().is_some() && args[0].as_f64() == args[1].as_f64()))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(f, args, 2)?;
            let o = compare(f, &args[0], &args[1])?;
            Value::Bool(match f {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "not" => {
            want(f, args, 1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "and" | "or" => {
            let last = args.last().ok_or_else(|| format!("{f} takes values"))?;
            let stop = args.iter().find(|a| if f == "and" { !truthy(a) } else { truthy(a) });
            stop.unwrap_or(last).clone()
        }
        other => return Err(format!("{other}: no such function")),
    })
}

/// Go's `printf` for `%s`, `%v`, `%d`, `%q` and `%%`, with flags, width and
/// precision.
fn printf(format: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut next = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() || matches!(d, '-' | '.' | '+' | ' ' | '#') {
                spec.push(d);
                chars.next();
            } else {
                break;
            }
        }
        let verb = chars.next().ok_or("printf: a format ends in %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let v = next.next().ok_or_else(|| format!("printf: no value for %{spec}{verb}"))?;
        let left = spec.starts_with('-');
        let spec = spec.trim_start_matches(['-', '+', ' ', '#']);
        let (width, precision): (usize, Option<usize>) = match spec.split_once('.') {
            Some((w, p)) => (w.parse().unwrap_or(0), p.parse::<usize>().ok()),
            None => (spec.parse().unwrap_or(0), None),
        };
        // As Go's fmt, which refuses widths and precisions over a million.
        if width > 1_000_000 || precision.is_some_and(|p| p > 1_000_000) {
            return Err(format!("printf: the width or precision of %{spec}{verb} is too large"));
        }
        let mut s = match verb {
            's' | 'v' => show(v),
            'd' => match v.as_i64() {
                Some(n) => n.to_string(),
                None => return Err(format!("printf: %d of {}", show(v))),
            },
            'q' => serde_json::to_string(&show(v)).map_err(|e| e.to_string())?,
            other => return Err(format!("printf: %{other} is not supported (%s, %v, %d, %q)")),
        };
        if let Some(p) = precision
            && matches!(verb, 's' | 'v')
        {
            s = s.chars().take(p).collect();
        }
        let pad = width.saturating_sub(s.chars().count());
        if left {
            out.push_str(&s);
            out.push_str(&" ".repeat(pad));
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, data: &Value) -> String {
        Template::parse(t).unwrap_or_else(|e| panic!("{t}: {e}")).render(data).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    #[test]
    fn fields_pipes_and_functions_as_go_prints_them() {
        let d = serde_json::json!({
            "digest": "sha256:ab", "media_type": "m", "size": 12, "labels": {"b": "2", "a.x": "1"},
            "layers": [{"digest": "d1"}, {"digest": "d2"}], "env": ["A=1", "B=2"], "variant": null, "Names": ["web"]
        });
        assert_eq!(render("{{.Digest}} {{.MediaType}} {{.size}}", &d), "sha256:ab m 12");
        assert_eq!(render("{{json .Labels}}", &d), r#"{"b":"2","a.x":"1"}"#, "as the document has them");
        assert_eq!(render("{{.Labels}} {{.Env}} {{.Variant}}", &d), "map[a.x:1 b:2] [A=1 B=2] <no value>");
        assert_eq!(
            render(r#"{{index .Labels "a.x"}}|{{index .Labels "none"}}|{{index .Layers 1 | json}}"#, &d),
            r#"1||{"digest":"d2"}"#
        );
        assert_eq!(render("{{range .Layers}}{{.Digest}}\n{{end}}", &d), "d1\nd2\n");
        assert_eq!(render("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}", &d), "a.x=1;b=2;");
        assert_eq!(render("{{range $i, $l := .Layers}}{{$i}}:{{$l.Digest}} {{end}}", &d), "0:d1 1:d2 ");
        assert_eq!(render("{{range .Missing}}x{{else}}none{{end}}", &serde_json::json!({"missing": []})), "none");
        assert_eq!(render("{{if .Variant}}v{{else}}no variant{{end}}", &d), "no variant");
        assert_eq!(
            render("{{if eq .Size 12}}twelve{{end}} {{if and .Env (not .Variant)}}yes{{end}}", &d),
            "twelve yes"
        );
        assert_eq!(render("{{join .Env \",\"}} {{len .Layers}} {{.Digest | upper}}", &d), "A=1,B=2 2 SHA256:AB");
        assert_eq!(
            render("{{printf \"%-6s|%.3s|%d|%q\" .MediaType .Digest .Size .MediaType}}", &d),
            "m     |sha|12|\"m\""
        );
        assert_eq!(render("a  {{- .MediaType -}}  b {{/* note */}}{{$.Size}}", &d), "amb 12");
        assert_eq!(render("{{.Names}} {{index .Names 0}} {{println .Size \"x\"}}", &d), "[web] web 12 x\n");
        assert_eq!(render("{{.}}", &Value::String("s".into())), "s");
    }

    #[test]
    fn mistakes_are_named() {
        let d = serde_json::json!({"digest": "x", "n": 1});
        let err = |t: &str| match Template::parse(t) {
            Err(e) => e,
            Ok(tpl) => tpl.render(&d).expect_err(t),
        };
        assert!(err("{{.Digets}}").contains(".Digets: no such field (there are digest, n)"), "{}", err("{{.Digets}}"));
        assert!(err("{{.Digest").contains("not closed"));
        assert!(err("{{if .N}}x").contains("{{if}} without {{end}}"));
        assert!(err("x{{end}}").contains("{{end}} without"));
        assert!(err("{{frob .N}}").contains("frob: no such function"));
        assert!(err("{{with .N}}{{end}}").contains("not supported"));
        assert!(err("{{.N.X}}").contains("a number has no fields"));
        assert!(err("{{range .Digest}}{{end}}").contains("not a list or a map"));
        assert!(err("{{printf \"%x\" .N}}").contains("%x is not supported"));
        assert!(err("{{.N .Digest}}").contains("only a function takes arguments"));
        assert!(err("{{printf \"%9999999999s\" .N}}").contains("too large"));
    }
}
