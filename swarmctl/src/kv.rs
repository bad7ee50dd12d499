//! `KEY=VALUE` arguments (`--label`, `--env`, …), as Docker reads them.

use anyhow::anyhow;

/// Splits each of `items` at its first `=`; `what` names the argument in
/// the error (`invalid label "x": expected KEY=VALUE`). An empty key is an
/// error; an empty value is not.
pub fn pairs(items: &[String], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(anyhow!("invalid {what} {s:?}: expected KEY=VALUE")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_first_equals_sign() {
        let items = vec!["a=1".to_string(), "b=x=y".to_string(), "c=".to_string()];
        let got = pairs(&items, "label").expect("valid");
        assert_eq!(
            got,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x=y".into()),
                ("c".into(), String::new())
            ]
        );
        let err = pairs(&["=v".to_string()], "label").expect_err("empty key");
        assert_eq!(err.to_string(), r#"invalid label "=v": expected KEY=VALUE"#);
        assert!(pairs(&["novalue".to_string()], "env").is_err());
    }
}
