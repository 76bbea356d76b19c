//! The `node` label of `/metrics`: the name of the host rgate runs on, put on every series so
//! that one Prometheus scraping the rgate of each node of a cluster (a swarm `global`
//! service) can sum them, or tell them apart. Each node keeps its own statistics database;
//! the cluster view is Prometheus' sum over nodes, never a merged database.
//!
//! Not for: choosing what the series are (see `render`).

/// The longest host name Linux gives (`HOST_NAME_MAX`) and its terminating NUL.
const HOSTNAME_BUFFER: usize = 64 + 1;

/// This host's name (`gethostname(2)`): in a container, the container's own host name, which
/// a swarm stack sets to the node's with `hostname: "{{.Node.Hostname}}"`. `unknown` when
/// the call fails.
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; HOSTNAME_BUFFER];
    // SAFETY: the buffer is valid for `len - 1` bytes; the last byte stays 0, so the name is
    // NUL-terminated even when gethostname truncates it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `text` (Prometheus exposition 0.0.4) with `node="<node>"` last among the labels of every
/// sample line; comment lines (`# HELP`, `# TYPE`) unchanged. `node` is already escaped.
pub(crate) fn with_node_label(text: &str, node: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.lines().count() * (node.len() + 10));
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
        } else if let Some((series, value)) = line.rsplit_once(' ') {
            // A sample is `name{labels} value` or `name value`; label values are escaped,
            // so the last `}` closes the label set.
            match series.strip_suffix('}') {
                Some(open) if open.ends_with('{') => {
                    out.push_str(&format!("{open}node=\"{node}\"}} {value}"))
                }
                Some(open) => out.push_str(&format!("{open},node=\"{node}\"}} {value}")),
                None => out.push_str(&format!("{series}{{node=\"{node}\"}} {value}")),
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_gets_the_node_label_last_and_comments_stay() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1 }\"} 3\nb 4\nc{} 5\n";
        assert_eq!(
            with_node_label(text, "n1"),
            "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1 }\",node=\"n1\"} 3\n\
             b{node=\"n1\"} 4\nc{node=\"n1\"} 5\n"
        );
    }

    #[test]
    fn the_hostname_is_the_kernels() {
        let mut expected = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        expected.truncate(expected.trim_end().len());
        assert_eq!(hostname(), expected);
    }
}
