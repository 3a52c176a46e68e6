//! Addresses: a club's site address, and where the health checks connect (`[health]
//! connect_to`, a host with an optional port).

use super::InvalidInput;

/// Checks a site address: http or https, with no control character or space (a CR/LF would
/// split the health check's request) and no `user:password@` (the panel shows addresses to
/// every viewer, and a health check must not sign in anywhere). Unless the health checks
/// connect to a configured server (`connect_to`), the host may not be this machine or a
/// link-local address: the checks would ask the panel itself, a service on loopback or a
/// cloud's metadata address on staff's behalf.
pub fn check_url(url: &str, connect_to: bool) -> Result<(), InvalidInput> {
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
    if !connect_to && is_internal_host(host_of(authority)) {
        return Err(InvalidInput(format!(
            "address {url:?} is this machine or a link-local address, which the health checks \
             may not ask; give the club's public address (to check sites served here, set \
             `[health] connect_to`)"
        )));
    }
    Ok(())
}

/// The host an address (`scheme://[user@]host[:port]/…`) names, lower-case, without a
/// trailing dot; `None` when it is no such address.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(host_of(authority))
}

/// The host of `host[:port]` or `[v6][:port]`, lower-case, without a trailing dot.
fn host_of(authority: &str) -> String {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        },
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` names this machine or a link-local address by its name or address.
fn is_internal_host(host: String) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(is_internal_address)
}

/// Whether `ip` is loopback, unspecified or link-local (IPv4-mapped IPv6 included): an
/// address on this machine, or one only this machine's link reaches (169.254.169.254, a
/// cloud's metadata service).
pub fn is_internal_address(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_address(IpAddr::V4(v4)),
            None => {
                v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        },
    }
}

/// What sign-ins are counted and queued by for a client `address`: an IPv4 address as it
/// is (an IPv4-mapped IPv6 one as IPv4), an IPv6 address by its /64 (one customer's network:
/// a flood that takes a new address from it for each guess is still one sender), anything
/// else as written.
pub fn sign_in_key(address: &str) -> String {
    use std::net::IpAddr;
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let network = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{network}/64")
            }
        },
        Err(_) => address.to_owned(),
    }
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
    fn the_host_an_address_names() {
        assert_eq!(
            url_host("https://Zermatt.example:8443/x").as_deref(),
            Some("zermatt.example")
        );
        assert_eq!(
            url_host("http://u:p@davos.example/").as_deref(),
            Some("davos.example")
        );
        assert_eq!(url_host("http://[::1]:80/").as_deref(), Some("::1"));
        assert_eq!(
            url_host("http://Davos.Example./").as_deref(),
            Some("davos.example")
        );
        assert_eq!(url_host("no address"), None);
    }

    #[test]
    fn a_site_on_this_machine_or_its_link_is_refused_unless_checks_connect_elsewhere() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://127.1.2.3/",
            "http://localhost/",
            "http://LOCALHOST./x",
            "http://panel.localhost:8080",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
        ] {
            let refused = check_url(url, false).unwrap_err().0;
            assert!(refused.contains("connect_to"), "{url}: {refused}");
            assert_eq!(check_url(url, true), Ok(()), "{url}");
        }
        for url in [
            "https://club-a.example/",
            "http://10.0.0.5:8080/",
            "http://[2001:db8::1]/",
            "http://localhost.example/",
        ] {
            assert_eq!(check_url(url, false), Ok(()), "{url}");
        }
        assert!(check_url("http://user:pw@club.example/", true).is_err());
    }

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

    #[test]
    fn sign_ins_are_counted_per_ipv4_address_and_per_ipv6_network() {
        use super::sign_in_key;
        assert_eq!(sign_in_key("203.0.113.9"), "203.0.113.9");
        assert_eq!(sign_in_key("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(sign_in_key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(
            sign_in_key("2001:db8:1:2:ffff:eeee:dddd:cccc"),
            "2001:db8:1:2::/64"
        );
        assert_ne!(
            sign_in_key("2001:db8:1:3::1"),
            sign_in_key("2001:db8:1:2::1")
        );
        assert_eq!(sign_in_key("::1"), "::/64");
        assert_eq!(sign_in_key("unknown"), "unknown");
    }
}
