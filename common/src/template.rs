//! Swarm's task templates: `{{.Service.Name}}`, `{{.Task.Slot}}`, … in a
//! service's hostname, environment values and mount sources, filled in per
//! task on its node (as Docker Swarm does, so `--hostname
//! "{{.Service.Name}}-{{.Task.Slot}}"` gives `web-1`, `web-2`, …).
//!
//! Only field references are supported (no Go template functions or
//! pipelines); anything else inside `{{ }}` is an error when the service is
//! created, never at the task's start.

/// What a template can refer to, for one task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskContext {
    /// `{{.Service.ID}}`
    pub service_id: String,
    /// `{{.Service.Name}}`
    pub service_name: String,
    /// `{{.Task.ID}}`
    pub task_id: String,
    /// `{{.Task.Name}}`: `<service>.<slot>.<task id>` (or the node ID for a
    /// global service).
    pub task_name: String,
    /// `{{.Task.Slot}}` (`0` for a global service's tasks).
    pub task_slot: String,
    /// `{{.Node.ID}}`
    pub node_id: String,
    /// `{{.Node.Hostname}}`
    pub node_hostname: String,
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without its `}}`.
    #[error("template {0:?}: unclosed {{{{")]
    Unclosed(String),
    /// A reference to something templates do not offer.
    #[error("template {template:?}: unknown field {field:?} (known: .Service.ID, .Service.Name, .Task.ID, .Task.Name, .Task.Slot, .Node.ID, .Node.Hostname)")]
    UnknownField {
        /// The whole template.
        template: String,
        /// What was inside the braces.
        field: String,
    },
}

/// The fields templates may refer to.
const FIELDS: [&str; 7] = [
    ".Service.ID",
    ".Service.Name",
    ".Task.ID",
    ".Task.Name",
    ".Task.Slot",
    ".Node.ID",
    ".Node.Hostname",
];

fn value<'a>(ctx: &'a TaskContext, field: &str) -> Option<&'a str> {
    Some(match field {
        ".Service.ID" => &ctx.service_id,
        ".Service.Name" => &ctx.service_name,
        ".Task.ID" => &ctx.task_id,
        ".Task.Name" => &ctx.task_name,
        ".Task.Slot" => &ctx.task_slot,
        ".Node.ID" => &ctx.node_id,
        ".Node.Hostname" => &ctx.node_hostname,
        _ => return None,
    })
}

/// Splits `template` into literal text and field references.
fn parts(template: &str) -> Result<Vec<Part<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(Part::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| TemplateError::Unclosed(template.to_string()))?;
        let field = after[..close].trim();
        if !FIELDS.contains(&field) {
            return Err(TemplateError::UnknownField {
                template: template.to_string(),
                field: field.to_string(),
            });
        }
        out.push(Part::Field(field));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        out.push(Part::Text(rest));
    }
    Ok(out)
}

enum Part<'a> {
    Text(&'a str),
    Field(&'a str),
}

/// Checks that `template` only refers to known fields.
pub fn check(template: &str) -> Result<(), TemplateError> {
    parts(template).map(|_| ())
}

/// `template` with each field reference replaced by its value for `ctx`.
pub fn expand(template: &str, ctx: &TaskContext) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    for part in parts(template)? {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Field(f) => out.push_str(value(ctx, f).unwrap_or_default()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> TaskContext {
        TaskContext {
            service_id: "s1".into(),
            service_name: "web".into(),
            task_id: "t9".into(),
            task_name: "web.2.t9".into(),
            task_slot: "2".into(),
            node_id: "n1".into(),
            node_hostname: "h1".into(),
        }
    }

    #[test]
    fn fields_are_filled_in_and_text_is_kept() {
        let c = ctx();
        assert_eq!(
            expand("{{.Service.Name}}-{{.Task.Slot}}", &c).expect("ok"),
            "web-2"
        );
        assert_eq!(
            expand("/data/{{ .Node.Hostname }}/{{.Task.Name}}", &c).expect("ok"),
            "/data/h1/web.2.t9"
        );
        assert_eq!(
            expand("{{.Node.ID}}{{.Task.ID}}{{.Service.ID}}", &c).expect("ok"),
            "n1t9s1"
        );
        assert_eq!(expand("plain", &c).expect("ok"), "plain");
        assert_eq!(expand("", &c).expect("ok"), "");
    }

    #[test]
    fn what_does_not_parse_is_refused_with_the_field_named() {
        assert_eq!(
            check("{{.Service.Name"),
            Err(TemplateError::Unclosed("{{.Service.Name".into()))
        );
        let e = check("x-{{.Service.Labels}}").expect_err("unknown");
        assert!(e.to_string().contains(".Service.Labels"), "{e}");
        assert!(check("{{ upper .Service.Name }}").is_err(), "no functions");
        assert!(check("{{.Task.Slot}}").is_ok());
    }
}
