//! Who may talk to the server. A server on `127.0.0.1` is reachable from every web page the
//! user opens: a page can POST to it (a `text/plain` form needs no permission), and a page
//! on a DNS name that the attacker points at `127.0.0.1` ("DNS rebinding") can even read
//! the replies. So, by default, a request must name a loopback host (`localhost`,
//! `127.0.0.1`, `[::1]`) or the address the server was started on in its `Host` header, and
//! a request from a web page (one with an `Origin` header) must come from the server's own
//! page. `--allowed-host` and `--allowed-origin` widen both (`*` allows any); an allowed
//! origin also gets the CORS headers a browser needs to read the replies. With `--api-key`,
//! every `/v1/` request must carry `Authorization: Bearer KEY`, as OpenAI's clients send it.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::api::ApiError;

/// The access rules (`serve`'s `--allowed-host`, `--allowed-origin` and `--api-key`).
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Host names the `Host` header may give besides the loopback ones; `*` allows any.
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://example.org`) whose pages may call the server besides its own; `*`
    /// allows any.
    pub allowed_origins: Vec<String>,
    /// The key every `/v1/` request must give as `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
}

impl Access {
    /// These rules for a server listening on `bind`: a specific address it was started on
    /// (not `0.0.0.0` or `::`) is an allowed host too.
    pub fn for_bind_address(mut self, bind: &str) -> Self {
        let unspecified = bind.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
        if !unspecified && !bind.is_empty() {
            self.allowed_hosts.push(bind.trim_start_matches('[').trim_end_matches(']').to_string());
        }
        self
    }

    /// Checks a request's headers: 403 for a host or origin not allowed, 401 for a missing
    /// or wrong API key on `/v1/`.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        let host = headers.get(HOST).map(|value| value.to_str().unwrap_or("?"));
        if let Some(host) = host.filter(|host| !self.host_allowed(host)) {
            return Err(forbidden(format!(
                "this server does not answer to the host '{host}' (a protection against DNS rebinding); start \
                 serve with --allowed-host {} to allow it",
                host_name(host)
            )));
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("?");
            if !self.origin_allowed(origin, host) {
                return Err(forbidden(format!(
                    "requests from pages at '{origin}' are not allowed (a protection against cross-site requests); \
                     start serve with --allowed-origin {origin} to allow them"
                )));
            }
        }
        if let (Some(key), true) = (&self.api_key, path.starts_with("/v1/")) {
            let given = headers.get(AUTHORIZATION).and_then(|value| value.to_str().ok());
            let given = given.and_then(|value| value.strip_prefix("Bearer ")).map(str::trim);
            if !given.is_some_and(|given| same_secret(given, key)) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    if given.is_none() {
                        "this server needs an API key: send it as 'Authorization: Bearer KEY'"
                    } else {
                        "incorrect API key provided"
                    },
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                ));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        let loopback =
            name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        loopback || self.allowed_hosts.iter().any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(name))
    }

    /// The server's own page (the origin `http://` or `https://` plus the `Host` header) or
    /// an allowed origin.
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let own = host.is_some_and(|host| {
            origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
        });
        own || self.allowed_origins.iter().any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    }

    /// The CORS headers for the allowed origins' pages (none by default: the server's own
    /// page needs none).
    pub fn cors(&self) -> Option<CorsLayer> {
        if self.allowed_origins.is_empty() {
            return None;
        }
        let origins = if self.allowed_origins.iter().any(|origin| origin == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(self.allowed_origins.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()))
        };
        Some(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([AUTHORIZATION, axum::http::header::CONTENT_TYPE]),
        )
    }
}

/// The middleware: every request passes [`Access::check`] first.
pub async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    match access.check(request.uri().path(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, message, "invalid_request_error", None, Some("forbidden"))
}

/// `host` without its port: `localhost:8080` -> `localhost`, `[::1]:8080` -> `::1`.
fn host_name(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    }
}

/// Compares two secrets in time that depends on their lengths only.
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (name.parse().unwrap(), HeaderValue::from_str(value).unwrap())).collect()
    }

    fn status(access: &Access, path: &str, pairs: &[(&str, &str)]) -> u16 {
        access.check(path, &headers(pairs)).err().map_or(200, |err| err.status.as_u16())
    }

    #[test]
    fn loopback_hosts_and_the_own_page_pass_by_default() {
        let access = Access::default().for_bind_address("127.0.0.1");
        for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080", "LOCALHOST", "127.0.0.1"] {
            assert_eq!(status(&access, "/v1/models", &[("host", host)]), 200, "{host}");
        }
        assert_eq!(status(&access, "/v1/models", &[]), 200, "no Host header: not a browser");
        // DNS rebinding: a page on the attacker's name, resolved to 127.0.0.1.
        assert_eq!(status(&access, "/", &[("host", "evil.example:8080")]), 403);
        // A cross-site POST from another page, to the right host.
        let cross = [("host", "127.0.0.1:8080"), ("origin", "https://evil.example")];
        assert_eq!(status(&access, "/v1/completions", &cross), 403);
        assert_eq!(status(&access, "/v1/completions", &[("host", "127.0.0.1:8080"), ("origin", "null")]), 403);
        let own = [("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")];
        assert_eq!(status(&access, "/v1/completions", &own), 200);
        // Another port on the same host is another origin.
        let other_port = [("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:9999")];
        assert_eq!(status(&access, "/v1/completions", &other_port), 403);
    }

    #[test]
    fn flags_widen_the_rules_and_an_api_key_guards_the_api() {
        let access = Access {
            allowed_hosts: vec!["my-box.lan".into()],
            allowed_origins: vec!["https://app.example".into()],
            api_key: Some("sk-secret".into()),
        }
        .for_bind_address("10.0.0.5");
        let key = ("authorization", "Bearer sk-secret");
        assert_eq!(status(&access, "/v1/models", &[("host", "my-box.lan:8080"), key]), 200);
        assert_eq!(status(&access, "/v1/models", &[("host", "10.0.0.5:8080"), key]), 200);
        assert_eq!(status(&access, "/v1/models", &[("host", "other.lan"), key]), 403);
        assert_eq!(
            status(&access, "/v1/models", &[("host", "localhost"), ("origin", "https://app.example"), key]),
            200
        );
        assert_eq!(status(&access, "/v1/models", &[("host", "localhost")]), 401);
        assert_eq!(status(&access, "/v1/models", &[("host", "localhost"), ("authorization", "Bearer sk-wrong")]), 401);
        assert_eq!(status(&access, "/v1/models", &[("host", "localhost"), ("authorization", "sk-secret")]), 401);
        assert_eq!(status(&access, "/health", &[("host", "localhost")]), 200, "only /v1/ needs the key");
        let any = Access { allowed_hosts: vec!["*".into()], allowed_origins: vec!["*".into()], api_key: None };
        assert_eq!(status(&any, "/", &[("host", "anything.example"), ("origin", "https://x.example")]), 200);
        assert!(any.cors().is_some() && Access::default().cors().is_none());
        // A bind to every address allows no extra host by itself.
        assert_eq!(Access::default().for_bind_address("0.0.0.0").allowed_hosts.len(), 0);
    }
}
