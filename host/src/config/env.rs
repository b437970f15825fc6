//! Environment variables in every string of a config, resolved when it is read: `${VAR}` (an
//! error naming the field when `VAR` is unset), `${VAR:-default}` (the default when `VAR` is
//! unset or empty) and `${VAR:?message}` (an error with the message when it is unset or
//! empty); `$${` writes a literal `${`. Secrets stay out of config files.

/// Resolves the variables in every string of `value`, naming a failing field by its dotted
/// path (`sinks.lake.s3.secret_access_key`, `stages[1].config.url`).
pub fn interpolate(value: &mut toml::Value, path: &str) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(text) => {
            *text = expand(text, |name| std::env::var(name).ok()).map_err(|e| (path.into(), e))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"))?;
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let field = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                interpolate(item, &field)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `text` with its `${...}` replaced, reading variables with `var`.
fn expand(text: &str, var: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(body) = rest.strip_prefix("${") else {
            out.push('$');
            rest = &rest[1..];
            continue;
        };
        let end = body
            .find('}')
            .ok_or_else(|| format!("`${{` without its `}}` in {text:?}"))?;
        out.push_str(&resolve(&body[..end], &var)?);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of one `${...}` body.
fn resolve(body: &str, var: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, fallback) = match body.find([':', '?', '-']) {
        Some(at) => (&body[..at], Some(&body[at..])),
        None => (body, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "${{{body}}} is not `${{VAR}}`, `${{VAR:-default}}` or `${{VAR:?message}}`"
        ));
    }
    let value = var(name);
    let set = value.as_deref().is_some_and(|v| !v.is_empty());
    match fallback {
        None => value.ok_or_else(|| {
            format!("environment variable {name} is not set (write ${{{name}:-default}} to give a default)")
        }),
        Some(default) if default.starts_with(":-") => Ok(if set {
            value.unwrap_or_default()
        } else {
            default[2..].to_string()
        }),
        Some(message) if message.starts_with(":?") => {
            if set {
                Ok(value.unwrap_or_default())
            } else {
                Err(format!("environment variable {name}: {}", &message[2..]))
            }
        }
        Some(_) => Err(format!(
            "${{{body}}} is not `${{VAR}}`, `${{VAR:-default}}` or `${{VAR:?message}}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("broker".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_defaulted_and_required_variables_and_keeps_escapes() {
        let ok = |text: &str| expand(text, env).unwrap();
        assert_eq!(ok("${HOST}:9092"), "broker:9092");
        assert_eq!(ok("a-${HOST}-${HOST}"), "a-broker-broker");
        assert_eq!(ok("${PORT:-9092}"), "9092");
        assert_eq!(ok("${EMPTY:-x}"), "x");
        assert_eq!(ok("${HOST:-x}"), "broker");
        assert_eq!(ok("${HOST:?needed}"), "broker");
        assert_eq!(ok("${EMPTY}"), "");
        assert_eq!(ok("cost: $5, $${HOST} stays"), "cost: $5, ${HOST} stays");
        let err = |text: &str| expand(text, env).unwrap_err();
        assert!(
            err("${NOPE}").contains("NOPE is not set"),
            "{}",
            err("${NOPE}")
        );
        assert_eq!(
            err("${NOPE:?set the broker}"),
            "environment variable NOPE: set the broker"
        );
        assert!(err("${EMPTY:?needed}").contains("needed"));
        assert!(err("${HOST").contains("without its"));
        assert!(err("${bad name}").contains("is not"));
        assert!(err("${HOST-x}").contains("is not"));
    }

    #[test]
    fn every_string_of_a_config_is_expanded_and_a_failure_names_its_field() {
        let mut value: toml::Value = toml::from_str(
            "plugin_dir = \"${HOME}/plugins\"\nn = 3\n[[stages]]\nname = \"x\"\n\
             [stages.config]\nurl = \"${WEIR_TEST_UNSET_7:?the url}\"\n",
        )
        .unwrap();
        let (field, reason) = interpolate(&mut value, "").unwrap_err();
        assert_eq!(field, "stages[0].config.url");
        assert!(reason.contains("the url"), "{reason}");
        let mut value: toml::Value =
            toml::from_str("plugin_dir = \"${HOME}/plugins\"\nn = 3\n").unwrap();
        interpolate(&mut value, "").unwrap();
        let home = std::env::var("HOME").unwrap();
        assert_eq!(
            value["plugin_dir"].as_str(),
            Some(&*format!("{home}/plugins"))
        );
        assert_eq!(value["n"].as_integer(), Some(3));
    }
}
