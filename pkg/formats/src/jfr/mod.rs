//! Java Flight Recorder files (`format=jfr`), as the JDK
//! (`-XX:StartFlightRecording`) and async-profiler (Pyroscope's Java agent)
//! write them, converted to one pprof per kind of event, named as Pyroscope
//! names them:
//!
//! | event | profile | sample types (period) |
//! |---|---|---|
//! | `jdk.ExecutionSample` | `process_cpu` (`wall` when the recording's `event` setting is `wall`) | `cpu`/`nanoseconds` (`cpu`/`nanoseconds`), samples × 1e9/sampleRate |
//! | `profiler.WallClockSample` | `wall` | `wall`/`nanoseconds` (`wall`/`nanoseconds`) |
//! | `jdk.ObjectAllocationInNewTLAB` | `memory` | `alloc_in_new_tlab_objects`/`count`, `alloc_in_new_tlab_bytes`/`bytes` (`space`/`bytes`) |
//! | `jdk.ObjectAllocationOutsideTLAB` | `memory` | `alloc_outside_tlab_objects`/`count`, `alloc_outside_tlab_bytes`/`bytes` (`space`/`bytes`) |
//! | `jdk.ObjectAllocationSample` | `memory` | `alloc_sample_objects`/`count`, `alloc_sample_bytes`/`bytes` (`space`/`bytes`) |
//! | `jdk.JavaMonitorEnter` | `mutex` | `contentions`/`count`, `delay`/`nanoseconds` (`mutex`/`count`) |
//! | `jdk.ThreadPark` | `block` | `contentions`/`count`, `delay`/`nanoseconds` (`block`/`count`) |
//! | `profiler.LiveObject` | `memory` | `live`/`count` (`objects`/`count`) |
//!
//! The decoder reads the chunk's metadata (the self-description of every
//! event type), then its constant pools, then the events; values are decoded
//! generically by the metadata, so any JDK version's layout is read the same
//! way. Work is bounded: a budget proportional to the input size caps the
//! values decoded, nesting is limited, and every count is checked against the
//! bytes that remain.

use std::{collections::HashMap, rc::Rc};

use ember_proto::google::v1::Profile;

use crate::{Error, Limits, ProfileBuilder, Result};

/// How a JFR upload becomes profiles.
#[derive(Debug, Clone, Default)]
pub struct JfrOptions {
    pub limits: Limits,
    /// CPU sampling rate in Hz (`sampleRate`); 0 means 100, the agents' default.
    pub sample_rate: u32,
    /// Profile start time; 0 takes the recording's.
    pub time_nanos: i64,
    /// Profile duration; 0 takes the recording's.
    pub duration_nanos: i64,
}

const MAGIC: &[u8; 4] = b"FLR\0";
const HEADER_BYTES: usize = 68;
const MAX_NESTING: usize = 32;
const MAX_METADATA_ELEMENTS: usize = 1 << 20;

fn malformed(why: impl std::fmt::Display) -> Error {
    Error::Malformed(format!("invalid JFR recording: {why}"))
}

fn truncated() -> Error {
    malformed("it ends in the middle of a value (truncated upload?)")
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn u8(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or_else(truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(truncated());
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn be_u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(
            self.bytes(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// JFR's compressed integer: 7 bits per byte, the ninth byte whole.
    fn var(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..8 {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Ok(v | u64::from(self.u8()?) << 56)
    }

    fn count(&mut self, what: &str) -> Result<usize> {
        let n = self.var()?;
        if n > self.remaining() as u64 {
            return Err(malformed(format_args!(
                "{what} count {n} is larger than the rest of the recording"
            )));
        }
        Ok(n as usize)
    }

    /// Returns a string, or a reference into the string pool.
    fn string(&mut self) -> Result<Value> {
        match self.u8()? {
            0 => Ok(Value::Null),
            1 => Ok(Value::Str(Rc::from(""))),
            2 => Ok(Value::Ref(STRING_POOL, self.var()?)),
            3 => {
                let n = self.count("string length")?;
                let b = self.bytes(n)?;
                let s = std::str::from_utf8(b)
                    .map_err(|_| malformed("a UTF-8 string is not valid UTF-8"))?;
                Ok(Value::Str(Rc::from(s)))
            }
            4 => {
                let n = self.count("string length")?;
                let mut units = Vec::with_capacity(n);
                for _ in 0..n {
                    units.push(self.var()? as u16);
                }
                Ok(Value::Str(Rc::from(String::from_utf16_lossy(&units))))
            }
            5 => {
                let n = self.count("string length")?;
                let s: String = self.bytes(n)?.iter().map(|&b| b as char).collect();
                Ok(Value::Str(Rc::from(s)))
            }
            e => Err(malformed(format_args!("unknown string encoding {e}"))),
        }
    }
}

/// Marks string-pool references before the pool's class ID is known.
const STRING_POOL: u64 = u64::MAX;

#[derive(Debug, Clone)]
enum Value {
    Null,
    Int(i64),
    Float,
    Str(Rc<str>),
    /// A constant-pool reference: (class ID, key).
    Ref(u64, u64),
    Obj(Vec<Value>),
    Array(Vec<Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prim {
    Byte,
    Var,
    F32,
    F64,
    Str,
}

#[derive(Debug, Default)]
struct Field {
    name: String,
    class: u64,
    pooled: bool,
    array: bool,
}

#[derive(Debug, Default)]
struct Class {
    name: String,
    prim: Option<Prim>,
    fields: Vec<Field>,
}

struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
}

impl Element {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
}

struct Chunk<'a> {
    classes: HashMap<u64, Class>,
    pools: HashMap<(u64, u64), Value>,
    string_class: u64,
    budget: usize,
    data: &'a [u8],
}

impl Chunk<'_> {
    fn spend(&mut self) -> Result<()> {
        if self.budget == 0 {
            return Err(Error::Unprocessable(
                "JFR recording takes too much work to decode for its size".into(),
            ));
        }
        self.budget -= 1;
        Ok(())
    }

    fn decode(&mut self, r: &mut Reader<'_>, class: u64, depth: usize) -> Result<Value> {
        self.spend()?;
        if depth > MAX_NESTING {
            return Err(malformed("values are nested too deeply"));
        }
        let c = self
            .classes
            .get(&class)
            .ok_or_else(|| malformed(format_args!("a value has undeclared type {class}")))?;
        if let Some(p) = c.prim {
            return Ok(match p {
                Prim::Byte => Value::Int(i64::from(r.u8()?)),
                Prim::Var => Value::Int(r.var()? as i64),
                Prim::F32 => {
                    r.bytes(4)?;
                    Value::Float
                }
                Prim::F64 => {
                    r.bytes(8)?;
                    Value::Float
                }
                Prim::Str => match r.string()? {
                    Value::Ref(_, k) => Value::Ref(self.string_class, k),
                    v => v,
                },
            });
        }
        let fields: Vec<(u64, bool, bool)> = c
            .fields
            .iter()
            .map(|f| (f.class, f.pooled, f.array))
            .collect();
        let mut out = Vec::with_capacity(fields.len());
        for (fclass, pooled, array) in fields {
            if array {
                let n = r.count("array")?;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.single(r, fclass, pooled, depth)?);
                }
                out.push(Value::Array(items));
            } else {
                out.push(self.single(r, fclass, pooled, depth)?);
            }
        }
        Ok(Value::Obj(out))
    }

    fn single(
        &mut self,
        r: &mut Reader<'_>,
        class: u64,
        pooled: bool,
        depth: usize,
    ) -> Result<Value> {
        if pooled {
            self.spend()?;
            Ok(Value::Ref(class, r.var()?))
        } else {
            self.decode(r, class, depth + 1)
        }
    }

    fn class_id(&self, name: &str) -> Option<u64> {
        self.classes
            .iter()
            .find(|(_, c)| c.name == name)
            .map(|(id, _)| *id)
    }

    /// Returns field `name` of `value`, an object of `class` (or a reference to one).
    fn field<'v>(&'v self, class: u64, value: &'v Value, name: &str) -> Option<(u64, &'v Value)> {
        let (class, value) = self.deref(class, value)?;
        let c = self.classes.get(&class)?;
        let i = c.fields.iter().position(|f| f.name == name)?;
        match value {
            Value::Obj(fields) => fields.get(i).map(|v| (c.fields[i].class, v)),
            _ => None,
        }
    }

    fn deref<'v>(&'v self, class: u64, value: &'v Value) -> Option<(u64, &'v Value)> {
        match value {
            Value::Ref(c, k) => self.pools.get(&(*c, *k)).map(|v| (*c, v)),
            v => Some((class, v)),
        }
    }

    fn int(&self, class: u64, value: &Value, name: &str) -> Option<i64> {
        match self.field(class, value, name)? {
            (_, Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    fn string(&self, class: u64, value: &Value) -> Option<Rc<str>> {
        match self.deref(class, value)? {
            (_, Value::Str(s)) => Some(s.clone()),
            (c, v @ Value::Obj(_)) => {
                // A symbol: { string: String }.
                let (sc, s) = self.field(c, v, "string")?;
                self.string(sc, s)
            }
            _ => None,
        }
    }
}

/// A sample type: (type, unit).
type SampleType = (&'static str, &'static str);
/// A period: (type, unit, value).
type Period = (&'static str, &'static str, i64);

/// The profiles one recording yields.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
enum Kind {
    Cpu,
    Wall,
    InTlab,
    OutTlab,
    AllocSample,
    Lock,
    Park,
    Live,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Cpu => "process_cpu",
            Kind::Wall => "wall",
            Kind::InTlab | Kind::OutTlab | Kind::AllocSample | Kind::Live => "memory",
            Kind::Lock => "mutex",
            Kind::Park => "block",
        }
    }

    fn builder(self, period: i64, limits: Limits) -> ProfileBuilder {
        let (types, pt): (&[SampleType], Period) = match self {
            Kind::Cpu => (&[("cpu", "nanoseconds")], ("cpu", "nanoseconds", period)),
            Kind::Wall => (&[("wall", "nanoseconds")], ("wall", "nanoseconds", period)),
            Kind::InTlab => (
                &[
                    ("alloc_in_new_tlab_objects", "count"),
                    ("alloc_in_new_tlab_bytes", "bytes"),
                ],
                ("space", "bytes", 0),
            ),
            Kind::OutTlab => (
                &[
                    ("alloc_outside_tlab_objects", "count"),
                    ("alloc_outside_tlab_bytes", "bytes"),
                ],
                ("space", "bytes", 0),
            ),
            Kind::AllocSample => (
                &[
                    ("alloc_sample_objects", "count"),
                    ("alloc_sample_bytes", "bytes"),
                ],
                ("space", "bytes", 0),
            ),
            Kind::Lock => (
                &[("contentions", "count"), ("delay", "nanoseconds")],
                ("mutex", "count", 0),
            ),
            Kind::Park => (
                &[("contentions", "count"), ("delay", "nanoseconds")],
                ("block", "count", 0),
            ),
            Kind::Live => (&[("live", "count")], ("objects", "count", 0)),
        };
        ProfileBuilder::new("JFR profile", types, Some(pt), limits)
    }
}

struct Output {
    builders: HashMap<Kind, ProfileBuilder>,
    limits: Limits,
    period: i64,
    time_nanos: i64,
    duration_nanos: i64,
    /// The async-profiler `event` setting (`cpu`, `itimer`, `wall`, ...).
    event: Option<String>,
}

/// Parses a JFR recording (one or more chunks) into (profile name, profile)
/// pairs, one per kind of event present, in a stable order.
pub fn parse(input: &[u8], options: &JfrOptions) -> Result<Vec<(String, Profile)>> {
    let limits = options.limits;
    limits.check_size("JFR", input.len())?;
    if !input.starts_with(MAGIC) {
        return Err(malformed(
            "it does not start with the JFR magic \"FLR\\0\"; send the .jfr file as recorded",
        ));
    }
    let sample_rate = if options.sample_rate == 0 {
        100
    } else {
        options.sample_rate
    };
    let mut out = Output {
        builders: HashMap::new(),
        limits,
        period: 1_000_000_000 / i64::from(sample_rate),
        time_nanos: 0,
        duration_nanos: 0,
        event: None,
    };
    let mut pos = 0;
    let mut chunks = 0;
    while pos < input.len() {
        chunks += 1;
        pos += parse_chunk(&input[pos..], &mut out, chunks)?;
    }
    let mut kinds: Vec<Kind> = out.builders.keys().copied().collect();
    kinds.sort();
    let mut result = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let mut b = out.builders.remove(&kind).expect("present");
        if b.is_empty() {
            continue;
        }
        b.time(
            if options.time_nanos != 0 {
                options.time_nanos
            } else {
                out.time_nanos
            },
            if options.duration_nanos != 0 {
                options.duration_nanos
            } else {
                out.duration_nanos
            },
        );
        result.push((kind.name().to_owned(), b.build()));
    }
    Ok(result)
}

/// Parses one chunk and returns its size.
fn parse_chunk(data: &[u8], out: &mut Output, number: usize) -> Result<usize> {
    if data.len() < HEADER_BYTES {
        return Err(malformed(format_args!(
            "chunk {number} has a truncated header"
        )));
    }
    if !data.starts_with(MAGIC) {
        return Err(malformed(format_args!(
            "chunk {number} does not start with \"FLR\\0\""
        )));
    }
    let mut h = Reader { buf: data, pos: 4 };
    let major = u16::from_be_bytes([h.u8()?, h.u8()?]);
    let minor = u16::from_be_bytes([h.u8()?, h.u8()?]);
    if major != 2 && major != 1 {
        return Err(Error::Unprocessable(format!(
            "JFR format version {major}.{minor} is not supported: use a JDK 11 or newer, or async-profiler"
        )));
    }
    let size = h.be_u64()?;
    let _cp_offset = h.be_u64()?;
    let _meta_offset = h.be_u64()?;
    let start_nanos = h.be_u64()? as i64;
    let duration_nanos = h.be_u64()? as i64;
    let _start_ticks = h.be_u64()?;
    let ticks_per_second = h.be_u64()?.max(1);
    let features = u32::from_be_bytes(h.bytes(4)?.try_into().expect("4 bytes"));
    if features & 1 == 0 {
        return Err(Error::Unprocessable(
            "JFR chunks with uncompressed integers are not supported".into(),
        ));
    }
    if size < HEADER_BYTES as u64 || size > data.len() as u64 {
        return Err(malformed(format_args!(
            "chunk {number} claims {size} bytes but {} remain (truncated upload?)",
            data.len()
        )));
    }
    let size = size as usize;
    let data = &data[..size];
    if out.time_nanos == 0 {
        out.time_nanos = start_nanos;
    }
    out.duration_nanos = out.duration_nanos.saturating_add(duration_nanos);

    // Pass 1: find the events by type.
    let mut metadata = Vec::new();
    let mut pools = Vec::new();
    let mut events = Vec::new();
    let mut r = Reader {
        buf: data,
        pos: HEADER_BYTES,
    };
    while r.pos < size {
        let start = r.pos;
        let len = r.var()? as usize;
        if len == 0 || len > size - start {
            return Err(malformed(format_args!(
                "an event at byte {start} of chunk {number} has an impossible size {len}"
            )));
        }
        let ty = r.var()?;
        match ty {
            0 => metadata.push(start..start + len),
            1 => pools.push(start..start + len),
            _ => events.push((ty, start..start + len)),
        }
        r.pos = start + len;
    }
    let mut chunk = Chunk {
        classes: HashMap::new(),
        pools: HashMap::new(),
        string_class: STRING_POOL,
        budget: data.len().saturating_mul(16).saturating_add(100_000),
        data,
    };
    for m in metadata {
        read_metadata(&mut chunk, m)?;
    }
    chunk.string_class = chunk.class_id("java.lang.String").unwrap_or(STRING_POOL);
    for p in pools {
        read_pool(&mut chunk, p)?;
    }

    // Pass 2: the events we turn into samples.
    let ids = |name: &str| chunk.class_id(name);
    let wanted: Vec<(u64, &str)> = [
        "jdk.ExecutionSample",
        "profiler.WallClockSample",
        "jdk.ObjectAllocationInNewTLAB",
        "jdk.ObjectAllocationOutsideTLAB",
        "jdk.ObjectAllocationSample",
        "jdk.JavaMonitorEnter",
        "jdk.ThreadPark",
        "profiler.LiveObject",
        "jdk.ActiveSetting",
    ]
    .into_iter()
    .filter_map(|n| ids(n).map(|id| (id, n)))
    .collect();
    let mut stacks: HashMap<u64, Rc<Vec<Rc<str>>>> = HashMap::new();
    let to_nanos = |ticks: i64| -> i64 {
        (i128::from(ticks) * 1_000_000_000 / i128::from(ticks_per_second)) as i64
    };
    for (ty, range) in events {
        let Some(&(_, name)) = wanted.iter().find(|(id, _)| *id == ty) else {
            continue;
        };
        let mut r = Reader {
            buf: &chunk.data[..range.end],
            pos: range.start,
        };
        r.var()?;
        r.var()?;
        let event = chunk.decode(&mut r, ty, 0)?;
        if name == "jdk.ActiveSetting" {
            let is_event = chunk
                .field(ty, &event, "name")
                .and_then(|(c, v)| chunk.string(c, v))
                .is_some_and(|n| &*n == "event");
            if is_event {
                out.event = chunk
                    .field(ty, &event, "value")
                    .and_then(|(c, v)| chunk.string(c, v))
                    .map(|s| s.to_string());
            }
            continue;
        }
        let int = |f: &str| chunk.int(ty, &event, f).unwrap_or(0);
        let period = out.period;
        let (kind, values): (Kind, Vec<i64>) = match name {
            "jdk.ExecutionSample" if out.event.as_deref() == Some("wall") => {
                (Kind::Wall, vec![period])
            }
            "jdk.ExecutionSample" => (Kind::Cpu, vec![period]),
            "profiler.WallClockSample" => {
                let n = chunk.int(ty, &event, "samples").unwrap_or(1).max(1);
                (Kind::Wall, vec![n.saturating_mul(period)])
            }
            "jdk.ObjectAllocationInNewTLAB" => (Kind::InTlab, vec![1, int("tlabSize")]),
            "jdk.ObjectAllocationOutsideTLAB" => (Kind::OutTlab, vec![1, int("allocationSize")]),
            "jdk.ObjectAllocationSample" => (Kind::AllocSample, vec![1, int("weight")]),
            "jdk.JavaMonitorEnter" => (Kind::Lock, vec![1, to_nanos(int("duration"))]),
            "jdk.ThreadPark" => (Kind::Park, vec![1, to_nanos(int("duration"))]),
            "profiler.LiveObject" => (Kind::Live, vec![1]),
            _ => continue,
        };
        let Some((_, Value::Ref(sc, key))) = chunk.field(ty, &event, "stackTrace") else {
            continue;
        };
        let (sc, key) = (*sc, *key);
        let names = match stacks.get(&key) {
            Some(n) => n.clone(),
            None => {
                let n = Rc::new(resolve_stack(&chunk, sc, key, out.limits)?);
                stacks.insert(key, n.clone());
                n
            }
        };
        if names.is_empty() {
            continue;
        }
        let limits = out.limits;
        let builder = out
            .builders
            .entry(kind)
            .or_insert_with(|| kind.builder(period, limits));
        let ids: Vec<u64> = names.iter().map(|n| builder.location(n)).collect();
        builder.add(ids, &values)?;
    }
    Ok(size)
}

fn read_metadata(chunk: &mut Chunk<'_>, range: std::ops::Range<usize>) -> Result<()> {
    let mut r = Reader {
        buf: &chunk.data[..range.end],
        pos: range.start,
    };
    r.var()?; // size
    r.var()?; // type
    r.var()?; // start
    r.var()?; // duration
    r.var()?; // metadata ID
    let n = r.count("metadata string")?;
    let mut strings = Vec::with_capacity(n);
    for _ in 0..n {
        strings.push(match r.string()? {
            Value::Str(s) => s.to_string(),
            _ => String::new(),
        });
    }
    let mut elements = 0;
    let root = read_element(&mut r, &strings, 0, &mut elements)?;
    for m in root.children.iter().filter(|e| e.name == "metadata") {
        for c in m.children.iter().filter(|e| e.name == "class") {
            let id: u64 = c
                .attr("id")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| malformed("a class in the metadata has no id"))?;
            let name = c.attr("name").unwrap_or("").to_owned();
            let prim = match name.as_str() {
                "boolean" | "byte" => Some(Prim::Byte),
                "short" | "char" | "int" | "long" => Some(Prim::Var),
                "float" => Some(Prim::F32),
                "double" => Some(Prim::F64),
                "java.lang.String" => Some(Prim::Str),
                _ => None,
            };
            let fields = c
                .children
                .iter()
                .filter(|e| e.name == "field")
                .map(|f| Field {
                    name: f.attr("name").unwrap_or("").to_owned(),
                    class: f.attr("class").and_then(|v| v.parse().ok()).unwrap_or(0),
                    pooled: f.attr("constantPool") == Some("true"),
                    array: f.attr("dimension") == Some("1"),
                })
                .collect();
            chunk.classes.insert(id, Class { name, prim, fields });
        }
    }
    Ok(())
}

fn read_element(
    r: &mut Reader<'_>,
    strings: &[String],
    depth: usize,
    count: &mut usize,
) -> Result<Element> {
    *count += 1;
    if depth > MAX_NESTING || *count > MAX_METADATA_ELEMENTS {
        return Err(malformed("the metadata is nested too deeply or too large"));
    }
    let s = |i: u64| -> Result<String> {
        strings
            .get(i as usize)
            .cloned()
            .ok_or_else(|| malformed("the metadata refers to a missing string"))
    };
    let name = s(r.var()?)?;
    let n = r.count("metadata attribute")?;
    let mut attrs = Vec::with_capacity(n);
    for _ in 0..n {
        attrs.push((s(r.var()?)?, s(r.var()?)?));
    }
    let n = r.count("metadata element")?;
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        children.push(read_element(r, strings, depth + 1, count)?);
    }
    Ok(Element {
        name,
        attrs,
        children,
    })
}

fn read_pool(chunk: &mut Chunk<'_>, range: std::ops::Range<usize>) -> Result<()> {
    // JFR 2.1 (JDK 14+) has a checkpoint-type byte after the delta; 2.0 may not.
    let first = read_pool_with(chunk, range.clone(), true);
    match first {
        Ok(()) => Ok(()),
        Err(e) => read_pool_with(chunk, range, false).map_err(|_| e),
    }
}

fn read_pool_with(
    chunk: &mut Chunk<'_>,
    range: std::ops::Range<usize>,
    type_byte: bool,
) -> Result<()> {
    let mut r = Reader {
        buf: &chunk.data[..range.end],
        pos: range.start,
    };
    r.var()?; // size
    r.var()?; // type
    r.var()?; // start
    r.var()?; // duration
    r.var()?; // delta to the previous pool
    if type_byte {
        r.u8()?;
    }
    let pools = r.count("constant pool")?;
    let mut entries = Vec::new();
    for _ in 0..pools {
        let class = r.var()?;
        let n = r.count("constant pool entry")?;
        for _ in 0..n {
            let key = r.var()?;
            let value = chunk.decode(&mut r, class, 0)?;
            entries.push(((class, key), value));
        }
    }
    if r.pos != range.end {
        return Err(malformed(
            "a constant pool does not end where its size says",
        ));
    }
    chunk.pools.extend(entries);
    Ok(())
}

/// Returns the frame names of a stack trace, leaf first.
fn resolve_stack(chunk: &Chunk<'_>, class: u64, key: u64, limits: Limits) -> Result<Vec<Rc<str>>> {
    let Some(trace) = chunk.pools.get(&(class, key)) else {
        return Ok(Vec::new());
    };
    let Some((_, Value::Array(frames))) = chunk.field(class, trace, "frames") else {
        return Ok(Vec::new());
    };
    limits.check_depth("JFR stack trace", frames.len())?;
    let frame_class = chunk
        .classes
        .get(&class)
        .and_then(|c| c.fields.iter().find(|f| f.name == "frames"))
        .map_or(0, |f| f.class);
    let mut names = Vec::with_capacity(frames.len());
    for frame in frames {
        let name = frame_name(chunk, frame_class, frame).unwrap_or_else(|| Rc::from("unknown"));
        names.push(name);
    }
    Ok(names)
}

fn frame_name(chunk: &Chunk<'_>, frame_class: u64, frame: &Value) -> Option<Rc<str>> {
    let (mc, method) = chunk.field(frame_class, frame, "method")?;
    let method_name = chunk
        .field(mc, method, "name")
        .and_then(|(c, v)| chunk.string(c, v))
        .unwrap_or_else(|| Rc::from("unknown"));
    let class_name = chunk
        .field(mc, method, "type")
        .and_then(|(c, v)| chunk.field(c, v, "name"))
        .and_then(|(c, v)| chunk.string(c, v));
    Some(match class_name {
        Some(c) => Rc::from(format!("{}.{method_name}", c.replace('/', "."))),
        None => method_name,
    })
}

#[cfg(test)]
mod tests;
