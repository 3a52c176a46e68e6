//! Addresses: a club's site address, and where the health checks connect (`[health]
//! connect_to`, a host with an optional port).

use super::InvalidInput;

/// Checks a site address: http or https, with no control character or space (a CR/LF would
/// split the health check's request) and no `user:password@` (the panel shows addresses to
/// every viewer, and a health check must not sign in anywhere).
pub fn check_url(url: &str) -> Result<(), InvalidInput> {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(InvalidInput(format!(
            "address {url:?} must start with http:// or https://"
        )));
    };
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(InvalidInput(format!(
            "address {url:?} holds a space or a control character (a line break?); give the \
             address alone"
        )));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(InvalidInput(format!(
            "address {url:?} holds a user name or password before '@'; give the address \
             without them"
        )));
    }
    if authority.is_empty() {
        return Err(InvalidInput(format!("address {url:?} names no host")));
    }
    Ok(())
}

/// Reads `[health] connect_to`: a host name or address with an optional port (`127.0.0.1`,
/// `127.0.0.1:8080`, `::1`, `[::1]:8080`, `web1.internal:8443`). Without a port, each
/// site's own port is used.
pub fn parse_connect_to(text: &str) -> Result<(String, Option<u16>), String> {
    let refuse = |why: &str| {
        Err(format!(
            "{text:?} is not a host with an optional port: {why}"
        ))
    };
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(format!(
            "{text:?}: the port {p:?} is not a number from 1 to 65535"
        )),
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return refuse("a '[' without its ']'");
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (host, port(p)?),
                None => return refuse("only ':' and a port may follow ']'"),
            },
        }
    } else if text.matches(':').count() > 1 {
        // A bare IPv6 address: no port (write [::1]:8080 for one).
        (text, None)
    } else if let Some((host, p)) = text.split_once(':') {
        (host, port(p)?)
    } else {
        (text, None)
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '%' | '_');
    if host.is_empty() || !host.chars().all(plain) {
        return refuse("use a host name or an IP address");
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_takes_a_host_with_or_without_a_port() {
        let ok = |text: &str| parse_connect_to(text).unwrap();
        assert_eq!(ok("127.0.0.1"), ("127.0.0.1".into(), None));
        assert_eq!(ok("127.0.0.1:8080"), ("127.0.0.1".into(), Some(8080)));
        assert_eq!(ok("::1"), ("::1".into(), None));
        assert_eq!(ok("[::1]"), ("::1".into(), None));
        assert_eq!(ok("[::1]:8443"), ("::1".into(), Some(8443)));
        assert_eq!(ok("web1.internal:81"), ("web1.internal".into(), Some(81)));
        for bad in [
            "",
            "127.0.0.1:",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            "[::1",
            "[::1]x",
            "a b",
            "h:x",
        ] {
            assert!(parse_connect_to(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
