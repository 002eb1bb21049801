//! (e) folded and (f) JFR uploads of the legacy `/ingest` endpoint: the
//! parse floor (gunzip + the `ember_formats` parser) and the full ingest
//! (parse + `Distributor::ingest_profile`), converted and labelled exactly as
//! `pkg/server/src/ingest.rs` does it.

use std::{collections::HashMap, fmt::Write as _, path::Path, sync::Arc, time::Duration};

use ember_distributor::Distributor;
use ember_formats::{FoldedOptions, Limits, folded, jfr, jfr::JfrOptions, types};
use ember_model::{Labels, ingest::labels_of, pprof};
use ember_proto::google::v1::Profile;
use ember_time::SystemClock;

use crate::{
    BoxResult, TENANT,
    corpus::Corpus,
    ingest::{Item, Rate, new_ingester, run_rounds},
};

/// The `sampleRate` of every upload: the SDKs' default.
const SAMPLE_RATE: u32 = 100;
/// The `until - from` of every upload.
const DURATION_NANOS: i64 = 10_000_000_000;
/// Bytes of stacks kept per folded upload, the heaviest stacks first (at
/// least one), so that the folded mix stays a few hundred KB.
const MAX_FOLDED_BYTES: usize = 10_000;

/// One `/ingest` upload.
#[derive(Debug)]
pub(crate) struct Upload {
    pub(crate) name: String,
    /// The body as sent: folded text, or the gzipped JFR recording.
    pub(crate) body: Vec<u8>,
    pub(crate) labels: Labels,
}

impl Item for Upload {
    fn name(&self) -> &str {
        &self.name
    }

    fn bytes(&self) -> usize {
        self.body.len()
    }
}

/// Returns the JFR recording of the formats crate's tests.
pub(crate) fn default_jfr() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../formats/testdata/busy.jfr.gz")
}

/// Returns the function names of one location, root (caller) first.
fn frames(p: &Profile, location_id: u64, out: &mut Vec<String>) {
    let string = |i: i64| p.string_table.get(i as usize).cloned().unwrap_or_default();
    let Some(loc) = p.location.iter().find(|l| l.id == location_id) else {
        out.push(format!("0x{location_id:x}"));
        return;
    };
    let before = out.len();
    for line in loc.line.iter().rev() {
        if let Some(f) = p.function.iter().find(|f| f.id == line.function_id) {
            let name = string(f.name);
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    if out.len() == before {
        out.push(format!("0x{:x}", loc.address));
    }
}

/// Folds one pprof profile: one `root;..;leaf value` line per distinct stack
/// of function names, with the first value column, heaviest stacks first,
/// within [`MAX_FOLDED_BYTES`].
fn fold(p: &Profile) -> String {
    let mut sums: HashMap<String, i64> = HashMap::new();
    let mut stack = Vec::new();
    for s in &p.sample {
        let value = s.value.first().copied().unwrap_or(0);
        if value <= 0 {
            continue;
        }
        stack.clear();
        for &id in s.location_id.iter().rev() {
            frames(p, id, &mut stack);
        }
        if stack.is_empty() {
            continue;
        }
        // Spaces and semicolons separate stacks and values in the format.
        let line = stack.join(";").replace([' ', '\n'], "_");
        *sums.entry(line).or_default() += value;
    }
    let mut lines: Vec<(String, i64)> = sums.into_iter().collect();
    lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut text = String::new();
    for (stack, value) in lines {
        if !text.is_empty() && text.len() + stack.len() > MAX_FOLDED_BYTES {
            break;
        }
        let _ = writeln!(text, "{stack} {value}");
    }
    text
}

/// Folds every profile of the mix into one plain-text folded upload each.
pub(crate) fn folded_uploads(corpus: &Corpus) -> Vec<Upload> {
    corpus
        .inputs
        .iter()
        .map(|i| (i, fold(&i.profile.to_profile())))
        .filter(|(_, text)| !text.is_empty())
        .map(|(i, text)| Upload {
            name: i.name.clone(),
            body: text.into_bytes(),
            labels: labels_of(&[("service_name", &format!("folded-{}", i.name))]),
        })
        .collect()
}

/// Reads the gzipped JFR recording at `path` as one upload.
pub(crate) fn jfr_upload(path: &Path) -> BoxResult<Upload> {
    let body = std::fs::read(path).map_err(|e| format!("reading JFR {}: {e}", path.display()))?;
    Ok(Upload {
        name: path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        body,
        labels: labels_of(&[("service_name", "jfr-busy")]),
    })
}

/// Gunzips a body when it is gzipped, as the endpoint does.
fn gunzip(body: &[u8], max: usize) -> BoxResult<Vec<u8>> {
    Ok(pprof::gunzip_bounded(body, max)?.into_owned())
}

/// The parse floor and full ingest of one format, with what one pass holds.
#[derive(Debug)]
pub(crate) struct FormatRates {
    pub(crate) parse: Rate,
    pub(crate) ingest: Rate,
    /// Uploads, body bytes, pprof profiles and samples of one pass.
    pub(crate) uploads: usize,
    pub(crate) bytes: usize,
    pub(crate) profiles: usize,
    pub(crate) samples: usize,
}

impl FormatRates {
    /// Returns ingest throughput as a share of the parse floor.
    pub(crate) fn ratio(&self) -> f64 {
        self.ingest.mb_per_sec() / self.parse.mb_per_sec()
    }
}

/// (e) and (f).
#[derive(Debug)]
pub(crate) struct FormatResults {
    pub(crate) folded: FormatRates,
    pub(crate) jfr: FormatRates,
}

fn distributor() -> Distributor {
    Distributor::new(
        new_ingester(),
        Arc::new(ember_limits::Limits::unlimited()),
        SystemClock::shared(),
    )
}

/// Stores converted profiles as the endpoint does: `__name__` from the
/// converter, `__delta__="false"`, empty profiles skipped.
fn ingest_converted(distributor: &Distributor, labels: &Labels, profiles: Named) -> BoxResult<()> {
    for (name, profile) in profiles {
        if profile.sample.is_empty() {
            continue;
        }
        let mut labels = labels.clone();
        labels.set("__name__", name);
        labels.set("__delta__", "false");
        distributor.ingest_profile(TENANT, &labels, profile)?;
    }
    Ok(())
}

fn folded_options(time_nanos: i64) -> FoldedOptions {
    FoldedOptions {
        limits: Limits::default(),
        kind: types::for_optional_suffix(None, SAMPLE_RATE),
        time_nanos,
        duration_nanos: DURATION_NANOS,
    }
}

fn parse_folded(u: &Upload, time_nanos: i64) -> BoxResult<(String, Profile)> {
    let options = folded_options(time_nanos);
    let text = gunzip(&u.body, options.limits.max_input_bytes)?;
    let profile = folded::parse(&text, &options)?;
    Ok((options.kind.name, profile))
}

fn jfr_options(body: &Upload, time_nanos: i64) -> JfrOptions {
    let limits = Limits::default();
    JfrOptions {
        limits: Limits {
            max_input_bytes: limits.max_input_bytes.max(body.body.len()),
            ..limits
        },
        sample_rate: SAMPLE_RATE,
        time_nanos,
        duration_nanos: DURATION_NANOS,
    }
}

fn parse_jfr(u: &Upload, time_nanos: i64) -> BoxResult<Named> {
    let options = jfr_options(u, time_nanos);
    let data = gunzip(&u.body, options.limits.max_input_bytes)?;
    Ok(jfr::parse(&data, &options)?)
}

/// Converted profiles with their `__name__`.
type Named = Vec<(String, Profile)>;

/// Runs one format's two loops interleaved until parsing has used `min`.
fn measure(
    uploads: &[Upload],
    min: Duration,
    parse: &dyn Fn(&Upload, i64) -> BoxResult<Named>,
) -> BoxResult<FormatRates> {
    let time_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as i64;
    let (mut profiles, mut samples) = (0, 0);
    for u in uploads {
        for (_, p) in parse(u, time_nanos).map_err(|e| format!("{}: {e}", u.name))? {
            profiles += 1;
            samples += p.sample.len();
        }
    }
    let mut parse_only = |u: &Upload| -> BoxResult<()> {
        std::hint::black_box(parse(u, time_nanos)?);
        Ok(())
    };
    let distributor = distributor();
    let mut ingest = |u: &Upload| -> BoxResult<()> {
        ingest_converted(&distributor, &u.labels, parse(u, time_nanos)?)
    };
    let mut rates = run_rounds(
        min,
        uploads,
        &mut [("parse", &mut parse_only), ("ingest", &mut ingest)],
    )?
    .into_iter();
    let mut next = || rates.next().expect("one rate per loop");
    Ok(FormatRates {
        parse: next(),
        ingest: next(),
        uploads: uploads.len(),
        bytes: uploads.iter().map(|u| u.body.len()).sum(),
        profiles,
        samples,
    })
}

/// Measures (e) on `folded` and (f) on `jfr`, each format's parse and ingest
/// interleaved until its parse has used `min` of CPU time.
pub(crate) fn run(folded: &[Upload], jfr: &[Upload], min: Duration) -> BoxResult<FormatResults> {
    let folded = measure(folded, min, &|u, t| Ok(vec![parse_folded(u, t)?]))?;
    let jfr = measure(jfr, min, &parse_jfr)?;
    Ok(FormatResults { folded, jfr })
}
