//! References to environment variables in job files, so that secrets (a
//! Kafka SASL password, a database password) come from the environment (in
//! Kubernetes, a Secret) instead of the file: `${env:NAME}` anywhere in a
//! string value is replaced by the variable's value when the runtime loads
//! the job; `$${` stands for a literal `${`. Only string values are
//! replaced, never keys, and never by editing the YAML text, so a value can
//! never add structure to the job.

use serde_yaml::Value;

use crate::validate::FieldError;

const OPEN: &str = "${env:";

/// Replaces every reference in the string values of `value`; a variable
/// that is not set is a problem of the field that names it.
pub(crate) fn resolve(
    value: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
    path: &str,
    problems: &mut Vec<FieldError>,
) {
    match value {
        Value::String(s) if s.contains("${") => match substitute(s, env) {
            Ok(resolved) => *s = resolved,
            Err(message) => problems.push(FieldError {
                path: path.to_string(),
                message,
            }),
        },
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let key = match key {
                    Value::String(k) => k.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let path = match path {
                    "" => key,
                    _ => format!("{path}.{key}"),
                };
                resolve(item, env, &path, problems);
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve(item, env, &format!("{path}[{i}]"), problems);
            }
        }
        Value::Tagged(tagged) => resolve(&mut tagged.value, env, path, problems),
        _ => {}
    }
}

/// `text` with its references replaced.
fn substitute(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${` is a literal `${`.
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let reference = &rest[at..];
        let Some(end) = reference.find('}') else {
            return Err(format!(
                "{reference:?} is not closed: write ${{env:NAME}}, or $${{ for a literal ${{"
            ));
        };
        let Some(name) = reference[..end].strip_prefix(OPEN) else {
            return Err(format!(
                "{:?} is not a reference: write ${{env:NAME}}, or $${{ for a literal ${{",
                &reference[..=end]
            ));
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "${{env:{name}}}: a variable name is letters, digits and '_'"
            ));
        }
        match env(name) {
            Some(value) => out.push_str(&value),
            None => {
                return Err(format!(
                    "${{env:{name}}}: the environment has no {name}; set it (in Kubernetes, from a Secret through podTemplate)"
                ))
            }
        }
        rest = &reference[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `text` is one reference and nothing else.
pub(crate) fn is_reference(text: &str) -> bool {
    text.strip_prefix(OPEN)
        .and_then(|rest| rest.strip_suffix('}'))
        .is_some_and(|name| !name.is_empty() && !name.contains('}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KAFKA_PASSWORD" => Some("s3cr\"et: {x}".into()),
            "USER" => Some("app".into()),
            _ => None,
        }
    }

    #[test]
    fn references_are_replaced_in_strings_only() {
        assert_eq!(
            substitute("${env:KAFKA_PASSWORD}", &env).unwrap(),
            "s3cr\"et: {x}"
        );
        assert_eq!(
            substitute("host=db user=${env:USER} password=$${env:USER}", &env).unwrap(),
            "host=db user=app password=${env:USER}"
        );
        assert_eq!(substitute("no reference", &env).unwrap(), "no reference");
    }

    #[test]
    fn bad_references_say_what_to_write() {
        assert_eq!(
            substitute("${env:MISSING}", &env).unwrap_err(),
            "${env:MISSING}: the environment has no MISSING; set it (in Kubernetes, from a Secret through podTemplate)"
        );
        assert!(substitute("${file:/x}", &env)
            .unwrap_err()
            .contains("is not a reference"));
        assert!(substitute("${env:USER", &env)
            .unwrap_err()
            .contains("is not closed"));
        assert!(substitute("${env:A-B}", &env)
            .unwrap_err()
            .contains("letters, digits and '_'"));
    }

    #[test]
    fn only_a_whole_reference_is_one() {
        assert!(is_reference("${env:KAFKA_PASSWORD}"));
        assert!(!is_reference("x${env:KAFKA_PASSWORD}"));
        assert!(!is_reference("hunter2"));
    }
}

/// librdkafka settings that hold secrets.
const KAFKA_SECRETS: &[&str] = &[
    "sasl.password",
    "sasl.oauthbearer.client.secret",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
];

impl crate::JobSpec {
    /// Secrets written into the job itself (a Kafka password, a password in
    /// the PostgreSQL URL) rather than referenced with `${env:NAME}`: in a
    /// StreamJob they would land in a ConfigMap in plain text, so the
    /// operator refuses them.
    pub fn literal_secrets(&self) -> Vec<FieldError> {
        let mut found = Vec::new();
        let mut kafka = |path: String, properties: &std::collections::BTreeMap<String, String>| {
            for (key, value) in properties {
                if KAFKA_SECRETS.contains(&key.as_str()) && !is_reference(value) {
                    found.push(FieldError {
                        path: format!("{path}.properties.{key}"),
                        message: literal(key),
                    });
                }
            }
        };
        if let Some(k) = &self.source.kafka {
            kafka("source.kafka".into(), &k.properties);
        }
        for (i, lookup) in self.enrich.iter().enumerate() {
            if let Some(k) = &lookup.from.kafka {
                kafka(format!("enrich[{i}].from.kafka"), &k.properties);
            }
        }
        let sinks = std::iter::once(("sink".to_string(), Some(&self.sink))).chain(
            self.side_outputs
                .named()
                .map(|(name, sink)| (format!("sideOutputs.{name}"), sink.as_ref())),
        );
        let mut postgres = Vec::new();
        for (path, sink) in sinks {
            let Some(sink) = sink else { continue };
            if let Some(k) = &sink.kafka {
                kafka(format!("{path}.kafka"), &k.properties);
            }
            if let Some(pg) = &sink.postgres {
                postgres.push((format!("{path}.postgres.url"), pg.url.clone()));
            }
        }
        for (path, url) in postgres {
            if url_has_password(&url) {
                found.push(FieldError {
                    path,
                    message: literal("the password"),
                });
            }
        }
        found
    }
}

fn literal(what: &str) -> String {
    format!(
        "{what} is written in the job, which lands in a ConfigMap in plain text: keep it in a Secret, \
         give it to the pods as an environment variable through podTemplate \
         (env: [{{name: SECRET_NAME, valueFrom: {{secretKeyRef: {{name: …, key: …}}}}}}]) \
         and write \"${{env:SECRET_NAME}}\" here (for PostgreSQL, PGPASSWORD needs no reference)"
    )
}

/// A libpq connection string or URL that carries a literal password
/// (`password=…`, or `postgres://user:password@…`).
fn url_has_password(url: &str) -> bool {
    let url = url.trim();
    let keyword = url.split_whitespace().any(|part| {
        part.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("password") && !v.is_empty() && !is_reference(v)
        })
    });
    let in_url = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .and_then(|rest| rest.split_once('@'))
        .and_then(|(credentials, _)| credentials.split_once(':'))
        .is_some_and(|(_, password)| !password.is_empty() && !is_reference(password));
    keyword || in_url
}

#[cfg(test)]
mod literal_secrets {
    use crate::JobSpec;

    fn paths(yaml: &str) -> Vec<String> {
        let spec: JobSpec = serde_yaml::from_str(yaml).unwrap();
        spec.literal_secrets().into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn literal_passwords_are_found_and_references_pass() {
        let job = |sink: &str| {
            format!(
                "name: j\nsource: {{kafka: {{bootstrapServers: b, topics: [t], properties: \
                 {{sasl.password: hunter2, sasl.username: u}}}}}}\nselect: [a]\nsink: {sink}\n"
            )
        };
        assert_eq!(
            paths(&job("{postgres: {url: 'host=db password=pw', table: t}}")),
            ["source.kafka.properties.sasl.password", "sink.postgres.url"]
        );
        assert_eq!(
            paths(&job(
                "{postgres: {url: 'postgres://app:pw@db/x', table: t}}"
            )),
            ["source.kafka.properties.sasl.password", "sink.postgres.url"]
        );
        let referenced = job("{postgres: {url: 'host=db password=${env:PG}', table: t}}")
            .replace("hunter2", "'${env:KAFKA_PASSWORD}'");
        assert!(paths(&referenced).is_empty());
        assert!(
            paths(&job("{postgres: {url: 'postgres://app@db/x', table: t}}"))
                .iter()
                .all(|p| p.starts_with("source"))
        );
    }
}
