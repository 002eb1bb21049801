//! The `name` argument of `/ingest`: `app.type{key=value,key2="quoted, value"}`.
//!
//! The application name runs up to `{` (or the end). Its last dotted part is
//! the profile type when it is one of [`types::SUFFIXES`](crate::types::SUFFIXES);
//! otherwise the whole name is the application. Label values are bare (up to
//! `,` or `}`) or double-quoted with `\"`, `\\`, `\n`, `\t` escapes. Label
//! names are letters, digits, `_`, `.` and `-` (the Node.js SDK sends
//! `otel.scope.name`-style names). On duplicate names the last value wins.

use crate::{Error, Result, types};

/// Longest accepted `name` argument in bytes.
pub const MAX_NAME_BYTES: usize = 64 << 10;

/// Largest number of labels the parser accepts (the distributor's per-tenant
/// limit, usually lower, applies afterwards).
pub const MAX_LABELS: usize = 1024;

/// A parsed `name` argument.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedName {
    /// The application name without the profile-type suffix.
    pub app: String,
    /// The profile-type suffix (`cpu`, `inuse_space`, ...), if the name had one.
    pub suffix: Option<String>,
    /// The labels in the order given, duplicates removed (last wins).
    pub labels: Vec<(String, String)>,
}

fn malformed(input: &str, why: impl std::fmt::Display) -> Error {
    let shown: String = input.chars().take(120).collect();
    Error::Malformed(format!(
        "invalid name {shown:?}: {why}; expected app.type{{key=value,...}}"
    ))
}

fn is_label_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'
}

/// Parses a `name` argument.
pub fn parse(input: &str) -> Result<ParsedName> {
    if input.len() > MAX_NAME_BYTES {
        return Err(Error::TooLarge(format!(
            "name is {} bytes, more than the limit of {MAX_NAME_BYTES} bytes",
            input.len()
        )));
    }
    let (full_app, rest) = match input.find('{') {
        Some(i) => (&input[..i], Some(&input[i + 1..])),
        None => (input, None),
    };
    let full_app = full_app.trim();
    if full_app.is_empty() {
        return Err(malformed(input, "the application name is empty"));
    }
    if let Some(c) = full_app
        .chars()
        .find(|c| c.is_control() || matches!(c, '}' | '"' | ',' | '='))
    {
        return Err(malformed(
            input,
            format_args!("the application name contains {c:?}"),
        ));
    }
    let (app, suffix) = match full_app.rsplit_once('.') {
        Some((app, s)) if !app.is_empty() && types::SUFFIXES.contains(&s) => {
            (app.to_owned(), Some(s.to_owned()))
        }
        _ => (full_app.to_owned(), None),
    };
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(rest) = rest {
        parse_labels(input, rest, &mut labels)?;
    }
    Ok(ParsedName {
        app,
        suffix,
        labels,
    })
}

fn parse_labels(input: &str, body: &str, labels: &mut Vec<(String, String)>) -> Result<()> {
    let mut chars = body.char_indices().peekable();
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
    };
    loop {
        skip_ws(&mut chars);
        match chars.peek() {
            None => return Err(malformed(input, "the labels are not closed with '}'")),
            Some((_, '}')) => {
                chars.next();
                break;
            }
            _ => {}
        }
        // Label name.
        let mut key = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if !is_label_name_char(c) {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            let found = chars.peek().map(|(_, c)| *c);
            return Err(malformed(
                input,
                format_args!(
                    "expected a label name, found {}",
                    found.map_or("the end".to_owned(), |c| format!("{c:?}"))
                ),
            ));
        }
        skip_ws(&mut chars);
        match chars.next() {
            Some((_, '=')) => {}
            Some((_, c)) => {
                return Err(malformed(
                    input,
                    format_args!("expected '=' after label {key:?}, found {c:?}"),
                ));
            }
            None => return Err(malformed(input, "the labels are not closed with '}'")),
        }
        skip_ws(&mut chars);
        let mut value = String::new();
        if chars.peek().is_some_and(|(_, c)| *c == '"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(malformed(
                            input,
                            format_args!("the value of label {key:?} has no closing quote"),
                        ));
                    }
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, c @ ('"' | '\\'))) => value.push(c),
                        Some((_, c)) => {
                            return Err(malformed(
                                input,
                                format_args!("unknown escape \\{c} in the value of label {key:?}"),
                            ));
                        }
                        None => {
                            return Err(malformed(
                                input,
                                format_args!("the value of label {key:?} has no closing quote"),
                            ));
                        }
                    },
                    Some((_, c)) => value.push(c),
                }
            }
            skip_ws(&mut chars);
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c == '}' {
                    break;
                }
                if c == '{' || c == '"' {
                    return Err(malformed(
                        input,
                        format_args!("unexpected {c:?} in the value of label {key:?}; quote it"),
                    ));
                }
                value.push(c);
                chars.next();
            }
            let trimmed = value.trim_end().len();
            value.truncate(trimmed);
        }
        if let Some(i) = labels.iter().position(|(k, _)| *k == key) {
            labels.remove(i);
        }
        if labels.len() >= MAX_LABELS {
            return Err(Error::Unprocessable(format!(
                "name has more than {MAX_LABELS} labels"
            )));
        }
        labels.push((key, value));
        match chars.next() {
            Some((_, ',')) => continue,
            Some((_, '}')) => break,
            Some((_, c)) => {
                return Err(malformed(
                    input,
                    format_args!("expected ',' or '}}' after a label value, found {c:?}"),
                ));
            }
            None => return Err(malformed(input, "the labels are not closed with '}'")),
        }
    }
    skip_ws(&mut chars);
    if let Some((i, _)) = chars.next() {
        let trailing: String = body[i..].chars().take(40).collect();
        return Err(malformed(
            input,
            format_args!("unexpected {trailing:?} after the closing '}}'"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_app_suffix_and_labels() {
        let p = parse("my.app.cpu{env=prod, region = eu-west-1 ,otel.scope.name=x}").unwrap();
        assert_eq!(p.app, "my.app");
        assert_eq!(p.suffix.as_deref(), Some("cpu"));
        assert_eq!(
            p.labels,
            l(&[
                ("env", "prod"),
                ("region", "eu-west-1"),
                ("otel.scope.name", "x")
            ])
        );
    }

    #[test]
    fn names_without_a_known_suffix_keep_their_dots() {
        let p = parse("my.app").unwrap();
        assert_eq!((p.app.as_str(), p.suffix), ("my.app", None));
        let p = parse("app{}").unwrap();
        assert_eq!((p.app.as_str(), p.labels.len()), ("app", 0));
        let p = parse("app.inuse_space").unwrap();
        assert_eq!(p.suffix.as_deref(), Some("inuse_space"));
    }

    #[test]
    fn quoted_values_and_escapes() {
        let p = parse(r#"app.wall{a="x, y}",b="say \"hi\"\\",a="z"}"#).unwrap();
        assert_eq!(p.labels, l(&[("b", "say \"hi\"\\"), ("a", "z")]));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse("app.cpu{env=prod").unwrap_err().to_string();
        assert!(e.contains("not closed"), "{e}");
        let e = parse("app{a=\"x}").unwrap_err().to_string();
        assert!(e.contains("closing quote"), "{e}");
        let e = parse("{a=b}").unwrap_err().to_string();
        assert!(e.contains("application name is empty"), "{e}");
        let e = parse("app{=b}").unwrap_err().to_string();
        assert!(e.contains("expected a label name"), "{e}");
        let e = parse("app{a=b}x").unwrap_err().to_string();
        assert!(e.contains("after the closing"), "{e}");
        let e = parse("app{a b}").unwrap_err().to_string();
        assert!(e.contains("expected '='"), "{e}");
        assert!(matches!(
            parse(&"a".repeat(MAX_NAME_BYTES + 1)),
            Err(Error::TooLarge(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = parse(&s);
        }

        #[test]
        fn quoted_values_round_trip(
            app in "[a-z][a-z0-9_-]{0,10}",
            values in proptest::collection::vec("\\PC{0,12}", 0..5),
        ) {
            let mut name = format!("{app}.cpu{{");
            for (i, v) in values.iter().enumerate() {
                let escaped = v.replace('\\', "\\\\").replace('"', "\\\"")
                    .replace('\n', "\\n").replace('\t', "\\t");
                name.push_str(&format!("k{i}=\"{escaped}\","));
            }
            name.push('}');
            let p = parse(&name).unwrap();
            prop_assert_eq!(&p.app, &app);
            let got: Vec<String> = p.labels.into_iter().map(|(_, v)| v).collect();
            prop_assert_eq!(got, values);
        }
    }
}
