//! Proving a club is live on the release it was switched to: through each webroot's own
//! address, the probe (see [`super::probe`]) must say the site runs from the release directory
//! (this replaces any fixed wait after a reload: a club counts as switched once proven), and
//! the application's own page must answer as configured. Checks run concurrently (bounded),
//! each request on a fresh connection (a kept-alive connection to a child from before a
//! graceful reload would still answer with old code) and with its own timeout.

use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::HealthSettings;
use crate::domain::parse_connect_to;

use super::probe::{self, ProbeKey};

/// How much of a failing response's body is kept.
const BODY_KEPT: usize = 4096;

/// A webroot to check.
#[derive(Debug, Clone)]
pub struct Target {
    /// "club zermatt" (or "club zermatt's mobile"), for messages.
    pub label: String,
    /// The site's address; `None`: it cannot be checked.
    pub url: Option<String>,
}

/// What to prove.
pub struct Check<'a> {
    pub settings: &'a HealthSettings,
    /// The release directory every target must run from, canonical.
    pub release_dir: &'a Path,
    /// The probe secret, when the release has a probe.
    pub probe: Option<&'a ProbeKey>,
    /// Whether the release's probe takes each site's token (else the secret: an old release).
    pub per_host: bool,
    /// Whether the web server was reloaded after the switch. Then the probe must show the
    /// release before the deadline; without a reload PHP may serve the old release for
    /// minutes (or, with `opcache.validate_timestamps=0`, until a restart), so the probe is
    /// asked once and a club still on its old release is [`Verdict::NotLive`], not healthy.
    pub reloaded: bool,
}

/// How one target's check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy; `proven`: the probe showed the release, after `took`.
    Healthy { proven: bool, took: Duration },
    /// Not checked, and why (no address): never counted as healthy.
    NotChecked(String),
    /// Switched, but the site still runs from another release (no reload followed the
    /// switch), and why we know: never counted as healthy, nor as a failure.
    NotLive(String),
    /// Failed: why (for the log), the same in plain words for staff ("did not answer
    /// (connection refused)"), and the failing response (status, headers, the start of the
    /// body).
    Failed {
        reason: String,
        plain: String,
        response: Option<String>,
    },
}

impl Verdict {
    pub fn failed(&self) -> bool {
        matches!(self, Verdict::Failed { .. })
    }

    /// The verdict as stored with a webroot and shown to staff: `healthy`, `failed` or
    /// `unchecked`, and why (a failure in plain words: the technical line is the log's).
    pub fn recorded(&self) -> (&'static str, Option<&str>) {
        match self {
            Verdict::Healthy { .. } => ("healthy", None),
            Verdict::NotChecked(why) | Verdict::NotLive(why) => ("unchecked", Some(why)),
            Verdict::Failed { plain, .. } => ("failed", Some(plain)),
        }
    }
}

/// Checks every target, at most `concurrency` at once; `report` is told of each verdict as it
/// comes (in the caller's thread). Returns the verdicts in the targets' order.
pub fn check_all(
    targets: &[Target],
    check: &Check<'_>,
    mut report: impl FnMut(&Target, &Verdict),
) -> Vec<Verdict> {
    let agent = agent(check.settings);
    let deadline = Instant::now() + Duration::from_secs(check.settings.timeout_secs);
    let next = AtomicUsize::new(0);
    let mut verdicts: Vec<Option<Verdict>> = vec![None; targets.len()];
    let (sender, receiver) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..check.settings.concurrency.min(targets.len()) {
            let (sender, agent, next) = (sender.clone(), agent.clone(), &next);
            scope.spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(target) = targets.get(n) else { break };
                    let verdict = check_one(&agent, target, check, deadline);
                    if sender.send((n, verdict)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        for (n, verdict) in receiver {
            report(&targets[n], &verdict);
            verdicts[n] = Some(verdict);
        }
    });
    verdicts
        .into_iter()
        .map(|v| v.expect("every target is checked"))
        .collect()
}

/// A client that never reuses a connection, follows no redirect (the expected status is the
/// first answer's), and connects to `connect_to` when set.
fn agent(settings: &HealthSettings) -> ureq::Agent {
    let mut builder = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(settings.request_timeout_ms))
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .redirects(0)
        .user_agent("clubdeploy-health");
    if let Some(address) = settings.connect_to.clone() {
        builder = builder.resolver(move |netloc: &str| -> std::io::Result<Vec<SocketAddr>> {
            let site_port = netloc
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse().ok())
                .unwrap_or(80);
            let (host, port) = parse_connect_to(&address)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            Ok(format!("{host}:{}", port.unwrap_or(site_port))
                .to_socket_addrs()?
                .collect())
        });
    } else {
        // A site's own name may still resolve to this machine (or be made to, later): those
        // addresses are never asked, whatever the name.
        builder = builder.resolver(|netloc: &str| -> std::io::Result<Vec<SocketAddr>> {
            let all: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
            let outside: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| !crate::domain::is_internal_address(a.ip()))
                .collect();
            if outside.is_empty() && !all.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{netloc} resolves to this machine or a link-local address, which the \
                         health checks do not ask unless `[health] connect_to` is set"
                    ),
                ));
            }
            Ok(outside)
        });
    }
    builder.build()
}

fn check_one(
    agent: &ureq::Agent,
    target: &Target,
    check: &Check<'_>,
    deadline: Instant,
) -> Verdict {
    let Some(url) = &target.url else {
        return Verdict::NotChecked("it has no site address to check it through".into());
    };
    let base = base_of(url);
    let started = Instant::now();
    let mut not_live = None;
    let proven = match check.probe {
        None => false,
        Some(key) if check.reloaded => match prove(agent, &base, key, check, deadline) {
            Ok(()) => true,
            Err(failed) => return failed,
        },
        // No reload: one question, whatever it answers.
        Some(key) => match prove(agent, &base, key, check, Instant::now()) {
            Ok(()) => true,
            Err(Verdict::Failed { reason, .. }) => {
                not_live = Some(format!("switched, not live yet (no reload): {reason}"));
                false
            }
            Err(other) => return other,
        },
    };
    let page = format!("{base}{}", check.settings.path);
    // The page may blip once right after a reload; a failure must hold for three tries.
    let mut last = None;
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        let secrets: Vec<String> = check
            .probe
            .map(|k| vec![k.secret().to_owned(), k.credential(&base, check.per_host)])
            .unwrap_or_default();
        match expect_page(agent, &page, check.settings, &secrets) {
            Ok(()) if not_live.is_some() => {
                return Verdict::NotLive(not_live.expect("just matched"));
            }
            Ok(()) => {
                return Verdict::Healthy {
                    proven,
                    took: started.elapsed(),
                };
            }
            Err(failed) => last = Some(failed),
        }
    }
    last.expect("three tries")
}

/// The address without query, fragment or trailing slash: paths are added to it.
fn base_of(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    url[..end].trim_end_matches('/').to_owned()
}

/// The status `url` answers a plain GET with (through `connect_to`, like the checks), or why
/// it does not answer.
pub fn status_of(settings: &HealthSettings, url: &str) -> anyhow::Result<u16> {
    match agent(settings).get(url).call() {
        Ok(response) => Ok(response.status()),
        Err(ureq::Error::Status(code, _)) => Ok(code),
        Err(e) => anyhow::bail!("no answer: {e}"),
    }
}

/// Asks the probe at `url` (a site's address) once, with `?scripts=1` when `scripts`: its
/// JSON answer, or why there is none.
pub fn ask_probe(
    settings: &HealthSettings,
    url: &str,
    key: &ProbeKey,
    per_host: bool,
    scripts: bool,
) -> anyhow::Result<serde_json::Value> {
    let query = if scripts { "?scripts=1" } else { "" };
    let credential = key.credential(url, per_host);
    let url = format!("{}/{}{query}", base_of(url), probe::PROBE_PATH);
    let response = match agent(settings)
        .get(&url)
        .set(probe::HEADER, &credential)
        .call()
    {
        Ok(response) => response,
        Err(ureq::Error::Status(code, _)) => anyhow::bail!("the probe at {url} answered {code}"),
        Err(e) => anyhow::bail!("the probe at {url} did not answer: {e}"),
    };
    // With ?scripts=1 the answer lists every release directory in the cache: allow 1 MB.
    let mut body = Vec::new();
    response
        .into_reader()
        .take(1 << 20)
        .read_to_end(&mut body)?;
    serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("the probe at {url} gave no JSON: {e}"))
}

/// Asks the probe until it says the release, or the deadline passes.
fn prove(
    agent: &ureq::Agent,
    base: &str,
    key: &ProbeKey,
    check: &Check<'_>,
    deadline: Instant,
) -> Result<(), Verdict> {
    let url = format!("{base}/{}", probe::PROBE_PATH);
    let wanted = check.release_dir.to_string_lossy();
    let credential = key.credential(base, check.per_host);
    let secrets = [key.secret().to_owned(), credential.clone()];
    let mut tries = 0;
    loop {
        let seen = match agent.get(&url).set(probe::HEADER, &credential).call() {
            Ok(response) => {
                let body = read_body(response.into_reader());
                let dir = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|answer| answer["release_dir"].as_str().map(str::to_owned));
                match dir {
                    Some(dir) if dir == wanted => Ok(()),
                    Some(dir) => Err((
                        format!("it still runs from {dir}"),
                        "still ran the version before".to_owned(),
                        None,
                    )),
                    None => Err((
                        format!("not the probe's answer: {body:.200}"),
                        "did not show which version it runs (its health probe did not answer)"
                            .to_owned(),
                        None,
                    )),
                }
            }
            Err(ureq::Error::Status(code, response)) => Err((
                format!("the probe answered {code}"),
                answered(code),
                Some(describe(code, response, &secrets)),
            )),
            Err(e) => Err((format!("{e}"), no_answer(&e), None)),
        };
        match seen {
            Ok(()) => return Ok(()),
            Err((reason, plain, response)) if Instant::now() >= deadline => {
                return Err(Verdict::Failed {
                    reason: format!("not proven on {wanted} in time: {reason}"),
                    plain,
                    response,
                });
            }
            Err(_) => {
                let left = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(retry_after(tries).min(left));
                tries += 1;
            }
        }
    }
}

/// How long to wait before asking the probe again after `tries` answers that did not prove
/// the release: 25 ms, doubling each time, at most a second. A reload is usually seen within
/// the first few tries; a site that keeps failing is asked about once a second, not forty
/// times.
pub fn retry_after(tries: u32) -> Duration {
    Duration::from_millis(25u64.saturating_mul(1 << tries.min(6)).min(1000))
}

/// Requests the application's page once: the expected status and text, or why not.
fn expect_page(
    agent: &ureq::Agent,
    url: &str,
    settings: &HealthSettings,
    secrets: &[String],
) -> Result<(), Verdict> {
    let (code, response) = match agent.get(url).call() {
        Ok(response) => (response.status(), response),
        Err(ureq::Error::Status(code, response)) => (code, response),
        Err(e) => {
            return Err(Verdict::Failed {
                reason: format!("{url} did not answer: {e}"),
                plain: no_answer(&e),
                response: None,
            });
        }
    };
    let shown = describe(code, response, secrets);
    if code != settings.expect_status {
        return Err(Verdict::Failed {
            reason: format!("{url} answered {code}, not {}", settings.expect_status),
            plain: answered(code),
            response: Some(shown),
        });
    }
    if let Some(text) = &settings.expect_text
        && !shown.contains(text.as_str())
    {
        return Err(Verdict::Failed {
            reason: format!("{url} answered {code} without {text:?}"),
            plain: format!("answered, but without the text “{text}”"),
            response: Some(shown),
        });
    }
    Ok(())
}

/// A site that did not answer, in plain words: "did not answer (connection refused)".
fn no_answer(e: &ureq::Error) -> String {
    let why = match e {
        ureq::Error::Status(code, _) => return answered(*code),
        ureq::Error::Transport(t) => match (t.kind(), io_kind(t)) {
            // The resolver's refusal (see `agent`).
            (_, Some(std::io::ErrorKind::PermissionDenied)) => {
                "its address is this machine, which health checks never ask"
            }
            (ureq::ErrorKind::Dns, _) => "its address was not found",
            (_, Some(std::io::ErrorKind::ConnectionRefused)) => "connection refused",
            (_, Some(std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)) => {
                "it took too long"
            }
            (ureq::ErrorKind::Io, _) => "the connection broke off",
            (ureq::ErrorKind::TooManyRedirects, _) => "too many redirects",
            _ => "no connection",
        },
    };
    format!("did not answer ({why})")
}

/// The kind of the I/O error behind a transport error, if one is.
fn io_kind(e: &ureq::Transport) -> Option<std::io::ErrorKind> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = cause.source();
    }
    None
}

/// A site that answered the wrong status, in plain words.
fn answered(code: u16) -> String {
    match code {
        500..=599 => format!("answered with an error (HTTP {code})"),
        404 => "answered “not found” (HTTP 404)".to_owned(),
        401 | 403 => format!("refused the check (HTTP {code})"),
        _ => format!("answered HTTP {code}, not the page expected"),
    }
}

/// A response as the job log keeps it: status line, headers, the first 4 KB of the body.
fn describe(code: u16, response: ureq::Response, secrets: &[String]) -> String {
    let mut text = format!("HTTP {code} {}\n", response.status_text());
    for name in response.headers_names() {
        if let Some(value) = response.header(&name) {
            text.push_str(&format!("{name}: {value}\n"));
        }
    }
    text.push('\n');
    text.push_str(&read_body(response.into_reader()));
    redact(&text, secrets)
}

/// What replaces a secret in a stored response.
const REDACTED: &str = "[redacted]";

/// `text` (a response as kept in a job's log) with the values of headers that carry
/// credentials (cookies, authorization, the probe's header) and every occurrence of each of
/// `secrets` (the probe secret, a site's token: a site may echo the request) replaced by
/// `[redacted]`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    const CARRY_SECRETS: [&str; 4] = [
        "set-cookie",
        "cookie",
        "authorization",
        "x-clubdeploy-probe",
    ];
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match line.split_once(':') {
            Some((name, _))
                if CARRY_SECRETS
                    .iter()
                    .any(|h| name.trim().eq_ignore_ascii_case(h)) =>
            {
                out.push_str(&format!("{name}: {REDACTED}\n"));
            }
            _ => out.push_str(line),
        }
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret.as_str(), REDACTED);
    }
    out
}

fn read_body(reader: impl Read) -> String {
    let mut body = Vec::new();
    let _ = reader.take(BODY_KEPT as u64).read_to_end(&mut body);
    String::from_utf8_lossy(&body).into_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_site_that_does_not_answer_or_answers_wrong_is_said_in_plain_words() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let e = ureq::get(&format!("http://127.0.0.1:{port}/"))
            .call()
            .unwrap_err();
        assert_eq!(super::no_answer(&e), "did not answer (connection refused)");
        // The checks' resolver refuses this machine.
        let settings = crate::config::HealthSettings::default();
        let e = super::agent(&settings)
            .get(&format!("http://127.0.0.1:{port}/"))
            .call()
            .unwrap_err();
        assert_eq!(
            super::no_answer(&e),
            "did not answer (its address is this machine, which health checks never ask)",
            "{e:?}"
        );
        assert_eq!(super::answered(502), "answered with an error (HTTP 502)");
        assert_eq!(super::answered(404), "answered “not found” (HTTP 404)");
    }

    #[test]
    fn the_probe_is_asked_again_ever_later_up_to_once_a_second() {
        let waits: Vec<u128> = (0..9).map(|n| super::retry_after(n).as_millis()).collect();
        assert_eq!(waits, [25, 50, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(super::retry_after(u32::MAX), Duration::from_secs(1));
        // In 30 s of failing answers: a few dozen questions, not 1,200.
        let (mut spent, mut asked) = (Duration::ZERO, 0);
        while spent < Duration::from_secs(30) {
            spent += super::retry_after(asked);
            asked += 1;
        }
        assert!(asked < 40, "{asked}");
    }

    #[test]
    fn a_kept_response_holds_no_credential_and_not_the_probe_secret() {
        let text = "HTTP 500 Internal Server Error\nSet-Cookie: sid=abc\nX-Clubdeploy-Probe: s3cr3t\n\
                    authorization : Basic eA==\nContent-Type: text/html\n\nthe header was s3cr3t or t0k3n\n";
        let kept = super::redact(text, &["s3cr3t".into(), "t0k3n".into()]);
        assert!(
            !kept.contains("s3cr3t") && !kept.contains("sid=abc"),
            "{kept}"
        );
        assert!(!kept.contains("eA=="), "{kept}");
        assert!(kept.contains("Set-Cookie: [redacted]"), "{kept}");
        assert!(kept.contains("Content-Type: text/html"), "{kept}");
        assert!(
            kept.contains("the header was [redacted] or [redacted]"),
            "{kept}"
        );
        assert_eq!(super::redact("plain", &[]), "plain");
    }

    #[test]
    fn paths_are_added_to_the_address_without_its_query() {
        assert_eq!(super::base_of("https://a.example/"), "https://a.example");
        assert_eq!(
            super::base_of("https://a.example/x/?k=v#f"),
            "https://a.example/x"
        );
        assert_eq!(
            super::base_of("http://a.example:8080"),
            "http://a.example:8080"
        );
    }
}
