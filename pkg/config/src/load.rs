//! Layering configuration sources into one value: defaults, a YAML file,
//! environment variables, then command-line flags (each overriding the ones before).
//!
//! The sources are merged as one YAML value tree and deserialized once, so a value
//! means the same whatever its source. The set of keys is the tree of the
//! configuration's `Default`: a key, flag or variable outside it is an error that
//! names it, never silently ignored. Flags and variables are typed by the default they
//! override: booleans accept Go's spellings (`true`, `1`, `f`...), lists are comma
//! separated, strings are taken as written (so a bucket named `123` stays a string).
//! A key left empty in the file (`join:` with every entry commented out) keeps its
//! default.
//!
//! Flags are Go-style (`-name=value`, `-name value`, `--name=value`, `--name value`;
//! a boolean flag alone means true). Each key `a.b_c` is the flag `-a.b-c` and the
//! variable `<PREFIX>A_B_C`.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Serialize, de::DeserializeOwned};
use serde_yaml::{Mapping, Value};

use crate::{Documented, Error, duration};

/// How a program's configuration is loaded: its variables' prefix, the flags it
/// takes besides configuration keys, and the parts only the file may set.
#[derive(Debug, Clone)]
pub struct Loader {
    /// Prefix of the environment variables that set keys, e.g. `EMBER_`.
    pub env_prefix: &'static str,
    /// The variable naming the configuration file when `-config.file` is absent.
    pub config_file_env: &'static str,
    /// The text `-help` starts with, before the list of flags.
    pub usage: &'static str,
    /// Flags that are not configuration keys but switch the program to another
    /// action (`-version`): name and help line. `-help`, `-h` and `-config.file`
    /// are always there.
    pub switches: &'static [(&'static str, &'static str)],
    /// Keys that only the file may set (lists of mappings, such as scrape jobs).
    pub file_only: &'static [&'static str],
    /// Sections whose keys the file chooses (per-tenant overrides): the section's
    /// path and the default of one entry, which gives the keys an entry may have.
    pub keyed_sections: Vec<(&'static str, Value)>,
}

/// What [`Loader::load`] found on the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded<T> {
    /// Run with this configuration.
    Run(T),
    /// `-help` (or `-h`) was given: print this text. Like Go's `flag` package,
    /// help wins over anything after it.
    Help(String),
    /// These switches were given (each true): the program acts on them instead of
    /// running. The configuration file is not read.
    Switches(Vec<&'static str>),
}

/// One configuration key that a flag or variable can set: a leaf of the defaults.
#[derive(Debug, Clone)]
pub struct Key {
    /// Dotted YAML path, e.g. `server.http_listen_port`.
    pub path: String,
    /// The default value, which also gives the type of overrides.
    pub default: Value,
    env_prefix: &'static str,
}

impl Key {
    /// Returns the flag name without dashes, e.g. `server.http-listen-port`.
    pub fn flag(&self) -> String {
        self.path.replace('_', "-")
    }

    /// Returns the environment variable, e.g. `EMBER_SERVER_HTTP_LISTEN_PORT`.
    pub fn env(&self) -> String {
        let name = self.path.to_ascii_uppercase().replace(['.', '-'], "_");
        format!("{}{name}", self.env_prefix)
    }
}

/// The configuration's keys, derived from its `Default` so they cannot drift from
/// the structs.
#[derive(Debug)]
pub struct Keys {
    /// The defaults as a YAML tree: the base that sources are merged onto.
    defaults: Value,
    /// `defaults` with each keyed section's entries standing for any key: what a
    /// file may contain.
    schema: Value,
    /// Every leaf of `defaults` a flag or variable may set, in struct order.
    pub list: Vec<Key>,
}

/// Stands for any key of a mapping in the schema tree.
const ANY_KEY: &str = "*";

impl Keys {
    fn by_path(&self, path: &str) -> Option<&Key> {
        self.list.iter().find(|key| key.path == path)
    }

    fn by_env(&self, name: &str) -> Option<&Key> {
        self.list.iter().find(|key| key.env() == name)
    }
}

impl Loader {
    /// Returns the keys of `T`.
    pub fn keys<T: Serialize + Default>(&self) -> Keys {
        let defaults =
            serde_yaml::to_value(T::default()).expect("default configuration serializes");
        let mut schema = defaults.clone();
        for (path, entry) in &self.keyed_sections {
            let mut any = Mapping::new();
            any.insert(ANY_KEY.into(), entry.clone());
            schema[*path] = Value::Mapping(any);
        }
        let mut list = Vec::new();
        collect_leaves(&defaults, "", self.env_prefix, &mut list);
        list.retain(|key| !self.file_only.contains(&key.path.as_str()));
        Keys {
            defaults,
            schema,
            list,
        }
    }

    /// Loads `T` from its defaults, the file, `env` and `args`, in that order of
    /// precedence (see the module docs).
    ///
    /// `args` excludes the program name; `env` is typically `std::env::vars()`, of
    /// which only variables with the prefix are read.
    pub fn load<T>(&self, args: &[String], env: &[(String, String)]) -> Result<Loaded<T>, Error>
    where
        T: Serialize + DeserializeOwned + Default + Documented,
    {
        let keys = self.keys::<T>();
        let flags = match self.parse_args(args, &keys)? {
            Some(flags) => flags,
            None => return Ok(Loaded::Help(self.help_for::<T>(&keys))),
        };
        if !flags.switches.is_empty() {
            return Ok(Loaded::Switches(flags.switches));
        }

        let mut tree = keys.defaults.clone();
        let mut set_by = HashMap::new();

        let config_file = flags.config_file.clone().or_else(|| {
            env.iter()
                .find(|(name, value)| name == self.config_file_env && !value.is_empty())
                .map(|(_, value)| value.clone())
        });
        if let Some(path) = &config_file {
            let text = std::fs::read_to_string(path).map_err(|error| Error::ReadFile {
                file: path.clone(),
                error,
            })?;
            merge_file(&mut tree, &keys.schema, &text, path)?;
        }

        for (name, value) in env {
            if !name.starts_with(self.env_prefix) || name == self.config_file_env {
                continue;
            }
            let Some(key) = keys.by_env(name) else {
                if is_service_link(name, value) {
                    continue;
                }
                return Err(Error::UnknownEnv(name.clone()));
            };
            let origin = format!("environment variable {name}");
            set_key(&mut tree, key, value, &origin, false)?;
            set_by.insert(key.path.clone(), origin);
        }

        let mut seen_lists = Vec::new();
        for flag in &flags.values {
            let origin = format!("flag -{}", flag.name);
            // A list flag given again adds to the list, as Pyroscope's -memberlist.join does.
            let append = seen_lists.contains(&flag.key.path);
            if flag.key.default.is_sequence() && !append {
                seen_lists.push(flag.key.path.clone());
            }
            set_key(&mut tree, flag.key, &flag.value, &origin, append)?;
            set_by.insert(flag.key.path.clone(), origin);
        }

        deserialize(tree, &set_by, config_file.as_deref()).map(Loaded::Run)
    }

    /// Returns the defaults overlaid with a YAML document: what [`Loader::load`]
    /// gives for a file with this content and no environment or flags.
    pub fn from_yaml<T>(&self, yaml: &str) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Default,
    {
        let keys = self.keys::<T>();
        let mut tree = keys.defaults.clone();
        merge_file(&mut tree, &keys.schema, yaml, "configuration")?;
        deserialize(tree, &HashMap::new(), Some("configuration"))
    }

    /// Returns the `-help` text: usage, then every flag with its help line, type,
    /// default and variable.
    pub fn help<T: Serialize + Default + Documented>(&self) -> String {
        self.help_for::<T>(&self.keys::<T>())
    }

    fn help_for<T: Documented>(&self, keys: &Keys) -> String {
        let mut out = String::from(self.usage);
        let file_help = format!(
            "YAML configuration file to load (env {})",
            self.config_file_env
        );
        let builtin = [
            ("config.file string", file_help.as_str()),
            ("h, -help", "print this help and exit"),
        ];
        let switches = self.switches.iter().map(|&(name, help)| (name, help));
        for (flag, help) in builtin.into_iter().chain(switches) {
            let _ = writeln!(out, "  -{flag}\n        {help}");
        }
        for key in &keys.list {
            let kind = match &key.default {
                Value::Bool(_) => "",
                Value::Number(number) if number.is_f64() => " float",
                Value::Number(_) => " int",
                Value::Sequence(_) => " list",
                Value::String(text) if duration::parse(text).is_ok() => " duration",
                _ => " string",
            };
            let default = match &key.default {
                Value::String(text) => format!("{text:?}"),
                Value::Sequence(items) => {
                    let items: Vec<String> = items.iter().map(yaml_scalar_text).collect();
                    format!("{:?}", items.join(","))
                }
                other => yaml_scalar_text(other),
            };
            let _ = writeln!(
                out,
                "  -{}{kind}\n        {} (default {default}, env {})",
                key.flag(),
                T::key_help(&key.path)
                    .unwrap_or_default()
                    .trim_end_matches('.'),
                key.env(),
            );
        }
        out
    }

    /// Parses Go-style flags; `None` means help was asked for.
    fn parse_args<'k>(&self, args: &[String], keys: &'k Keys) -> Result<Option<Flags<'k>>, Error> {
        let mut flags = Flags::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if arg == "--" {
                return match args.next() {
                    Some(extra) => Err(Error::UnexpectedArgument(extra.clone())),
                    None => Ok(Some(flags)),
                };
            }
            let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                return Err(Error::UnexpectedArgument(arg.clone()));
            };
            if body.is_empty() && arg == "-" {
                return Err(Error::UnexpectedArgument(arg.clone()));
            }
            if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
                return Err(Error::BadFlagSyntax(arg.clone()));
            }
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let switch = |inline: Option<&str>| match inline {
                None => Ok(true),
                Some(text) => parse_bool(text).ok_or_else(|| Error::BadOverride {
                    set_by: format!("flag -{name}"),
                    value: text.to_string(),
                    expected: "expected true or false",
                }),
            };
            let mut value = |inline: Option<&str>| match inline {
                Some(text) => Ok(text.to_string()),
                None => args
                    .next()
                    .cloned()
                    .ok_or_else(|| Error::MissingFlagValue(name.to_string())),
            };
            if let Some(&(switch_name, _)) = self.switches.iter().find(|(s, _)| *s == name) {
                flags.switches.retain(|s| *s != switch_name);
                if switch(inline)? {
                    flags.switches.push(switch_name);
                }
                continue;
            }
            match name {
                "h" | "help" => {
                    if switch(inline)? {
                        return Ok(None);
                    }
                }
                "config.file" => flags.config_file = Some(value(inline)?),
                _ => {
                    let key = keys
                        .by_path(&name.replace('-', "_"))
                        .ok_or_else(|| Error::UnknownFlag(name.to_string()))?;
                    // A boolean never takes the next argument, as in Go: `-x false` is
                    // not `-x=false`.
                    let text = if key.default.is_bool() {
                        inline.unwrap_or("true").to_string()
                    } else {
                        value(inline)?
                    };
                    flags.values.push(FlagValue {
                        name: name.to_string(),
                        key,
                        value: text,
                    });
                }
            }
        }
        Ok(Some(flags))
    }
}

/// Returns whether `name` has the shape of a variable Kubernetes injects for a
/// Service (`EMBER_PORT`, `EMBER_QUERIER_SERVICE_HOST`, `EMBER_PORT_4040_TCP_ADDR`):
/// a Service named like the prefix must not stop its own pods from starting.
fn is_service_link(name: &str, value: &str) -> bool {
    let url = ["tcp://", "udp://", "sctp://"]
        .iter()
        .any(|p| value.starts_with(p));
    (name.ends_with("_PORT") && url)
        || name
            .split_once("_PORT_")
            .is_some_and(|(_, rest)| rest.starts_with(|c: char| c.is_ascii_digit()))
        || name.ends_with("_SERVICE_HOST")
        || name.contains("_SERVICE_PORT")
}

fn collect_leaves(value: &Value, prefix: &str, env_prefix: &'static str, out: &mut Vec<Key>) {
    match value {
        Value::Mapping(map) => {
            for (name, child) in map {
                let Some(name) = name.as_str() else { continue };
                let path = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}.{name}")
                };
                collect_leaves(child, &path, env_prefix, out);
            }
        }
        leaf => out.push(Key {
            path: prefix.to_string(),
            default: leaf.clone(),
            env_prefix,
        }),
    }
}

/// Merges a YAML document onto `tree`, refusing keys that `schema` does not have.
fn merge_file(tree: &mut Value, schema: &Value, text: &str, file: &str) -> Result<(), Error> {
    let mut doc: Value = serde_yaml::from_str(text).map_err(|error| Error::ParseFile {
        file: file.to_string(),
        error,
    })?;
    doc.apply_merge().map_err(|error| Error::ParseFile {
        file: file.to_string(),
        error,
    })?;
    match doc {
        Value::Null => Ok(()),
        Value::Mapping(map) => merge_mapping(tree, schema, map, "", file),
        _ => Err(Error::NotAMapping {
            key: "the top level".into(),
            file: file.to_string(),
        }),
    }
}

fn merge_mapping(
    tree: &mut Value,
    schema: &Value,
    map: Mapping,
    prefix: &str,
    file: &str,
) -> Result<(), Error> {
    for (name, value) in map {
        let name = match name {
            Value::String(name) => name,
            other => yaml_scalar_text(&other),
        };
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let Some(child_schema) = schema.get(&name).or_else(|| schema.get(ANY_KEY)) else {
            return Err(Error::UnknownKey {
                key: path,
                file: file.to_string(),
            });
        };
        if value.is_null() {
            continue; // An empty key keeps its default.
        }
        if !tree.is_mapping() {
            *tree = Value::Mapping(Mapping::new());
        }
        let slot = tree
            .as_mapping_mut()
            .expect("just made a mapping")
            .entry(Value::String(name))
            .or_insert(Value::Null);
        match (child_schema.is_mapping(), value) {
            (true, Value::Mapping(child)) => {
                merge_mapping(slot, child_schema, child, &path, file)?;
            }
            (true, _) => {
                return Err(Error::NotAMapping {
                    key: path,
                    file: file.to_string(),
                });
            }
            (false, value) => *slot = value,
        }
    }
    Ok(())
}

/// Returns a YAML scalar as it would be written in a file (`30s`, `true`, `4040`).
pub fn yaml_scalar_text(value: &Value) -> String {
    serde_yaml::to_string(value)
        .map(|text| text.trim_end().to_string())
        .unwrap_or_default()
}

/// Sets `key` in `tree` from a flag or variable value, typed by the key's default.
fn set_key(
    tree: &mut Value,
    key: &Key,
    raw: &str,
    origin: &str,
    append: bool,
) -> Result<(), Error> {
    let bad = |expected| Error::BadOverride {
        set_by: origin.to_string(),
        value: raw.to_string(),
        expected,
    };
    let value = match &key.default {
        Value::Sequence(default) => {
            let item_type = default.first();
            let mut items = Vec::new();
            if append && let Some(Value::Sequence(existing)) = lookup(tree, &key.path) {
                items.extend(existing.iter().cloned());
            }
            for item in split_list(raw) {
                items.push(typed_scalar(item_type, item).map_err(bad)?);
            }
            Value::Sequence(items)
        }
        default => typed_scalar(Some(default), raw).map_err(bad)?,
    };

    let mut node = tree;
    for segment in key.path.split('.') {
        if !node.is_mapping() {
            // The file gave a scalar where a section belongs; deserializing reports it.
            return Ok(());
        }
        node = node
            .as_mapping_mut()
            .expect("checked above")
            .entry(Value::String(segment.to_string()))
            .or_insert(Value::Null);
    }
    *node = value;
    Ok(())
}

fn lookup<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(tree, |node, segment| node.get(segment))
}

/// Splits a comma list, trimming items and dropping empty ones.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// Converts override text to a value of the same kind as `like`.
fn typed_scalar(like: Option<&Value>, raw: &str) -> Result<Value, &'static str> {
    let text = raw.trim();
    match like {
        Some(Value::Bool(_)) => parse_bool(text)
            .map(Value::Bool)
            .ok_or("expected true or false"),
        Some(Value::Number(number)) if number.is_f64() => text
            .parse::<f64>()
            .ok()
            .filter(|value| value.is_finite())
            .map(Value::from)
            .ok_or("expected a number"),
        Some(Value::Number(number)) if number.is_u64() => text
            .parse::<u64>()
            .map(Value::from)
            .map_err(|_| "expected a non-negative integer"),
        Some(Value::Number(_)) => text
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| "expected an integer"),
        Some(Value::String(_)) | None => Ok(Value::String(raw.to_string())),
        Some(_) => serde_yaml::from_str(raw).map_err(|_| "expected a YAML value"),
    }
}

/// Parses a boolean as Go's `strconv.ParseBool` does.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Deserializes the merged tree once, naming the source of a bad value.
fn deserialize<T: DeserializeOwned>(
    tree: Value,
    set_by: &HashMap<String, String>,
    file: Option<&str>,
) -> Result<T, Error> {
    serde_path_to_error::deserialize(tree).map_err(|error| {
        let key = error.path().to_string();
        let leaf = key.split('[').next().unwrap_or_default();
        let origin = set_by
            .get(leaf)
            .cloned()
            .or_else(|| file.map(str::to_string))
            .unwrap_or_else(|| "defaults".to_string());
        Error::InvalidValue {
            key,
            set_by: origin,
            message: error.into_inner().to_string(),
        }
    })
}

/// A configuration flag found on the command line.
#[derive(Debug)]
struct FlagValue<'k> {
    /// The name as typed, without dashes.
    name: String,
    key: &'k Key,
    value: String,
}

/// The command line, parsed.
#[derive(Debug, Default)]
struct Flags<'k> {
    config_file: Option<String>,
    switches: Vec<&'static str>,
    values: Vec<FlagValue<'k>>,
}
