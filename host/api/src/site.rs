//! Which `Host` and `Origin` headers name this server, against DNS
//! rebinding and cross-site requests: a `Host` must be the bound address
//! (any loopback address or `localhost` when bound to loopback; any IP
//! literal when bound to all interfaces, since rebinding needs a name) on
//! the bound port, or one of `[api] allowed_hosts`; an `Origin` must be one
//! of those same authorities over http or https. Parsing never panics:
//! anything malformed is simply not this server.

use std::net::{IpAddr, SocketAddr};

/// The server's own names.
#[derive(Debug, Clone)]
pub struct Site {
    bound: SocketAddr,
    /// Configured names, lower-case, each with its port when one was given.
    names: Vec<(String, Option<u16>)>,
}

/// A parsed authority (`host[:port]`).
struct Authority {
    host: url::Host<String>,
    /// The port written, or the scheme's default.
    port: u16,
    explicit_port: bool,
}

fn parse_authority(text: &str, default_port: u16) -> Option<Authority> {
    let text = text.trim();
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if text.is_empty() || text.len() > 255 || !text.chars().all(ok_char) {
        return None;
    }
    let u = url::Url::parse(&format!("http://{text}/")).ok()?;
    let host = u.host()?.to_owned();
    // The url crate drops a written ":80" for http; put it back from the text.
    let explicit_port = u.port().is_some() || text.ends_with(":80");
    let port = u
        .port()
        .unwrap_or(if explicit_port { 80 } else { default_port });
    Some(Authority {
        host,
        port,
        explicit_port,
    })
}

fn domain(h: &url::Host<String>) -> Option<String> {
    match h {
        url::Host::Domain(d) => Some(d.trim_end_matches('.').to_ascii_lowercase()),
        _ => None,
    }
}

impl Site {
    /// `allowed` entries are `name` or `name:port`; malformed ones are
    /// skipped here (the settings validation refuses them first).
    pub fn new(bound: SocketAddr, allowed: &[String]) -> Site {
        let names = allowed
            .iter()
            .filter_map(|a| {
                let auth = parse_authority(a, 0)?;
                let name = domain(&auth.host)
                    .or_else(|| Some(auth.host.to_string().to_ascii_lowercase()))?;
                Some((name, auth.explicit_port.then_some(auth.port)))
            })
            .collect();
        Site { bound, names }
    }

    fn allowed(&self, a: &Authority) -> bool {
        let bound_ip = self.bound.ip();
        let on_our_port = a.port == self.bound.port();
        let ip = match &a.host {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(*v6)),
            url::Host::Domain(_) => None,
        };
        let builtin = match (ip, domain(&a.host).as_deref()) {
            (Some(ip), _) => {
                ip == bound_ip
                    || bound_ip.is_unspecified()
                    || (bound_ip.is_loopback() && ip.is_loopback())
            }
            (None, Some("localhost")) => bound_ip.is_loopback() || bound_ip.is_unspecified(),
            _ => false,
        };
        if builtin && on_our_port {
            return true;
        }
        let name = domain(&a.host).unwrap_or_else(|| a.host.to_string().to_ascii_lowercase());
        self.names.iter().any(|(n, p)| {
            *n == name
                && match p {
                    Some(p) => *p == a.port,
                    None => on_our_port || !a.explicit_port,
                }
        })
    }

    /// Whether a request's `Host` header names this server.
    pub fn host_allowed(&self, host: &str) -> bool {
        parse_authority(host, 80).is_some_and(|a| self.allowed(&a))
    }

    /// Whether an `Origin` header is this server's own (same-site) origin.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim();
        let (rest, default_port) = if let Some(r) = origin.strip_prefix("http://") {
            (r, 80)
        } else if let Some(r) = origin.strip_prefix("https://") {
            (r, 443)
        } else {
            return false;
        };
        parse_authority(rest, default_port).is_some_and(|a| self.allowed(&a))
    }
}

/// Checks one `[api] allowed_hosts` entry: `name` or `name:port`.
pub fn valid_name(entry: &str) -> bool {
    parse_authority(entry, 0).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(bound: &str, names: &[&str]) -> Site {
        Site::new(
            bound.parse().unwrap(),
            &names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn hosts() {
        let s = site("127.0.0.1:8080", &["trader.lan", "proxy.example:443"]);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
            "127.0.0.2:8080",
            "trader.lan",
            "trader.lan.",
            "Trader.LAN:8080",
            "proxy.example:443",
        ] {
            assert!(s.host_allowed(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "127.0.0.1:8081",
            "localhost",
            "10.0.0.1:8080",
            "trader.lan:9999",
            "proxy.example",
            "user@127.0.0.1:8080",
            "127.0.0.1:8080/x",
            "127.0.0.1:8080#",
            "127.0.0.1:99999",
            "[::1",
            "\u{0}",
            "lоcalhost:8080",
        ] {
            assert!(!s.host_allowed(bad), "{bad:?}");
        }
        let any = site("0.0.0.0:80", &[]);
        assert!(any.host_allowed("192.168.1.5") && any.host_allowed("localhost:80"));
        assert!(!any.host_allowed("rebind.evil.example"));
        let lan = site("192.168.1.5:8080", &[]);
        assert!(lan.host_allowed("192.168.1.5:8080"));
        assert!(!lan.host_allowed("localhost:8080") && !lan.host_allowed("127.0.0.1:8080"));
    }

    #[test]
    fn origins() {
        let s = site("127.0.0.1:8080", &["trader.lan"]);
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "https://trader.lan",
        ] {
            assert!(s.origin_allowed(ok), "{ok}");
        }
        for bad in [
            "null",
            "",
            "https://evil.example",
            "http://localhost:3000",
            "http://127.0.0.1",
            "file://",
            "ws://127.0.0.1:8080",
            "http://127.0.0.1:8080.evil.example",
        ] {
            assert!(!s.origin_allowed(bad), "{bad:?}");
        }
    }

    #[test]
    fn no_input_panics() {
        let s = site("127.0.0.1:8080", &["a"]);
        let pieces = [
            "",
            ":",
            "[",
            "]",
            "::",
            "[::]",
            "%",
            "0",
            "99999999999",
            "a",
            ".",
            "-",
            "http://",
            "xn--",
            "@",
            "é",
            "\u{200e}",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let t = format!("{a}{b}{c}");
                    let _ = s.host_allowed(&t);
                    let _ = s.origin_allowed(&t);
                    let _ = valid_name(&t);
                }
            }
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            #[test]
            fn any_host_or_origin_header_is_judged_without_a_panic(
                text in prop_oneof!["(?s).{0,80}", "(https?://)?[a-z0-9.:\\[\\]%-]{0,40}"],
                names in proptest::collection::vec("[ -~]{0,20}", 0..3),
            ) {
                let s = Site::new("127.0.0.1:8080".parse().unwrap(), &names);
                let _ = s.host_allowed(&text);
                let _ = s.origin_allowed(&text);
                let _ = valid_name(&text);
            }
        }
    }
}
