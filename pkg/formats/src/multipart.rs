//! A small, bounded `multipart/form-data` reader for `/ingest` uploads
//! (`profile`, `prev_profile`, `sample_type_config`, `jfr`, `labels`).

use crate::{Error, Result};

/// Most parts accepted in one upload.
pub const MAX_PARTS: usize = 16;

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    pub name: String,
    pub data: &'a [u8],
}

/// Returns the boundary of a `multipart/form-data` content type, or `None`
/// when the content type is something else.
pub fn boundary(content_type: &str) -> Option<Result<String>> {
    let mut parts = content_type.split(';');
    let media = parts.next()?.trim();
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let b = parts
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned());
    Some(match b {
        Some(b) if !b.is_empty() && b.len() <= 200 => Ok(b),
        _ => Err(Error::Malformed(
            "multipart/form-data without a valid boundary parameter".into(),
        )),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= haystack.len() {
        match haystack[i..=haystack.len() - needle.len()]
            .iter()
            .position(|&b| b == first)
        {
            None => return None,
            Some(off) => {
                i += off;
                if &haystack[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

fn bad(why: &str) -> Error {
    Error::Malformed(format!("invalid multipart/form-data body: {why}"))
}

/// Splits a form body into its parts.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>> {
    let delimiter = format!("--{boundary}");
    let start = find(body, delimiter.as_bytes()).ok_or_else(|| bad("the boundary never occurs"))?;
    let mut rest = &body[start + delimiter.len()..];
    let next = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| bad("a boundary is not followed by a line break"))?;
        let head_end = find(rest, b"\r\n\r\n").ok_or_else(|| bad("a part has no header end"))?;
        let head = std::str::from_utf8(&rest[..head_end])
            .map_err(|_| bad("part headers are not UTF-8"))?;
        let name = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
            .and_then(|(_, v)| {
                v.split(';')
                    .filter_map(|p| p.trim().split_once('='))
                    .find(|(k, _)| k.trim() == "name")
                    .map(|(_, v)| v.trim().trim_matches('"').to_owned())
            })
            .ok_or_else(|| bad("a part has no Content-Disposition name"))?;
        let data_start = &rest[head_end + 4..];
        let end = find(data_start, next.as_bytes())
            .ok_or_else(|| bad("the closing boundary is missing (truncated upload?)"))?;
        if parts.len() >= MAX_PARTS {
            return Err(bad("too many parts"));
        }
        parts.push(Part {
            name,
            data: &data_start[..end],
        });
        rest = &data_start[end + next.len()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_go_sdk_shaped_forms() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n\
Content-Type: application/octet-stream\r\n\r\n\x1f\x8b\r\n\x00\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"sample_type_config\"; filename=\"sample_type_config.json\"\r\n\r\n{}\r\n--XyZ--\r\n";
        let parts = parse(body, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "profile");
        assert_eq!(parts[0].data, b"\x1f\x8b\r\n\x00");
        assert_eq!(parts[1].data, b"{}");
        assert_eq!(
            boundary("multipart/form-data; boundary=\"XyZ\"")
                .unwrap()
                .unwrap(),
            "XyZ"
        );
        assert!(boundary("application/octet-stream").is_none());
        assert!(parse(&body[..body.len() - 12], "XyZ").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&body, "b");
        }
    }
}
