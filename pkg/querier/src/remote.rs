//! Reading the heads of ingesters in other processes, counting each
//! replicated profile once.
//!
//! Every ingester that holds a replica of a profile reports it under the same
//! ID. For time series and labels, the querier fetches each ingester's
//! profile list (IDs, series, times, totals) and lets the query's
//! de-duplicating filter drop repeated IDs. For stack traces it asks every
//! ingester for its list first, gives each ID to one ingester that has it,
//! and asks each for the merge of exactly its share, as pprof. This is how
//! Pyroscope's ingesters and queriers split the work too: only IDs cross the
//! network twice, samples once.

use std::{
    collections::{BTreeSet, HashMap},
    fmt::Debug,
    sync::Arc,
};

use ember_block::{MemBlock, ProfileVisitor, SeriesEntry};
use ember_model::{
    Labels, ProfileId, ProfileType,
    ingest::{self, Annotation, SeriesSpec},
    labels::{Label, PROFILE_TYPE},
    wire,
};
use ember_proto::{
    clients::{IngesterAddr, IngesterClients},
    error::Code,
    ingester::v1::{MergeProfilesRequest, SelectProfilesResponse, SelectRequest},
    types::v1::{Location, StackTraceSelector},
};
use ember_query::{Need, Plan, RecentData, RecentSources, SharedSource, SourceView};
use ember_symdb::Symbols;
use futures::future::join_all;
use tonic::Status;
use tracing::warn;
use ulid::Ulid;

use crate::QuerierMetrics;

/// Lists the ingesters a querier reads from.
pub trait IngesterSet: Send + Sync + Debug {
    /// Returns every ingester that may hold recent data, whatever its state.
    fn ingesters(&self) -> Vec<IngesterAddr>;
}

/// The ingesters of a cluster, as seen by a querier.
#[derive(Debug, Clone)]
pub struct RemoteIngesters {
    pub set: Arc<dyn IngesterSet>,
    pub clients: Arc<IngesterClients>,
    /// Writes reach a quorum of this many replicas, so a query may lose
    /// `replication_factor - quorum` ingesters and still see everything.
    pub replication_factor: usize,
    /// Whether writes are acknowledged by `replication_factor - quorum + 1`
    /// zones, so that a query may also lose that many whole zones.
    pub zone_awareness: bool,
    /// Counts the calls to ingesters and their failures.
    pub metrics: QuerierMetrics,
}

/// A source made of what an ingester answered: series, and per-profile
/// points without samples.
#[derive(Debug, Default)]
pub(crate) struct AnsweredView {
    series: Vec<SeriesEntry>,
    rows: Vec<(ProfileId, u32, i64, i64)>,
    time_range: Option<(i64, i64)>,
    annotations: HashMap<ProfileId, Vec<Annotation>>,
    /// With [`Need::SpanPoints`]: each profile's `(span, total)` pairs.
    span_totals: HashMap<ProfileId, Vec<(u64, i64)>>,
}

impl SourceView for AnsweredView {
    fn id(&self) -> Ulid {
        Ulid::nil()
    }

    fn series(&self) -> &[SeriesEntry] {
        &self.series
    }

    fn time_range(&self) -> Option<(i64, i64)> {
        self.time_range
    }

    fn scan(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        _with_samples: bool,
        visitor: &mut dyn ProfileVisitor,
    ) -> ember_query::Result<()> {
        for &(id, series, time, total) in &self.rows {
            if selected[series as usize] && time >= start && time <= end {
                visitor.visit(id, series, time, total, None);
            }
        }
        Ok(())
    }

    fn symbols(&self, _partition: u32) -> Option<&Symbols> {
        None
    }

    fn presampled(&self) -> bool {
        // The ingester applied the call site and spans of the request.
        true
    }

    fn annotations(&self, id: ProfileId) -> &[Annotation] {
        self.annotations.get(&id).map_or(&[], |a| a)
    }

    fn span_totals(&self, id: ProfileId) -> &[(u64, i64)] {
        self.span_totals.get(&id).map_or(&[], |s| s)
    }
}

impl SharedSource for AnsweredView {
    fn with_view(
        &self,
        f: &mut dyn FnMut(&dyn SourceView) -> ember_query::Result<()>,
    ) -> ember_query::Result<()> {
        f(self)
    }
}

fn select_request(plan: &Plan) -> SelectRequest {
    let call_site = &plan.samples.call_site;
    SelectRequest {
        profile_type: plan.profile_type.clone().unwrap_or_default(),
        selectors: plan.selectors.iter().map(|s| s.to_string()).collect(),
        start_nanos: plan.start,
        end_nanos: plan.end,
        span_ids: plan
            .samples
            .spans
            .as_ref()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default(),
        stack_trace_selector: (!call_site.is_empty()).then(|| StackTraceSelector {
            call_site: call_site
                .iter()
                .map(|name| Location { name: name.clone() })
                .collect(),
            go_pgo: None,
        }),
        span_totals: false,
    }
}

fn unavailable(message: String) -> Status {
    Code::Unavailable.status(message)
}

impl RemoteIngesters {
    /// Calls `call` on every ingester; tolerates as many failures as
    /// replication allows and returns the answers with their addresses.
    ///
    /// A write is acknowledged by a majority of its replicas, so a profile
    /// is still seen when at most `rf - majority` ingesters fail. With zone
    /// awareness its acknowledgements span `rf - majority + 1` zones, so
    /// failures confined to `rf - majority` zones hide nothing either, however
    /// many ingesters those zones hold (dskit's `MaxUnavailableZones`).
    async fn each<T, F, Fut>(&self, what: &str, call: F) -> Result<Vec<(String, T)>, Status>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let ingesters = self.set.ingesters();
        let results = join_all(ingesters.iter().map(|i| call(i.addr.clone()))).await;
        self.metrics.ingester_requests.inc_by(results.len() as u64);
        let rf = self.replication_factor.max(1);
        let tolerated = rf - (rf / 2 + 1);
        let mut answers = Vec::new();
        let mut failures = Vec::new();
        let mut failed_zones = BTreeSet::new();
        for (IngesterAddr { addr, zone }, result) in ingesters.into_iter().zip(results) {
            match result {
                Ok(a) => answers.push((addr, a)),
                Err(e) => {
                    self.metrics.ingester_failures.inc();
                    warn!(ingester = %addr, zone, error = %e, "{what} failed");
                    failures.push(format!("{addr}: {}", e.message()));
                    failed_zones.insert(zone);
                }
            }
        }
        let zones_down = self.zone_awareness && failed_zones.len() <= tolerated;
        if failures.len() > tolerated && !zones_down {
            let zones = if self.zone_awareness {
                format!(" in {} zones", failed_zones.len())
            } else {
                String::new()
            };
            return Err(unavailable(format!(
                "{what}: {} ingesters{zones} did not answer, more than the {tolerated} that replication factor {rf} tolerates: {}",
                failures.len(),
                failures.join("; ")
            )));
        }
        Ok(answers)
    }

    /// Fetches what `need` asks for from every ingester.
    async fn answers(
        &self,
        tenant: &str,
        plan: &Plan,
        need: Need,
    ) -> Result<RecentSources, Status> {
        let mut request = select_request(plan);
        request.span_totals = need == Need::SpanPoints;
        let mut out = RecentSources::default();
        if need == Need::Labels {
            let answers = self
                .each("listing series", |addr| {
                    let request = request.clone();
                    async move {
                        let mut client = self.clients.get(&addr)?;
                        Ok(client
                            .series(self.clients.request(tenant, request)?)
                            .await?
                            .into_inner())
                    }
                })
                .await?;
            for (_, a) in answers {
                out.views.push(Arc::new(AnsweredView {
                    series: a
                        .series
                        .iter()
                        .map(|l| SeriesEntry {
                            labels: Labels::from_proto(&l.labels),
                            partition: 0,
                        })
                        .collect(),
                    rows: Vec::new(),
                    time_range: Some((plan.start, plan.end)),
                    annotations: HashMap::new(),
                    span_totals: HashMap::new(),
                }));
            }
            return Ok(out);
        }
        let lists = self
            .each("listing profiles", |addr| {
                let request = request.clone();
                async move {
                    let mut client = self.clients.get(&addr)?;
                    Ok(client
                        .select_profiles(self.clients.request(tenant, request)?)
                        .await?
                        .into_inner())
                }
            })
            .await?;
        if matches!(need, Need::Points | Need::SpanPoints) {
            for (_, list) in lists {
                out.views.push(Arc::new(points_view(list)?));
            }
            return Ok(out);
        }
        // Give each profile to the first ingester that listed it.
        let mut shares: Vec<(String, Vec<ProfileId>)> = Vec::new();
        for (addr, list) in lists {
            let share: Vec<ProfileId> = wire::decode_ids(&list.ids)?
                .into_iter()
                .filter(|id| plan.ids.as_ref().is_none_or(|ids| ids.contains(id)))
                .filter(|&id| id == 0 || out.counted.insert(id))
                .collect();
            if !share.is_empty() {
                shares.push((addr, share));
            }
        }
        let profile_type: ProfileType = plan
            .profile_type
            .as_deref()
            .unwrap_or_default()
            .parse::<ProfileType>()?;
        let merged = join_all(shares.into_iter().map(|(addr, ids)| {
            let request = MergeProfilesRequest {
                select: Some(request.clone()),
                ids: wire::encode_ids(ids),
            };
            async move {
                let mut client = self.clients.get(&addr)?;
                let profile = client
                    .merge_profiles(self.clients.request(tenant, request)?)
                    .await
                    .map_err(|e| {
                        unavailable(format!(
                            "merging profiles on ingester {addr}: {}",
                            e.message()
                        ))
                    })?
                    .into_inner();
                Ok::<_, Status>(profile)
            }
        }))
        .await;
        for profile in merged {
            let profile = profile?;
            let mut block = MemBlock::default();
            let series = SeriesSpec {
                labels: Labels::new(vec![Label::new(PROFILE_TYPE, profile_type.id())]),
                profile_type: profile_type.clone(),
                sample_type: 0,
                samples: None,
            };
            block.append(&profile.into(), &[series], plan.start, 0);
            out.merged.push(block);
        }
        Ok(out)
    }
}

/// The heads of the cluster's ingesters as a querier's recent data.
#[async_trait::async_trait]
impl RecentData for RemoteIngesters {
    async fn sources(
        &self,
        tenant: &str,
        plan: &Plan,
        need: Need,
    ) -> Result<RecentSources, Status> {
        self.answers(tenant, plan, need).await
    }
}

/// Returns the view of one ingester's profile list.
fn points_view(list: SelectProfilesResponse) -> Result<AnsweredView, Status> {
    let ids = wire::decode_ids(&list.ids)?;
    let n = ids.len();
    if list.series_index.len() != n || list.time_nanos.len() != n || list.totals.len() != n {
        return Err(Code::Internal
            .status("an ingester answered a profile list with columns of different lengths"));
    }
    let series: Vec<SeriesEntry> = list
        .series
        .iter()
        .map(|l| SeriesEntry {
            labels: Labels::from_proto(&l.labels),
            partition: 0,
        })
        .collect();
    if list
        .series_index
        .iter()
        .any(|&i| i as usize >= series.len())
    {
        return Err(Code::Internal.status("an ingester answered a profile of an unknown series"));
    }
    let mut annotations = HashMap::new();
    for a in list.annotated {
        let Some(&id) = ids.get(a.index as usize) else {
            return Err(Code::Internal
                .status("an ingester answered annotations of a profile it did not list"));
        };
        let mut checked = ingest::annotations(&a.annotations).map_err(Status::from)?;
        checked.shrink_to_fit();
        annotations.insert(id, checked);
    }
    let spans = list.span_profiles.len();
    if list.span_ids.len() != spans || list.span_values.len() != spans {
        return Err(Code::Internal
            .status("an ingester answered span totals with columns of different lengths"));
    }
    let mut span_totals: HashMap<ProfileId, Vec<(u64, i64)>> = HashMap::new();
    for j in 0..spans {
        let Some(&id) = ids.get(list.span_profiles[j] as usize) else {
            return Err(Code::Internal
                .status("an ingester answered span totals of a profile it did not list"));
        };
        span_totals
            .entry(id)
            .or_default()
            .push((list.span_ids[j], list.span_values[j]));
    }
    let mut time_range: Option<(i64, i64)> = None;
    let mut rows = Vec::with_capacity(n);
    for (i, id) in ids.into_iter().enumerate() {
        let t = list.time_nanos[i];
        time_range = Some(time_range.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
        rows.push((id, list.series_index[i], t, list.totals[i]));
    }
    Ok(AnsweredView {
        series,
        rows,
        time_range,
        annotations,
        span_totals,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug)]
    struct Fixed(Vec<IngesterAddr>);

    impl IngesterSet for Fixed {
        fn ingesters(&self) -> Vec<IngesterAddr> {
            self.0.clone()
        }
    }

    /// Three zones of two ingesters, named `<zone><n>`.
    fn remote(zone_awareness: bool) -> RemoteIngesters {
        let ingesters = ["a1", "a2", "b1", "b2", "c1", "c2"]
            .iter()
            .map(|name| IngesterAddr {
                addr: (*name).to_owned(),
                zone: name[..1].to_owned(),
            })
            .collect();
        RemoteIngesters {
            set: Arc::new(Fixed(ingesters)),
            clients: Arc::new(IngesterClients::new(Duration::from_secs(1))),
            replication_factor: 3,
            zone_awareness,
            metrics: QuerierMetrics::detached(),
        }
    }

    /// Calls every ingester of `remote`, `down` failing; returns who answered.
    async fn answered(remote: &RemoteIngesters, down: &[&str]) -> Result<Vec<String>, String> {
        remote
            .each("asking", |addr| async move {
                if down.contains(&addr.as_str()) {
                    Err(unavailable("connection refused".into()))
                } else {
                    Ok(())
                }
            })
            .await
            .map(|answers| answers.into_iter().map(|(addr, ())| addr).collect())
            .map_err(|e| e.message().to_owned())
    }

    #[tokio::test]
    async fn one_ingester_down_is_tolerated_with_or_without_zones() {
        for zones in [false, true] {
            let answers = answered(&remote(zones), &["b2"]).await.unwrap();
            assert_eq!(answers, ["a1", "a2", "b1", "c1", "c2"]);
        }
    }

    #[tokio::test]
    async fn calls_to_ingesters_and_their_failures_are_counted() {
        let remote = remote(false);
        answered(&remote, &["b2"]).await.unwrap();
        assert_eq!(remote.metrics.ingester_requests.get(), 6);
        assert_eq!(remote.metrics.ingester_failures.get(), 1);
    }

    #[tokio::test]
    async fn a_whole_zone_down_is_tolerated_only_with_zone_awareness() {
        let zone_down = ["c1", "c2"];
        let answers = answered(&remote(true), &zone_down).await.unwrap();
        assert_eq!(answers, ["a1", "a2", "b1", "b2"]);
        // Without zones, two replicas of one profile may be c1 and c2.
        let err = answered(&remote(false), &zone_down).await.unwrap_err();
        assert!(
            err.contains(
                "2 ingesters did not answer, more than the 1 that replication factor 3 tolerates"
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn ingesters_down_in_two_zones_are_a_503() {
        // A profile acknowledged by a1 and b1 alone is on neither: too many.
        let err = answered(&remote(true), &["a1", "b1"]).await.unwrap_err();
        assert!(
            err.contains("2 ingesters in 2 zones did not answer"),
            "{err}"
        );
        assert!(
            err.contains("a1: connection refused; b1: connection refused"),
            "{err}"
        );
    }
}
