//! Page type: sets `page_type` on each event from its `url` field by the first of an ordered
//! list of regular expressions that matches (`other` when none does).
//!
//! Config keys: `url_field` (default `url`), `field` (default `page_type`) and `rules`, a comma
//! list of `name=regex` tried in order (default: product, category, search, cart, checkout
//! and home pages of a shop). The `regex` crate with its Unicode tables makes this a 1 MB
//! component, which is what the `reload` benchmark swaps to measure a large plugin's reload.

use regex::RegexSet;
use weir_sdk::{Config, Context, Event, Needs, Transform};

const DEFAULT_RULES: &[&str] = &[
    r"product=/p/\d+",
    r"category=/c/[\w-]+",
    r"search=[?&]q=",
    r"cart=/cart\b",
    r"checkout=/checkout\b",
    r"home=^https?://[^/]+/?$",
];

/// The transform: where to read and write, and the rules.
pub struct PageType {
    url_field: String,
    field: String,
    names: Vec<String>,
    rules: RegexSet,
}

impl Transform for PageType {
    fn init(config: &Config) -> Result<Self, String> {
        config.reject_unknown(&["url_field", "field", "rules"])?;
        let mut names = Vec::new();
        let mut patterns = Vec::new();
        for rule in config.list_or("rules", DEFAULT_RULES) {
            let (name, pattern) = rule
                .split_once('=')
                .ok_or_else(|| format!("rules: `{rule}` is not `name=regex`"))?;
            names.push(name.trim().to_string());
            patterns.push(pattern.to_string());
        }
        let rules = RegexSet::new(&patterns).map_err(|e| format!("rules: {e}"))?;
        Ok(PageType {
            url_field: config.non_empty_or("url_field", "url")?,
            field: config.non_empty_or("field", "page_type")?,
            names,
            rules,
        })
    }

    fn needs(&self) -> Needs {
        Needs::fields(&[&self.url_field])
    }

    fn process(&mut self, mut event: Event<'_>, ctx: &mut Context<'_>) {
        let kind = event
            .get_str(&self.url_field)
            .and_then(|url| self.rules.matches(&url).iter().next())
            .map_or("other", |i| self.names[i].as_str());
        event.set_str(&self.field, kind);
        ctx.emit(&event);
    }
}

weir_sdk::export_transform!(PageType);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_sdk::testing::TestHarness;

    use super::PageType;

    #[test]
    fn the_first_matching_rule_names_the_page() {
        let mut h = TestHarness::<PageType>::new(&[]).unwrap();
        let kind = |h: &mut TestHarness<PageType>, url: &str| {
            let out = h.process_one("u1", 0, json!({ "url": url }));
            out[0].value["page_type"].as_str().unwrap().to_string()
        };
        assert_eq!(kind(&mut h, "https://shop.example.com/p/123"), "product");
        assert_eq!(kind(&mut h, "https://shop.example.com/p/1?q=x"), "product");
        assert_eq!(
            kind(&mut h, "https://shop.example.com/find?q=shoes"),
            "search"
        );
        assert_eq!(kind(&mut h, "https://shop.example.com/"), "home");
        assert_eq!(kind(&mut h, "https://shop.example.com/about"), "other");
        let missing = h.process_one("u1", 0, json!({}));
        assert_eq!(missing[0].value["page_type"], "other");
    }

    #[test]
    fn bad_rules_are_refused_naming_the_key() {
        let err = TestHarness::<PageType>::new(&[("rules", "product")])
            .err()
            .unwrap();
        assert!(err.contains("rules"), "{err}");
        let err = TestHarness::<PageType>::new(&[("rules", "x=(")])
            .err()
            .unwrap();
        assert!(err.starts_with("rules:"), "{err}");
    }
}
