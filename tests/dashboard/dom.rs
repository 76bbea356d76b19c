//! Reading the document Chromium dumps (`--dump-dom`: the DOM serialised as HTML after the
//! page's script ran) without an HTML parser. The page marks everything a test reads with a
//! `data-*` attribute; `Fragment::element` finds the element whose start tag holds a marker
//! (from that tag to the first end tag of its name after it), `text` reads what it shows.
//!
//! Enough for rgate's page, where no looked-up element holds another of its own tag name; not
//! for HTML in general.

/// A piece of the dumped document: the whole of it, or one element.
#[derive(Clone, Copy)]
pub struct Fragment<'a>(pub &'a str);

impl<'a> Fragment<'a> {
    /// The element whose start tag holds `marker` (e.g. `data-route="/api"`, or `<td` for the
    /// first cell), or None.
    pub fn find(self, marker: &str) -> Option<Fragment<'a>> {
        let at = self.0.find(marker)?;
        let start = if marker.starts_with('<') {
            at
        } else {
            self.0[..at].rfind('<')?
        };
        let tag: String = self.0[start + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let close = format!("</{tag}>");
        let end = at + self.0[at..].find(&close)? + close.len();
        Some(Fragment(&self.0[start..end]))
    }

    /// `find`, failing the test when there is no such element.
    pub fn element(self, marker: &str) -> Fragment<'a> {
        self.find(marker)
            .unwrap_or_else(|| panic!("no element with {marker} in:\n{}", self.0))
    }

    /// The text inside (tags dropped, character references decoded), trimmed.
    pub fn text(self) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in self.0.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        decode(out.trim())
    }

    /// The value of attribute `name` in the element's start tag, decoded.
    pub fn attr(self, name: &str) -> Option<String> {
        let start_tag = &self.0[..self.0.find('>')?];
        let marker = format!(" {name}=\"");
        let at = start_tag.find(&marker)? + marker.len();
        let len = start_tag[at..].find('"')?;
        Some(decode(&start_tag[at..at + len]))
    }

    /// How many times `needle` occurs.
    pub fn count(self, needle: &str) -> usize {
        self.0.matches(needle).count()
    }

    pub fn contains(self, needle: &str) -> bool {
        self.0.contains(needle)
    }

    /// The number the element shows (digits grouped with commas, as the page writes them).
    pub fn number(self) -> u64 {
        let text = self.text();
        text.replace(',', "")
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} is not a count ({e}) in {}", self.0))
    }
}

/// The character references Chromium writes in text and attribute values.
fn decode(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}
