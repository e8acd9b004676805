//! `{name}` templates: rendering and the check that every placeholder has a value.
//!
//! A placeholder is `{` + a name (letters, digits, `_`, `.`, `-`, starting with a letter or
//! `_`) + `}`. `{{` and `}}` stand for literal braces; any other brace is literal text, so JSON
//! or CSS inside a template passes through untouched. Values come from, in order: the send's
//! `variables` (the caller's explicit word wins), the target's own fields, then `subject` and
//! `message` of the send.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template variable '{0}' has no value")]
pub struct MissingVariable(pub String);

/// Where placeholder values come from for one delivery.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub variables: &'a Map<String, Value>,
    pub target: &'a Map<String, Value>,
    pub subject: &'a str,
    pub message: Option<&'a str>,
}

impl Vars<'_> {
    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(v) = self.variables.get(name).or_else(|| self.target.get(name)) {
            return Some(value_text(v));
        }
        match name {
            "subject" => Some(self.subject.to_string()),
            "message" => self.message.map(str::to_string),
            _ => None,
        }
    }
}

/// The text a JSON value stands for inside a template.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')
}

/// Renders `template`, failing on the first placeholder with no value.
pub fn render(template: &str, vars: &Vars<'_>) -> Result<String, MissingVariable> {
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let mut i = 0;
    let mut literal_from = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                out.push_str(&template[literal_from..i]);
                out.push('{');
                i += 2;
                literal_from = i;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                out.push_str(&template[literal_from..i]);
                out.push('}');
                i += 2;
                literal_from = i;
            }
            b'{' if bytes.get(i + 1).is_some_and(|&c| is_name_start(c)) => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && is_name_char(bytes[end]) {
                    end += 1;
                }
                if bytes.get(end) == Some(&b'}') {
                    let name = &template[start..end];
                    let value = vars
                        .lookup(name)
                        .ok_or_else(|| MissingVariable(name.to_string()))?;
                    out.push_str(&template[literal_from..i]);
                    out.push_str(&value);
                    i = end + 1;
                    literal_from = i;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&template[literal_from..]);
    Ok(out)
}

/// Renders every string inside a JSON value (object values, array items), keeping its shape.
pub fn render_value(value: &Value, vars: &Vars<'_>) -> Result<Value, MissingVariable> {
    Ok(match value {
        Value::String(s) => Value::String(render(s, vars)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_value(v, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, vars)?)))
                .collect::<Result<_, MissingVariable>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars<'a>(v: &'a Map<String, Value>, t: &'a Map<String, Value>) -> Vars<'a> {
        Vars {
            variables: v,
            target: t,
            subject: "Welcome",
            message: Some("hello"),
        }
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn fills_from_variables_then_target_then_send() {
        let v = map(json!({"name": "Roy", "n": 3}));
        let t = map(json!({"name": "ignored", "firstName": "Amy"}));
        let out = render(
            "Hi {name} {firstName} #{n}: {subject}/{message}",
            &vars(&v, &t),
        );
        assert_eq!(out.unwrap(), "Hi Roy Amy #3: Welcome/hello");
    }

    #[test]
    fn missing_variable_is_named() {
        let empty = Map::new();
        let err = render("Hi {who}!", &vars(&empty, &empty)).unwrap_err();
        assert_eq!(err, MissingVariable("who".into()));
    }

    #[test]
    fn braces_that_are_not_placeholders_pass_through() {
        let empty = Map::new();
        let out = render(r#"{{x}} {"a": 1} { } {9} {a b}"#, &vars(&empty, &empty)).unwrap();
        assert_eq!(out, r#"{x} {"a": 1} { } {9} {a b}"#);
    }

    #[test]
    fn renders_nested_json_strings_only() {
        let v = map(json!({"name": "Roy"}));
        let empty = Map::new();
        let body = json!({"text": "Hi {name}", "n": 1, "list": ["{name}", true]});
        let out = render_value(&body, &vars(&v, &empty)).unwrap();
        assert_eq!(
            out,
            json!({"text": "Hi Roy", "n": 1, "list": ["Roy", true]})
        );
    }
}
