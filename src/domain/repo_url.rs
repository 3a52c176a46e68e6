use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::InvalidInput;

/// The application's git repository as configured: a local path, `file://`, `http(s)://`,
/// `ssh://user@host[:port]/path`, `git://` or the scp-like `user@host:path`. A password or
/// token in it (`https://user:TOKEN@host/…`) never leaves this type except through
/// [`RepoUrl::credentials`]: `Display` and `Debug` show it as `***`, and [`RepoUrl::for_git`]
/// (what goes into a child's argv) leaves it out.
#[derive(Clone, PartialEq, Eq)]
pub struct RepoUrl {
    /// The URL as configured, secret included.
    full: String,
    /// Where the password starts and ends in `full`, if there is one.
    password: Option<(usize, usize)>,
    kind: UrlKind,
}

/// How git reaches the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlKind {
    /// A path or `file://` URL on this machine.
    Local,
    /// `http://` or `https://`.
    Http,
    /// `ssh://` or the scp-like `[user@]host:path`.
    Ssh,
    /// `git://`, the unauthenticated git protocol.
    Git,
}

/// A user name and password taken out of the URL, for a credential helper.
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl RepoUrl {
    /// Accepts the forms git fetches from; refuses anything else (git's `ext::` transport runs
    /// commands) with a reason.
    pub fn parse(s: &str) -> Result<RepoUrl, InvalidInput> {
        let s = s.trim();
        let refuse = |why: &str| Err(InvalidInput(format!("the repository URL {why}")));
        if s.is_empty() {
            return refuse("is empty");
        }
        if s.chars().any(char::is_control) {
            return refuse("holds a control character");
        }
        if s.starts_with('-') {
            return refuse("may not start with '-'");
        }
        let (kind, authority) = if let Some((scheme, rest)) = s.split_once("://") {
            let kind = match scheme.to_ascii_lowercase().as_str() {
                "https" | "http" => UrlKind::Http,
                "ssh" | "git+ssh" | "ssh+git" => UrlKind::Ssh,
                "git" => UrlKind::Git,
                "file" => UrlKind::Local,
                other => {
                    return refuse(&format!(
                        "uses the scheme {other:?}, which is not supported (use a path, \
                         file://, https://, ssh:// or user@host:path)"
                    ));
                }
            };
            let start = scheme.len() + 3;
            let end = rest.find('/').map_or(s.len(), |i| start + i);
            (kind, Some((start, end)))
        } else if s.contains("::") {
            return refuse("uses git's <transport>::<address> form, which is not supported");
        } else if s.starts_with('/') || s.starts_with('.') {
            (UrlKind::Local, None)
        } else if let Some((host, _)) = s.split_once(':')
            && !host.contains('/')
        {
            // scp-like: [user@]host:path (ssh), as git reads it.
            (UrlKind::Ssh, None)
        } else {
            (UrlKind::Local, None)
        };
        let password = authority.and_then(|(start, end)| {
            let userinfo_end = start + s[start..end].rfind('@')?;
            let colon = s[start..userinfo_end].find(':')?;
            Some((start + colon + 1, userinfo_end))
        });
        if kind == UrlKind::Http && authority.is_some_and(|(start, end)| start == end) {
            return refuse("names no host");
        }
        Ok(RepoUrl {
            full: s.to_owned(),
            password,
            kind,
        })
    }

    /// How git reaches the repository.
    pub fn kind(&self) -> UrlKind {
        self.kind
    }

    /// The URL to hand to git: the password left out (a credential helper supplies it).
    pub fn for_git(&self) -> String {
        match self.password {
            Some((start, end)) => format!("{}{}", &self.full[..start - 1], &self.full[end..]),
            None => self.full.clone(),
        }
    }

    /// The URL as shown to people: the password replaced by `***`.
    pub fn redacted(&self) -> String {
        match self.password {
            Some((start, end)) => format!("{}***{}", &self.full[..start], &self.full[end..]),
            None => self.full.clone(),
        }
    }

    /// The user name and password written into the URL, percent-decoded, if it holds both.
    pub fn credentials(&self) -> Option<Credentials> {
        let (start, end) = self.password?;
        let user_start = self.full[..start].rfind('/')? + 1;
        Some(Credentials {
            username: percent_decode(&self.full[user_start..start - 1]),
            password: percent_decode(&self.full[start..end]),
        })
    }

    /// Replaces every occurrence of the secret (as written and decoded) in `text` with `***`,
    /// for output of programs that might echo it.
    pub fn scrub(&self, text: &str) -> String {
        let Some(credentials) = self.credentials() else {
            return text.to_owned();
        };
        let (start, end) = self.password.expect("credentials imply a password");
        let mut text = text.to_owned();
        for secret in [&self.full[start..end], credentials.password.as_str()] {
            if !secret.is_empty() {
                text = text.replace(secret, "***");
            }
        }
        text
    }

    /// The host (and port, if the URL names one) git connects to, for messages; `None` for a
    /// local repository.
    pub fn host_and_port(&self) -> Option<(String, Option<u16>)> {
        let without_user = |authority: &str| -> String {
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host)
                .to_owned()
        };
        match self.kind {
            UrlKind::Local => None,
            _ if self.full.contains("://") => {
                let rest = self.full.split_once("://")?.1;
                let authority = without_user(rest.split('/').next().unwrap_or(""));
                if let Some(bracketed) = authority.strip_prefix('[') {
                    let (host, after) = bracketed.split_once(']')?;
                    let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
                    return Some((host.to_owned(), port));
                }
                match authority.rsplit_once(':') {
                    Some((host, port)) if port.parse::<u16>().is_ok() => {
                        Some((host.to_owned(), port.parse().ok()))
                    }
                    _ => Some((authority, None)),
                }
            }
            _ => {
                let (authority, _) = self.full.split_once(':')?;
                Some((without_user(authority), None))
            }
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoUrl({:?})", self.redacted())
    }
}

impl Serialize for RepoUrl {
    /// Serialized redacted: settings are never written back with the secret.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for RepoUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        RepoUrl::parse(&text).map_err(|e| serde::de::Error::custom(e.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_in_an_https_url_is_hidden_everywhere_but_the_credentials() {
        let url = RepoUrl::parse("https://deploy:s%40cret@git.example.org/org/app.git").unwrap();
        assert_eq!(url.kind(), UrlKind::Http);
        assert_eq!(
            url.redacted(),
            "https://deploy:***@git.example.org/org/app.git"
        );
        assert_eq!(url.to_string(), url.redacted());
        assert!(!format!("{url:?}").contains("cret"));
        assert_eq!(url.for_git(), "https://deploy@git.example.org/org/app.git");
        let credentials = url.credentials().unwrap();
        assert_eq!(credentials.username, "deploy");
        assert_eq!(credentials.password, "s@cret");
        assert_eq!(
            url.scrub("fatal: s%40cret and s@cret"),
            "fatal: *** and ***"
        );
        assert_eq!(
            url.host_and_port(),
            Some(("git.example.org".to_owned(), None))
        );
    }

    #[test]
    fn urls_without_a_secret_are_kept_as_they_are() {
        for (text, kind, host) in [
            ("/srv/git/app.git", UrlKind::Local, None),
            ("file:///srv/git/app.git", UrlKind::Local, None),
            (
                "git@github.com:org/app.git",
                UrlKind::Ssh,
                Some(("github.com", None)),
            ),
            ("clubgit:app.git", UrlKind::Ssh, Some(("clubgit", None))),
            (
                "ssh://git@127.0.0.1:2222/srv/app.git",
                UrlKind::Ssh,
                Some(("127.0.0.1", Some(2222))),
            ),
            (
                "https://github.com/org/app.git",
                UrlKind::Http,
                Some(("github.com", None)),
            ),
            (
                "https://[::1]:8443/app.git",
                UrlKind::Http,
                Some(("::1", Some(8443))),
            ),
        ] {
            let url = RepoUrl::parse(text).unwrap();
            assert_eq!(url.kind(), kind, "{text}");
            assert_eq!(url.redacted(), text);
            assert_eq!(url.for_git(), text);
            assert!(url.credentials().is_none());
            let host = host.map(|(h, p): (&str, Option<u16>)| (h.to_owned(), p));
            assert_eq!(url.host_and_port(), host, "{text}");
        }
    }

    #[test]
    fn transports_that_run_commands_are_refused() {
        for text in [
            "ext::sh -c touch% /tmp/x",
            "fd::3",
            "-uhack",
            "",
            "foo://x/y",
            "a\nb",
        ] {
            assert!(RepoUrl::parse(text).is_err(), "{text:?}");
        }
    }
}
