//! Routes declared by containers (`docker: {label_routes: true}`): a running container with
//! `rgate.route.path_prefix=/api/search` (and optionally `rgate.route.host=…`,
//! `rgate.route.strip_prefix=true`; its port as for any instance, `rgate.port`) makes a
//! route to a backend of every running container that declares the same route.
//!
//! How it stays live without a lock or a moving index on the request path: the routes are
//! part of the config a process starts with (`with_label_routes`, from a list of the
//! running containers at start), so a label route is served, counted and logged exactly as
//! a file route. Its instances then follow Docker events like any `match_labels` backend.
//! When the *set* of declared routes changes (a new route appears, the last container of
//! one goes), discovery asks for the zero-downtime restart that SIGHUP gives
//! (`Containers::route_set_changed`), and the successor starts with the new set — once the
//! change has held for `ROUTES_SETTLE`, and not sooner than `ROUTES_MIN_UPTIME` after the
//! process started (`RouteRestart`): a container in a crash loop, declaring a route each
//! time it starts, would otherwise restart rgate each time.
//!
//! The config file's routes win over label routes for the same host and prefix (logged
//! once). A bad label is logged with the container's name and the route skipped; it never
//! stops rgate.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::config::{
    check_path, host_pattern, BackendPolicy, BackendSpec, Config, Discovery, HostPattern, Rewrite,
    Route, RouteSource,
};

pub(crate) const LABEL_PREFIX: &str = "rgate.route.path_prefix";
pub(crate) const LABEL_HOST: &str = "rgate.route.host";
pub(crate) const LABEL_STRIP: &str = "rgate.route.strip_prefix";

/// How long a change of the declared routes must hold before rgate restarts to serve it: a
/// container that dies within it (a crash loop, a failed start) restarts nothing.
pub(crate) const ROUTES_SETTLE: Duration = Duration::from_secs(1);
/// A process restarts for declared routes no sooner than this after it started: however a
/// container comes and goes, rgate restarts for it at most this often.
pub(crate) const ROUTES_MIN_UPTIME: Duration = Duration::from_secs(5);

/// When to restart for a changed set of declared routes.
#[derive(Debug)]
pub(crate) struct RouteRestart {
    started: Instant,
    /// Since when the declared set has differed from the one this process serves.
    changed_since: Option<Instant>,
}

impl RouteRestart {
    pub(crate) fn new(started: Instant) -> RouteRestart {
        RouteRestart {
            started,
            changed_since: None,
        }
    }

    /// Whether the declared set differs from the served one, as seen at `now`. True when it
    /// just went back to the served set (a change that did not hold).
    pub(crate) fn observe(&mut self, differs: bool, now: Instant) -> bool {
        match (differs, self.changed_since) {
            (true, None) => {
                self.changed_since = Some(now);
                false
            }
            (false, Some(_)) => {
                self.changed_since = None;
                true
            }
            _ => false,
        }
    }

    /// When the restart is due, while a change holds.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.changed_since
            .map(|since| (since + ROUTES_SETTLE).max(self.started + ROUTES_MIN_UPTIME))
    }

    pub(crate) fn is_due(&self, now: Instant) -> bool {
        self.due().is_some_and(|due| now >= due)
    }
}

/// A route as containers declare it. Containers with equal keys are one backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    /// As `host_pattern` reads it (lower-case; `*.` kept).
    pub host: Option<String>,
    pub prefix: String,
    pub strip: bool,
}

impl RouteKey {
    /// `host/prefix`, strip or not (the name of its backend is `labels:` and this).
    pub fn name(&self) -> String {
        format!("{}{}", self.host.as_deref().unwrap_or(""), self.prefix)
    }

    fn host_pattern(&self) -> Option<HostPattern> {
        self.host.as_deref().and_then(|h| host_pattern(h).ok())
    }
}

/// The route a container's labels declare: None when it declares none; an error (the label
/// and why) when a label is unusable.
pub(crate) fn route_key(labels: &HashMap<String, String>) -> Option<Result<RouteKey, String>> {
    let prefix = labels.get(LABEL_PREFIX)?;
    Some(parse(labels, prefix))
}

fn parse(labels: &HashMap<String, String>, prefix: &str) -> Result<RouteKey, String> {
    check_path("path_prefix", prefix).map_err(|why| format!("{LABEL_PREFIX}: {why}"))?;
    let host = match labels.get(LABEL_HOST) {
        None => None,
        Some(h) => {
            host_pattern(h).map_err(|why| format!("{LABEL_HOST}: {why}"))?;
            Some(h.to_ascii_lowercase())
        }
    };
    let strip = match labels.get(LABEL_STRIP).map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(format!("{LABEL_STRIP}: {other:?} is not true or false")),
    };
    Ok(RouteKey {
        host,
        prefix: prefix.to_string(),
        strip,
    })
}

/// One running container's name and labels, as listed.
pub(crate) struct Declared {
    pub(crate) name: String,
    pub(crate) labels: HashMap<String, String>,
}

/// The valid routes among `containers`, each with the containers declaring it; bad labels
/// are logged (container and why) and skipped.
pub(crate) fn declared_routes(containers: &[Declared]) -> BTreeMap<RouteKey, Vec<String>> {
    let mut routes: BTreeMap<RouteKey, Vec<String>> = BTreeMap::new();
    for c in containers {
        match route_key(&c.labels) {
            None => {}
            Some(Ok(key)) => routes.entry(key).or_default().push(c.name.clone()),
            Some(Err(why)) => log::warn!(
                "docker: container {} declares no usable route, skipped: {why}",
                c.name
            ),
        }
    }
    routes
}

/// `config` with a route and a backend for each declared route, after the file's. A route
/// the file already has for the same host and prefix is left to the file (logged).
pub(crate) fn with_label_routes(
    mut config: Config,
    declared: &BTreeMap<RouteKey, Vec<String>>,
) -> Config {
    for (key, containers) in declared {
        let host = key.host_pattern();
        let taken = config
            .routes
            .iter()
            .find(|r| r.host == host && r.prefix == key.prefix);
        match taken.map(|r| r.source) {
            Some(RouteSource::File) => {
                log::info!(
                    "docker: the config file's route for {} wins over the one declared by {}",
                    key.name(),
                    containers.join(", ")
                );
                continue;
            }
            Some(RouteSource::Labels) => {
                log::warn!(
                    "docker: {} declare {} with a different strip_prefix than others; skipped",
                    containers.join(", "),
                    key.name()
                );
                continue;
            }
            None => {}
        }
        let backend = config.backends.len();
        config.backends.push(BackendSpec {
            name: format!("labels:{}", key.name()),
            discovery: Discovery::LabelRoute(key.clone()),
            policy: BackendPolicy::default(),
        });
        config.routes.push(Route {
            host,
            rewrite: if key.strip {
                Rewrite::Strip
            } else {
                Rewrite::Keep
            },
            source: RouteSource::Labels,
            ..Route::plain(&key.prefix, backend)
        });
        log::info!(
            "docker: route {} declared by {}",
            key.name(),
            containers.join(", ")
        );
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_route_change_restarts_once_it_has_held_and_the_process_is_old_enough() {
        let t0 = Instant::now();
        let mut r = RouteRestart::new(t0);
        assert_eq!(r.due(), None);
        // A container declares a route 10 s after the start: due a settle later.
        let seen = t0 + Duration::from_secs(10);
        assert!(!r.observe(true, seen));
        assert_eq!(r.due(), Some(seen + ROUTES_SETTLE));
        assert!(!r.is_due(seen + ROUTES_SETTLE / 2));
        // Still changed at the next event: the first sighting counts.
        assert!(!r.observe(true, seen + ROUTES_SETTLE / 2));
        assert!(r.is_due(seen + ROUTES_SETTLE));
        // It died before that: back to the served set, nothing due.
        let mut r = RouteRestart::new(t0);
        r.observe(true, seen);
        assert!(
            r.observe(false, seen + ROUTES_SETTLE / 2),
            "the change did not hold"
        );
        assert_eq!(r.due(), None);
        assert!(!r.is_due(seen + ROUTES_SETTLE * 10));
        // Right after the start: not before the minimum uptime.
        let mut r = RouteRestart::new(t0);
        r.observe(true, t0);
        assert_eq!(r.due(), Some(t0 + ROUTES_MIN_UPTIME));
    }

    #[test]
    fn labels_declare_a_route_or_say_what_is_wrong() {
        assert!(route_key(&labels(&[("app", "x")])).is_none());
        let key = route_key(&labels(&[
            (LABEL_PREFIX, "/api/search"),
            (LABEL_HOST, "Search.Example.com"),
            (LABEL_STRIP, "true"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            key,
            RouteKey {
                host: Some("search.example.com".into()),
                prefix: "/api/search".into(),
                strip: true
            }
        );
        for (bad, says) in [
            (vec![(LABEL_PREFIX, "api")], "must start with '/'"),
            (vec![(LABEL_PREFIX, "/a b")], "whitespace"),
            (
                vec![(LABEL_PREFIX, "/a"), (LABEL_HOST, "a:80")],
                "rgate.route.host",
            ),
            (
                vec![(LABEL_PREFIX, "/a"), (LABEL_STRIP, "yes")],
                "not true or false",
            ),
        ] {
            let err = route_key(&labels(&bad)).unwrap().unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn declared_routes_join_the_config_after_its_own_and_never_replace_them() {
        let config = Config::parse(
            std::path::Path::new("t.yml"),
            "routes:\n  - {path_prefix: /taken, backend: f}\nbackends:\n  - name: f\n    addresses: ['127.0.0.1:9']\n",
        )
        .unwrap();
        let declared = declared_routes(&[
            Declared {
                name: "a".into(),
                labels: labels(&[(LABEL_PREFIX, "/search"), (LABEL_STRIP, "true")]),
            },
            Declared {
                name: "b".into(),
                labels: labels(&[(LABEL_PREFIX, "/search"), (LABEL_STRIP, "true")]),
            },
            Declared {
                name: "c".into(),
                labels: labels(&[(LABEL_PREFIX, "/taken")]),
            },
            Declared {
                name: "bad".into(),
                labels: labels(&[(LABEL_PREFIX, "nope")]),
            },
        ]);
        assert_eq!(declared.len(), 2, "{declared:?}");
        let c = with_label_routes(config, &declared);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].source, RouteSource::File);
        let r = &c.routes[1];
        assert_eq!(
            (r.prefix.as_str(), r.source, &r.rewrite),
            ("/search", RouteSource::Labels, &Rewrite::Strip)
        );
        assert_eq!(c.backends[r.backend].name, "labels:/search");
        assert!(
            matches!(&c.backends[r.backend].discovery, Discovery::LabelRoute(k) if k.prefix == "/search")
        );
    }
}
