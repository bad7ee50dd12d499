//! Docker's `filters` query parameter: JSON mapping a filter name to its
//! values, either `{"name": {"web": true}}` (current clients) or
//! `{"name": ["web"]}` (older ones).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Parsed filters: name → values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the parameter (absent or empty: no filters); a filter not in
    /// `allowed` is refused as Docker does.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> ApiResult<Filters> {
        let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
            return Ok(Filters::default());
        };
        let v: Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid filters: {e}")))?;
        let Value::Object(map) = v else {
            return Err(ApiError::bad_request("invalid filters: expected an object"));
        };
        let mut out = BTreeMap::new();
        for (name, values) in map {
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter '{name}'")));
            }
            let list: Vec<String> = match values {
                Value::Object(set) => set
                    .into_iter()
                    .filter(|(_, on)| on.as_bool() != Some(false))
                    .map(|(k, _)| k)
                    .collect(),
                Value::Array(items) => items
                    .into_iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid filter '{name}': expected a set of values"
                    )))
                }
            };
            out.insert(name, list);
        }
        Ok(Filters(out))
    }

    /// The values of one filter (empty: not filtered).
    pub fn get(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether `value` passes filter `name` by equality (an absent filter
    /// passes everything).
    pub fn accepts(&self, name: &str, value: &str) -> bool {
        let wanted = self.get(name);
        wanted.is_empty() || wanted.iter().any(|w| w == value)
    }

    /// Whether `value` passes filter `name` as a prefix match (Docker's
    /// `id` and `name` filters on services).
    pub fn accepts_prefix(&self, name: &str, value: &str) -> bool {
        let wanted = self.get(name);
        wanted.is_empty() || wanted.iter().any(|w| value.starts_with(w.as_str()))
    }

    /// Whether `labels` pass the `label` filter: every `KEY` present,
    /// every `KEY=VALUE` equal.
    pub fn accepts_labels<'a, I>(&self, labels: I) -> bool
    where
        I: IntoIterator<Item = (&'a String, &'a String)> + Clone,
    {
        self.get("label").iter().all(|want| {
            let (key, value) = match want.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (want.as_str(), None),
            };
            labels
                .clone()
                .into_iter()
                .any(|(k, v)| k == key && value.is_none_or(|x| x == v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn both_encodings() {
        let new = Filters::parse(Some(r#"{"name":{"web":true}}"#), &["name"]).expect("parses");
        let old = Filters::parse(Some(r#"{"name":["web"]}"#), &["name"]).expect("parses");
        assert_eq!(new, old);
        assert_eq!(new.get("name"), ["web"]);
        assert!(new.accepts("name", "web"));
        assert!(!new.accepts("name", "db"));
        assert!(new.accepts("other", "x"));
    }

    #[test]
    fn unknown_filters_are_refused() {
        let e = Filters::parse(Some(r#"{"colour":["red"]}"#), &["name"]).expect_err("refused");
        assert_eq!(e.status.as_u16(), 400);
        assert_eq!(e.message, "invalid filter 'colour'");
    }

    #[test]
    fn labels() {
        let f = Filters::parse(
            Some(r#"{"label":{"com.docker.stack.namespace=app":true,"tier":true}}"#),
            &["label"],
        )
        .expect("parses");
        let mut l = HashMap::new();
        l.insert("com.docker.stack.namespace".to_string(), "app".to_string());
        assert!(!f.accepts_labels(&l), "tier is missing");
        l.insert("tier".to_string(), "front".to_string());
        assert!(f.accepts_labels(&l));
        l.insert(
            "com.docker.stack.namespace".to_string(),
            "other".to_string(),
        );
        assert!(!f.accepts_labels(&l));
    }
}
