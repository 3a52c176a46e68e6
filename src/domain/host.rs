//! The web hosts that serve the clubs (`[[hosts]]`): their names and how they are reached.

use std::fmt;

use super::InvalidInput;

/// A web host's name: 1 to 32 lower-case letters, digits and dashes ("web1").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

impl HostName {
    pub fn parse(s: &str) -> Result<HostName, InvalidInput> {
        if super::club::is_plain_name(s, 32) {
            Ok(HostName(s.to_owned()))
        } else {
            Err(InvalidInput(format!(
                "{s:?} is not a valid host name: use 1 to 32 lower-case letters, digits and \
                 dashes, starting with a letter or digit"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a web host is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshTarget {
    /// This machine: no SSH.
    Local,
    /// `ssh://[user@]host[:port]`.
    Url {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
    /// A `Host` alias of `~/.ssh/config`.
    Alias(String),
}

/// A user, host or alias as ssh(1) takes it: letters, digits, `.`, `_` and `-`, not starting
/// with `-` (which ssh would read as an option).
fn plain(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl SshTarget {
    /// Parses `local`, an `ssh://` URL or an alias; anything else is refused saying what is
    /// accepted.
    pub fn parse(s: &str) -> Result<SshTarget, InvalidInput> {
        let refuse = |why: &str| {
            Err(InvalidInput(format!(
                "{s:?} {why}: give \"local\" (this machine), ssh://user@host:port, or a Host \
                 alias of ~/.ssh/config"
            )))
        };
        if s == "local" {
            return Ok(SshTarget::Local);
        }
        if let Some(rest) = s.strip_prefix("ssh://") {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let (user, at) = match rest.split_once('@') {
                Some((user, at)) => (Some(user), at),
                None => (None, rest),
            };
            if user.is_some_and(|u| !plain(u)) {
                return refuse("has a user name ssh would not take");
            }
            let (host, port) = match at.rsplit_once(':') {
                Some((host, port)) => match port.parse::<u16>() {
                    Ok(p) if p > 0 => (host, Some(p)),
                    _ => return refuse("has a port that is not a number from 1 to 65535"),
                },
                None => (at, None),
            };
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .filter(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
                .unwrap_or(host);
            if !plain(host) && host.parse::<std::net::Ipv6Addr>().is_err() {
                return refuse("names no host ssh would take");
            }
            return Ok(SshTarget::Url {
                user: user.map(str::to_owned),
                host: host.to_owned(),
                port,
            });
        }
        if s.contains("://") {
            return refuse("is a URL, but not an ssh:// one");
        }
        if !plain(s) {
            return refuse("is neither a URL nor an alias");
        }
        Ok(SshTarget::Alias(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_short_and_plain() {
        assert_eq!(HostName::parse("web1").unwrap().as_str(), "web1");
        for bad in ["", "Web1", "web_1", "-web", &"a".repeat(33)] {
            assert!(HostName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_host_is_reached_locally_by_an_ssh_url_or_by_an_alias() {
        assert_eq!(SshTarget::parse("local").unwrap(), SshTarget::Local);
        assert_eq!(
            SshTarget::parse("ssh://deploy@10.0.0.11:22").unwrap(),
            SshTarget::Url {
                user: Some("deploy".into()),
                host: "10.0.0.11".into(),
                port: Some(22)
            }
        );
        assert_eq!(
            SshTarget::parse("ssh://[::1]:2222").unwrap(),
            SshTarget::Url {
                user: None,
                host: "::1".into(),
                port: Some(2222)
            }
        );
        assert_eq!(
            SshTarget::parse("web2-alias").unwrap(),
            SshTarget::Alias("web2-alias".into())
        );
        for bad in [
            "",
            "-oProxyCommand=x",
            "ssh://-oProxyCommand=x@h",
            "ssh://deploy@host:0",
            "ssh://deploy@host:99999",
            "https://host",
            "deploy@host",
            "host name",
            "ssh://deploy@",
        ] {
            let refused = SshTarget::parse(bad).unwrap_err().0;
            assert!(
                refused.contains("ssh://user@host:port"),
                "{bad:?}: {refused}"
            );
        }
    }
}
