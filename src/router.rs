//! Routing: the request-target is normalised (dot segments resolved, so `/api/a/../b` can
//! only reach the backend of `/api/b`), then the longest configured `path_prefix` that the
//! path starts with wins. The query string is never part of the match. The normalised
//! target is what gets forwarded, so the backend sees exactly the path that was routed.

use std::borrow::Cow;

use crate::config::Route;
use crate::http::host::split_absolute_form;

/// The result of routing one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index into `Config::routes`.
    pub route: usize,
    /// Index into `Config::backends`.
    pub backend: usize,
}

/// The configured routes, longest prefix first.
#[derive(Debug, Clone)]
pub struct RouteTable {
    by_length: Vec<(String, RouteMatch)>,
}

impl RouteTable {
    pub fn new(routes: &[Route]) -> RouteTable {
        let mut by_length: Vec<(String, RouteMatch)> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    r.prefix.clone(),
                    RouteMatch {
                        route: i,
                        backend: r.backend,
                    },
                )
            })
            .collect();
        by_length.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        RouteTable { by_length }
    }

    /// The route for a normalised target (its query is ignored).
    pub fn route(&self, target: &str) -> Option<RouteMatch> {
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        self.by_length
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|&(_, m)| m)
    }
}

/// A request-target that cannot be routed safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// `..` would climb above the root.
    EscapesRoot,
    /// Neither origin-form, absolute-form nor `*`.
    UnsupportedForm,
}

impl TargetError {
    pub fn reason(self) -> &'static str {
        match self {
            TargetError::EscapesRoot => "path climbs above the root with '..'",
            TargetError::UnsupportedForm => "request-target is not a path",
        }
    }
}

/// Normalises a request-target into origin-form with dot segments removed (RFC 3986
/// §5.2.4), treating percent-encoded dots (`%2e`) as dots. Borrowed when already normal.
pub fn normalize_target(target: &str) -> Result<Cow<'_, str>, TargetError> {
    let origin = if target.starts_with('/') || target == "*" {
        target
    } else if let Some((_, rest)) = split_absolute_form(target) {
        // absolute-form: the authority became the Host (`http::host`); the backend gets
        // origin-form (RFC 9112 §3.2.2). A fragment is never part of a target.
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        if rest.starts_with('/') {
            rest
        } else {
            return Ok(Cow::Owned(format!("/{rest}")));
        }
    } else {
        return Err(TargetError::UnsupportedForm);
    };
    let (path, query) = match origin.find('?') {
        Some(i) => (&origin[..i], Some(&origin[i..])),
        None => (origin, None),
    };
    // A dot segment needs a '.' (or its encoding, "%2e"): most paths have neither, and one
    // pass over the bytes settles it before any splitting.
    let may_have_dots = path.bytes().any(|b| b == b'.' || b == b'%');
    if !may_have_dots || !path.split('/').any(|s| dot_segment(s).is_some()) {
        return Ok(Cow::Borrowed(origin));
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match dot_segment(seg) {
            Some(DotSegment::Current) => trailing_slash = i == last,
            Some(DotSegment::Parent) => {
                if out.pop().is_none() {
                    return Err(TargetError::EscapesRoot);
                }
                trailing_slash = i == last;
            }
            None => out.push(seg),
        }
    }
    let mut normal = String::with_capacity(origin.len());
    for seg in &out {
        normal.push('/');
        normal.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        normal.push('/');
    }
    if let Some(q) = query {
        normal.push_str(q);
    }
    Ok(Cow::Owned(normal))
}

enum DotSegment {
    Current,
    Parent,
}

fn dot_segment(seg: &str) -> Option<DotSegment> {
    let decoded_len = |s: &str| -> Option<usize> {
        // Counts dots, accepting `.` and `%2e`/`%2E`; None if anything else is there.
        let b = s.as_bytes();
        let (mut i, mut dots) = (0, 0);
        while i < b.len() {
            if b[i] == b'.' {
                i += 1;
            } else if b.len() - i >= 3
                && b[i] == b'%'
                && b[i + 1] == b'2'
                && (b[i + 2] | 0x20) == b'e'
            {
                i += 3;
            } else {
                return None;
            }
            dots += 1;
        }
        Some(dots)
    };
    match decoded_len(seg) {
        Some(1) => Some(DotSegment::Current),
        Some(2) => Some(DotSegment::Parent),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::new(&[
            Route {
                prefix: "/api".into(),
                backend: 0,
            },
            Route {
                prefix: "/api/payment".into(),
                backend: 1,
            },
            Route {
                prefix: "/api/orders".into(),
                backend: 2,
            },
        ])
    }

    #[test]
    fn longest_prefix_wins_and_query_is_ignored() {
        let t = table();
        assert_eq!(t.route("/api/payment/x").unwrap().backend, 1);
        assert_eq!(t.route("/api/paymentsomething").unwrap().backend, 1);
        assert_eq!(t.route("/api/other").unwrap().backend, 0);
        assert_eq!(t.route("/api?x=/api/payment").unwrap().backend, 0);
        assert_eq!(t.route("/ap?i"), None);
        assert_eq!(t.route("/"), None);
    }

    #[test]
    fn dot_segments_are_resolved_before_matching() {
        let n = |s| normalize_target(s).map(|c| c.into_owned());
        assert_eq!(n("/api/payment/x?a=1").unwrap(), "/api/payment/x?a=1");
        assert_eq!(n("/api/payment/../orders/1").unwrap(), "/api/orders/1");
        assert_eq!(n("/api/payment/%2e%2e/orders").unwrap(), "/api/orders");
        assert_eq!(n("/api/payment/.%2E/orders").unwrap(), "/api/orders");
        assert_eq!(n("/api/./payment/.").unwrap(), "/api/payment/");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/..").unwrap_err(), TargetError::EscapesRoot);
        assert_eq!(n("/a/../../b").unwrap_err(), TargetError::EscapesRoot);
        assert_eq!(n("/a/..b/c").unwrap(), "/a/..b/c");
        assert_eq!(n("/a?x=/../..").unwrap(), "/a?x=/../..");
        assert_eq!(n("http://host/api/x?y").unwrap(), "/api/x?y");
        assert_eq!(n("http://host").unwrap(), "/");
        assert_eq!(n("HTTP://host?q").unwrap(), "/?q");
        assert_eq!(n("http://host#frag").unwrap(), "/");
        assert_eq!(n("http://host/a/../b#frag").unwrap(), "/b");
        assert_eq!(n("*").unwrap(), "*");
        assert_eq!(n("host:443").unwrap_err(), TargetError::UnsupportedForm);
        let t = table();
        let routed = n("/api/payment/../orders/1").unwrap();
        assert_eq!(t.route(&routed).unwrap().backend, 2);
    }

    /// Most targets are already normal: they are passed on as they are, without a copy,
    /// even when they hold a `.` or a `%` that is not a dot segment (one cut short included).
    #[test]
    fn normal_targets_are_borrowed() {
        for target in [
            "/",
            "/api/x?q=1",
            "/a.b/c.",
            "/a/%41/..b",
            "/%2",
            "/.%2",
            "/a/.%",
            "*",
        ] {
            let got = normalize_target(target).unwrap();
            assert!(
                matches!(got, Cow::Borrowed(t) if t == target),
                "{target:?}: {got:?}"
            );
        }
        assert!(matches!(normalize_target("/a/./b"), Ok(Cow::Owned(t)) if t == "/a/b"));
    }

    /// The reason reaches the client in the 400's JSON message.
    #[test]
    fn every_target_error_says_why() {
        assert_eq!(
            TargetError::EscapesRoot.reason(),
            "path climbs above the root with '..'"
        );
        assert_eq!(
            TargetError::UnsupportedForm.reason(),
            "request-target is not a path"
        );
    }
}
