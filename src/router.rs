//! Routing: the request-target is normalised (dot segments resolved, so `/api/a/../b` can
//! only reach the backend of `/api/b`), then the route is chosen — by host first (an exact
//! host, then a `*.` wildcard, then routes without a host), then by the longest
//! `path_prefix` the path starts with. The query string is never part of the match. Then
//! the route's rewrite (`strip_prefix`, `rewrite_prefix`) gives the path the backend sees:
//! normalise, match, rewrite, in that order, so no rewrite can reopen a dot segment.
//!
//! The cost of a match does not grow with the number of routes: hosts are looked up in hash
//! maps (skipped when no route has a host), prefixes are found by one walk of the path
//! through a byte trie.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::config::{HostPattern, Rewrite, Route};
use crate::http::host::split_absolute_form;

/// The result of routing one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index into `Config::routes`.
    pub route: usize,
    /// Index into `Config::backends`.
    pub backend: usize,
}

/// The longest host name (RFC 1035); a longer Host matches no host route.
const MAX_HOST_BYTES: usize = 253;

/// Prefixes, found by walking a path through their bytes.
#[derive(Debug, Clone, Default)]
struct PrefixTrie {
    /// Node 0 is the root (the empty prefix).
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Clone, Default)]
struct TrieNode {
    /// (byte, child node), few per node.
    next: Vec<(u8, u32)>,
    /// The route whose prefix ends here.
    route: Option<RouteMatch>,
}

impl PrefixTrie {
    fn insert(&mut self, prefix: &str, m: RouteMatch) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut at = 0usize;
        for &b in prefix.as_bytes() {
            at = match self.nodes[at].next.iter().find(|(c, _)| *c == b) {
                Some(&(_, n)) => n as usize,
                None => {
                    let n = self.nodes.len();
                    self.nodes.push(TrieNode::default());
                    self.nodes[at].next.push((b, n as u32));
                    n
                }
            };
        }
        // Validation refuses duplicates; the first route stays if one slips through.
        self.nodes[at].route.get_or_insert(m);
    }

    /// The route of the longest prefix of `path`.
    fn longest(&self, path: &[u8]) -> Option<RouteMatch> {
        let mut at = 0usize;
        let mut best = self.nodes.first()?.route;
        for &b in path {
            match self.nodes[at].next.iter().find(|(c, _)| *c == b) {
                Some(&(_, n)) => at = n as usize,
                None => break,
            }
            best = self.nodes[at].route.or(best);
        }
        best
    }
}

/// The configured routes, by host and prefix.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    exact: HashMap<String, PrefixTrie>,
    /// By the suffix after the wildcard's `*.`.
    wildcard: HashMap<String, PrefixTrie>,
    any_host: PrefixTrie,
}

impl RouteTable {
    pub fn new(routes: &[Route]) -> RouteTable {
        let mut t = RouteTable::default();
        for (i, r) in routes.iter().enumerate() {
            let m = RouteMatch {
                route: i,
                backend: r.backend,
            };
            let trie = match &r.host {
                None => &mut t.any_host,
                Some(HostPattern::Exact(h)) => t.exact.entry(h.clone()).or_default(),
                Some(HostPattern::Wildcard(s)) => t.wildcard.entry(s.clone()).or_default(),
            };
            trie.insert(&r.prefix, m);
        }
        t
    }

    /// The route for a normalised target (its query is ignored) sent to `host` (the
    /// request's Host, any case, with or without a port; None for HTTP/1.0 without one).
    pub fn route(&self, host: Option<&[u8]>, target: &str) -> Option<RouteMatch> {
        let path = path_of(target).as_bytes();
        if !(self.exact.is_empty() && self.wildcard.is_empty()) {
            let mut buf = [0u8; MAX_HOST_BYTES];
            if let Some(name) = host.and_then(|h| host_name(h, &mut buf)) {
                if let Some(m) = self.exact.get(name).and_then(|t| t.longest(path)) {
                    return Some(m);
                }
                let parent = name.split_once('.').map(|(_, rest)| rest);
                if let Some(m) = parent
                    .and_then(|p| self.wildcard.get(p))
                    .and_then(|t| t.longest(path))
                {
                    return Some(m);
                }
            }
        }
        self.any_host.longest(path)
    }
}

/// A Host value as a route compares it: without the port, lower-case, in `buf`. None when
/// it is no name a route could have (too long, an IP literal, not UTF-8).
fn host_name<'b>(host: &[u8], buf: &'b mut [u8; MAX_HOST_BYTES]) -> Option<&'b str> {
    if host.first() == Some(&b'[') {
        return None;
    }
    let name = match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    };
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_BYTES {
        return None;
    }
    let out = &mut buf[..name.len()];
    for (o, &b) in out.iter_mut().zip(name) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

/// The target the backend gets for `target` (normalised, as routed) on `route`: its prefix
/// removed (`Strip`, the path then starting with `/`) or replaced (`Replace`). Borrowed
/// when the route keeps the path.
pub fn rewrite<'t>(route: &Route, target: &'t str) -> Cow<'t, str> {
    let rest = || target.get(route.prefix.len()..).unwrap_or("");
    match &route.rewrite {
        Rewrite::Keep => Cow::Borrowed(target),
        Rewrite::Strip => {
            let rest = rest();
            if rest.starts_with('/') {
                Cow::Borrowed(rest)
            } else {
                Cow::Owned(format!("/{rest}"))
            }
        }
        Rewrite::Replace(prefix) => Cow::Owned(format!("{prefix}{}", rest())),
    }
}

/// The path of a request-target: up to its query's `?` (a byte loop: targets are short, and
/// a `char` search costs more to set up than this costs to run).
pub fn path_of(target: &str) -> &str {
    let end = target
        .bytes()
        .position(|b| b == b'?')
        .unwrap_or(target.len());
    &target[..end]
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
    let path = path_of(origin);
    let query = origin.get(path.len()..).filter(|q| !q.is_empty());
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
#[path = "router_tests.rs"]
mod tests;
