//! Folded stacks (`format=folded`, also `groups`): one `root;child;leaf 12`
//! line per stack, and `format=lines`: one `root;child;leaf` line per sample.
//! Identical stacks are summed; empty lines are skipped.

use ember_proto::google::v1::Profile;

use crate::{Error, Limits, ProfileBuilder, Result, types::ProfileKind};

/// How a text upload becomes a profile.
#[derive(Debug, Clone)]
pub struct FoldedOptions {
    pub limits: Limits,
    /// The profile type (from the name suffix) and the scale of the values.
    pub kind: ProfileKind,
    pub time_nanos: i64,
    pub duration_nanos: i64,
}

impl Default for FoldedOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            kind: crate::types::for_optional_suffix(None, 0),
            time_nanos: 0,
            duration_nanos: 0,
        }
    }
}

/// Parses folded stacks: `a;b;c 12` per line.
pub fn parse(input: &[u8], options: &FoldedOptions) -> Result<Profile> {
    parse_text(input, options, "folded", |line, n| {
        let (stack, value) = line.rsplit_once(' ').ok_or_else(|| {
            Error::Malformed(format!(
                "folded line {n} has no value: expected \"frame;frame;frame <number>\", got {:?}",
                shorten(line)
            ))
        })?;
        let value: i64 = value.trim().parse().map_err(|_| {
            Error::Malformed(format!(
                "folded line {n} ends in {:?}, which is not a whole number",
                shorten(value)
            ))
        })?;
        if value < 0 {
            return Err(Error::Unprocessable(format!(
                "folded line {n} has a negative value {value}"
            )));
        }
        Ok((stack, value))
    })
}

/// Parses `format=lines`: each line is one sample of its stack `a;b;c`.
pub fn parse_lines(input: &[u8], options: &FoldedOptions) -> Result<Profile> {
    parse_text(input, options, "lines", |line, _| Ok((line, 1)))
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

fn parse_text<'a>(
    input: &'a [u8],
    options: &FoldedOptions,
    what: &'static str,
    split: impl Fn(&'a str, usize) -> Result<(&'a str, i64)>,
) -> Result<Profile> {
    let limits = &options.limits;
    limits.check_size(what, input.len())?;
    let text = std::str::from_utf8(input).map_err(|e| {
        Error::Malformed(format!(
            "{what} input is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let mut builder = ProfileBuilder::for_kind(what, &options.kind, *limits);
    builder.time(options.time_nanos, options.duration_nanos);
    let mut frames: Vec<&str> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if limits.max_lines > 0 && n > limits.max_lines {
            return Err(Error::TooLarge(format!(
                "{what} input has more than {} lines, the limit",
                limits.max_lines
            )));
        }
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let (stack, value) = split(line, n)?;
        frames.clear();
        for frame in stack.split(';') {
            frames.push(frame);
            if limits.max_stack_depth > 0 && frames.len() > limits.max_stack_depth {
                return Err(Error::Unprocessable(format!(
                    "{what} line {n} has a stack of more than {} frames, the limit",
                    limits.max_stack_depth
                )));
            }
        }
        if frames.iter().all(|f| f.is_empty()) {
            return Err(Error::Malformed(format!(
                "{what} line {n} has an empty stack"
            )));
        }
        builder.add_names_root_first(&frames, value.saturating_mul(options.kind.scale))?;
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::for_suffix;
    use proptest::prelude::*;

    fn stacks(p: &Profile) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = p
            .sample
            .iter()
            .map(|s| {
                let names: Vec<&str> = s
                    .location_id
                    .iter()
                    .rev()
                    .map(|id| {
                        let f = &p.function[*id as usize - 1];
                        p.string_table[f.name as usize].as_str()
                    })
                    .collect();
                (names.join(";"), s.value[0])
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn sums_identical_stacks_and_scales() {
        let opts = FoldedOptions {
            kind: for_suffix("cpu", 100).unwrap(),
            ..Default::default()
        };
        let p = parse(b"a;b;c 1\na;b 2\r\n\na;b;c 3\n", &opts).unwrap();
        assert_eq!(
            stacks(&p),
            vec![("a;b".into(), 20_000_000), ("a;b;c".into(), 40_000_000)]
        );
        assert_eq!(p.period, 10_000_000);
    }

    #[test]
    fn frames_may_contain_spaces() {
        let p = parse(
            b"main;std::vec::Vec<T> as Drop 5\n",
            &FoldedOptions::default(),
        )
        .unwrap();
        assert_eq!(
            stacks(&p),
            vec![("main;std::vec::Vec<T> as Drop".into(), 5)]
        );
    }

    #[test]
    fn lines_count_occurrences() {
        let p = parse_lines(b"a;b\na;b\na\n", &FoldedOptions::default()).unwrap();
        assert_eq!(stacks(&p), vec![("a".into(), 1), ("a;b".into(), 2)]);
    }

    #[test]
    fn bad_inputs_say_what_is_wrong() {
        let o = FoldedOptions::default();
        let e = parse(b"a;b 1\na;b x\n", &o).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("whole number"), "{e}");
        let e = parse(b"a;b\n", &o).unwrap_err().to_string();
        assert!(e.contains("no value"), "{e}");
        let e = parse(b"a;\xff 1\n", &o).unwrap_err().to_string();
        assert!(e.contains("UTF-8"), "{e}");
        let deep = format!("{} 1\n", vec!["f"; 1001].join(";"));
        let e = parse(deep.as_bytes(), &o).unwrap_err();
        assert!(matches!(e, Error::Unprocessable(_)), "{e}");
        let small = FoldedOptions {
            limits: Limits {
                max_input_bytes: 4,
                ..Limits::default()
            },
            ..Default::default()
        };
        assert!(matches!(parse(b"a;b 1\n", &small), Err(Error::TooLarge(_))));
        let few = FoldedOptions {
            limits: Limits {
                max_samples: 2,
                ..Limits::default()
            },
            ..Default::default()
        };
        assert!(matches!(
            parse(b"a 1\nb 1\nc 1\n", &few),
            Err(Error::Unprocessable(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&input, &FoldedOptions::default());
            let _ = parse_lines(&input, &FoldedOptions::default());
        }

        #[test]
        fn totals_are_kept(
            lines in proptest::collection::vec(("[a-c]{1,2}(;[a-c]{1,2}){0,4}", 0i64..1000), 1..40)
        ) {
            let text: String = lines.iter().map(|(s, v)| format!("{s} {v}\n")).collect();
            let p = parse(text.as_bytes(), &FoldedOptions::default()).unwrap();
            let total: i64 = p.sample.iter().map(|s| s.value[0]).sum();
            prop_assert_eq!(total, lines.iter().map(|(_, v)| v).sum::<i64>());
        }
    }
}
