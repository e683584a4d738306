//! `docker import -c` / `docker commit -c` style config changes, and timestamps.

use std::collections::BTreeMap;

use super::{ContainerConfig, ImageConfig};

/// A config change that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config change {change:?}: {reason}")]
pub struct ChangeError {
    /// The change as given.
    pub change: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ImageConfig {
    /// Applies one Dockerfile-style instruction to the runtime config:
    /// `CMD`, `ENTRYPOINT` (JSON or shell form), `ENV K=V` (or `ENV K V`),
    /// `WORKDIR`, `USER`, `LABEL K=V ...`, `EXPOSE 80/tcp ...`, `VOLUME`,
    /// `STOPSIGNAL`.
    pub fn apply_change(&mut self, change: &str) -> Result<(), ChangeError> {
        let bad = |reason: &str| ChangeError { change: change.into(), reason: reason.into() };
        let trimmed = change.trim();
        let (word, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
        let rest = rest.trim();
        let c: &mut ContainerConfig = self.config.get_or_insert_with(ContainerConfig::default);
        match word.to_ascii_uppercase().as_str() {
            "CMD" => c.cmd = Some(command(rest).map_err(|r| bad(&r))?),
            "ENTRYPOINT" => c.entrypoint = Some(command(rest).map_err(|r| bad(&r))?),
            "ENV" => {
                let pairs = if rest.contains('=') {
                    key_values(rest).map_err(|r| bad(&r))?
                } else {
                    let (k, v) = rest.split_once(char::is_whitespace).ok_or_else(|| bad("expected ENV KEY=VALUE"))?;
                    vec![(k.to_owned(), v.trim().to_owned())]
                };
                let env = c.env.get_or_insert_with(Vec::new);
                for (k, v) in pairs {
                    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) != k);
                    env.push(format!("{k}={v}"));
                }
            }
            "WORKDIR" if !rest.is_empty() => c.working_dir = Some(rest.to_owned()),
            "USER" if !rest.is_empty() => c.user = Some(rest.to_owned()),
            "STOPSIGNAL" if !rest.is_empty() => c.stop_signal = Some(rest.to_owned()),
            "LABEL" => {
                let labels = c.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in key_values(rest).map_err(|r| bad(&r))? {
                    labels.insert(k, v);
                }
            }
            "EXPOSE" if !rest.is_empty() => {
                let ports = c.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') { p.to_owned() } else { format!("{p}/tcp") };
                    ports.insert(p, serde_json::json!({}));
                }
            }
            "VOLUME" if !rest.is_empty() => {
                let vols = c.volumes.get_or_insert_with(BTreeMap::new);
                let list: Vec<String> = if rest.starts_with('[') {
                    serde_json::from_str(rest).map_err(|e| bad(&format!("invalid JSON list: {e}")))?
                } else {
                    rest.split_whitespace().map(str::to_owned).collect()
                };
                for v in list {
                    vols.insert(v, serde_json::json!({}));
                }
            }
            "" => return Err(bad("empty")),
            w => {
                return Err(bad(&format!(
                    "{w} is not a supported instruction (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL), or it lacks an argument"
                )));
            }
        }
        Ok(())
    }
}

/// JSON (exec) form `["a","b"]`, else shell form `/bin/sh -c "..."`.
fn command(rest: &str) -> Result<Vec<String>, String> {
    if rest.starts_with('[') {
        return serde_json::from_str(rest).map_err(|e| format!("invalid JSON array: {e}"));
    }
    if rest.is_empty() {
        return Err("no command".into());
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
}

/// `K=V K2="v 2"` pairs.
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|&c| c != '=' && !c.is_whitespace())).collect();
        if chars.next() != Some('=') || key.is_empty() {
            return Err(format!("expected KEY=VALUE near {key:?}"));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err("unterminated quote".into()),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect();
        }
        out.push((key, value));
    }
}

/// Seconds since the epoch as RFC 3339 UTC (`2024-01-02T03:04:05Z`).
pub fn format_rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// "Now" for image metadata: `epoch` when given (a caller's
/// `SOURCE_DATE_EPOCH`, for reproducible builds), else the wall clock.
pub fn creation_time(epoch: Option<u64>) -> u64 {
    epoch.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes() {
        let mut c = ImageConfig::default();
        c.apply_change(r#"CMD ["/bin/sh", "-l"]"#).unwrap();
        c.apply_change("ENTRYPOINT exec app --flag").unwrap();
        c.apply_change("ENV A=1 B=\"two words\"").unwrap();
        c.apply_change("ENV A 3").unwrap();
        c.apply_change("WORKDIR /srv").unwrap();
        c.apply_change("LABEL org.x=y z=\"a b\"").unwrap();
        c.apply_change("EXPOSE 80 53/udp").unwrap();
        let cc = c.config.unwrap();
        assert_eq!(cc.cmd.unwrap(), ["/bin/sh", "-l"]);
        assert_eq!(cc.entrypoint.unwrap(), ["/bin/sh", "-c", "exec app --flag"]);
        assert_eq!(cc.env.unwrap(), ["B=two words", "A=3"]);
        assert_eq!(cc.working_dir.as_deref(), Some("/srv"));
        assert_eq!(cc.labels.unwrap()["z"], "a b");
        assert!(cc.exposed_ports.unwrap().contains_key("53/udp"));
        let mut c = ImageConfig::default();
        for bad in ["RUN make", "CMD", "ENV", "LABEL novalue", "CMD [broken"] {
            let e = c.apply_change(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
