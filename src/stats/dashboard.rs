//! The `/stats` page for people: one self-contained HTML document (`dashboard.html`, its
//! styles and script inline, nothing fetched but the JSON from its own address) embedded in
//! the binary, and the rule that decides who gets it. A client whose `Accept` asks for HTML
//! (a browser) gets the page; every other client (no `Accept`, `*/*`, `application/json`,
//! curl, Prometheus-style scrapers) gets the JSON, unchanged. Both carry `Vary: Accept`.
//!
//! The page draws what the JSON says and nothing else: it asks the same path for
//! `Accept: application/json` every 2 s and renders totals, per-minute history charts (inline
//! SVG) and the route, backend and instance tables. Every string from the JSON reaches the
//! DOM as text (`textContent`), never as markup: route prefixes and backend names come from
//! the config and Docker labels.
//!
//! Not for: the numbers themselves (`render`), deciding which path is the stats path
//! (`proxy::decide`).

/// The page, as served.
pub(crate) const PAGE: &str = include_str!("dashboard.html");

/// The content type the page is served with.
pub(crate) const PAGE_CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// A qvalue in thousandths (RFC 9110 §12.4.2: at most three decimals, 0 to 1).
type Quality = u16;

const FULL_QUALITY: Quality = 1000;

/// Whether the `Accept` field values of a request (all of them: the field is a list, RFC 9110
/// §5.3) ask for HTML at least as much as for JSON: `text/html` listed with q > 0, and
/// `application/json` not preferred to it. JSON's weight is that of the most specific range
/// matching it (`application/json`, else `application/*`, else `*/*`; RFC 9110 §12.5.1), so a
/// browser's `text/html,…,*/*;q=0.8` gets the page and `application/json, text/html;q=0.5`
/// the JSON. Only `text/html` itself counts for HTML: `*/*` alone is what curl sends.
/// A range with an unreadable qvalue is ignored.
pub(crate) fn prefers_html<'a>(accept: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let mut html: Option<Quality> = None;
    // (specificity, quality) of the most specific range matching application/json so far.
    let mut json: Option<(u8, Quality)> = None;
    for value in accept {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        for range in value.split(',') {
            let Some((media, q)) = media_range(range) else {
                continue;
            };
            let (kind, sub) = media.split_once('/').unwrap_or((media, ""));
            if kind.eq_ignore_ascii_case("text") && sub.eq_ignore_ascii_case("html") {
                html = Some(html.map_or(q, |h| h.max(q)));
            }
            if let Some(specificity) = json_specificity(kind, sub) {
                json = match json {
                    Some((s, _)) if s > specificity => json,
                    Some((s, old)) if s == specificity => Some((s, old.max(q))),
                    _ => Some((specificity, q)),
                };
            }
        }
    }
    match html {
        Some(h) if h > 0 => json.is_none_or(|(_, j)| h >= j),
        _ => false,
    }
}

/// How specifically a media range names `application/json`: 3 for itself, 2 for
/// `application/*`, 1 for `*/*`; None when it does not match it.
fn json_specificity(kind: &str, sub: &str) -> Option<u8> {
    let application = kind.eq_ignore_ascii_case("application");
    match (kind, sub) {
        ("*", "*") => Some(1),
        (_, "*") if application => Some(2),
        _ if application && sub.eq_ignore_ascii_case("json") => Some(3),
        _ => None,
    }
}

/// One element of an `Accept` list: its media range (without parameters) and its weight.
/// None for an empty element or an unreadable qvalue.
fn media_range(range: &str) -> Option<(&str, Quality)> {
    let mut parts = range.split(';');
    let media = parts.next()?.trim();
    if media.is_empty() {
        return None;
    }
    let mut q = FULL_QUALITY;
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.trim().eq_ignore_ascii_case("q") {
            q = quality(value.trim())?;
            // Parameters after q are accept-extensions, not the media type's.
            break;
        }
    }
    Some((media, q))
}

/// `0`, `0.5`, `1.000`… as thousandths (RFC 9110 §12.4.2).
fn quality(v: &str) -> Option<Quality> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: Quality = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(FULL_QUALITY),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's size limit: it is sent whole to every browser that asks, on every core.
    const PAGE_MAX_BYTES: usize = 64 * 1024;

    fn html(accept: &[&str]) -> bool {
        prefers_html(accept.iter().map(|a| a.as_bytes()))
    }

    #[test]
    fn browsers_get_the_page() {
        for accept in [
            // Chromium 120+, Firefox, Safari.
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "TEXT/HTML",
            "text/html;level=1;q=0.5, */*;q=0.5",
            "application/json;q=0.4, text/html;q=0.5",
            "text/html, application/json",
        ] {
            assert!(html(&[accept]), "{accept}");
        }
        // A list split over two fields is one list.
        assert!(html(&["application/json;q=0.2", "text/html"]));
    }

    #[test]
    fn every_other_client_gets_the_json() {
        for accept in [
            "",
            "*/*",
            "application/json",
            "text/*",
            "text/plain",
            "text/html;q=0",
            "text/html;q=0.000",
            "application/json, text/html;q=0.5",
            "application/*, text/html;q=0.9",
            "text/html;q=0.5, */*",
            // An unreadable qvalue drops its range.
            "text/html;q=2",
            "text/html;q=0.5000",
            "text/html;q=x",
            "text/htmlx",
        ] {
            assert!(!html(&[accept]), "{accept:?}");
        }
        assert!(!html(&[]), "no Accept at all");
        assert!(!html(&["text/html;q=0.5", "application/json"]));
    }

    #[test]
    fn the_most_specific_range_decides_json_s_weight() {
        // application/json;q=0.1 outranks */* for JSON, so HTML at 0.5 wins.
        assert!(html(&["*/*, application/json;q=0.1, text/html;q=0.5"]));
        // application/* at 0.9 outranks */* at 0.1.
        assert!(!html(&["*/*;q=0.1, application/*;q=0.9, text/html;q=0.5"]));
    }

    #[test]
    fn qvalues_are_read_as_the_rfc_writes_them() {
        assert_eq!(quality("1"), Some(1000));
        assert_eq!(quality("1.000"), Some(1000));
        assert_eq!(quality("0.8"), Some(800));
        assert_eq!(quality("0.05"), Some(50));
        assert_eq!(quality("0"), Some(0));
        for bad in ["1.5", "1.001", "2", "0.1234", "-0.5", "", ".5", "0.5x"] {
            assert_eq!(quality(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_page_is_small_and_self_contained() {
        assert!(
            PAGE.len() < PAGE_MAX_BYTES,
            "dashboard.html is {} bytes",
            PAGE.len()
        );
        // Nothing from another origin: the only absolute URL is the SVG namespace (a name,
        // never fetched), and the page's CSP allows connections to its own origin only.
        let foreign: Vec<usize> = PAGE
            .match_indices("://")
            .filter(|&(at, _)| {
                !(PAGE[..at].ends_with("http") && PAGE[at..].starts_with("://www.w3.org/2000/svg"))
            })
            .map(|(at, _)| PAGE[..at].lines().count())
            .collect();
        assert!(foreign.is_empty(), "absolute URLs on lines {foreign:?}");
        assert!(PAGE.contains("default-src 'none'"), "no CSP in the page");
        assert!(PAGE.contains("connect-src 'self'"));
        // Data reaches the DOM as text only.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!PAGE.contains(sink), "the page uses {sink}");
        }
    }
}
