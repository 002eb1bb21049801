#!/usr/bin/env python3
"""Generates Ember's Grafana dashboards (operations/dashboards/*.json).

One description of every panel, so the six dashboards share their variables,
selectors and layout. The JSON files are committed; a test
(tests/tests/e2e/prometheus.rs) checks they equal this script's output. Helm
cannot read outside its chart, so the script also writes the chart's copies:
the dashboards in helm/ember/dashboards/ and the alerting rules
(operations/alerts/ember.rules.yaml) in helm/ember/alerts/.

    python3 operations/dashboards/build.py           # rewrites both copies
    python3 operations/dashboards/build.py --check   # exit 1 when a file differs

Every query uses only the metric names of the metrics contract (the names each
component registers, see docs/operations.md) and the variables below; a real
Prometheus scraping a cluster under load must return at least one series for each.
Standard library only.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUTPUTS = (HERE, ROOT / "helm" / "ember" / "dashboards")
RULES = ROOT / "operations" / "alerts" / "ember.rules.yaml"
CHART_RULES = ROOT / "helm" / "ember" / "alerts" / "ember.rules.yaml"

# Every query selects the chosen namespaces and jobs; Prometheus (or the
# Prometheus Operator) adds both labels at scrape time.
S = 'namespace=~"$namespace", job=~"$job"'
RATE = "[$__rate_interval]"
DS = {"type": "prometheus", "uid": "${datasource}"}

WRITE_ROUTES = 'route=~"/push.v1.PusherService/Push|/ingest|/pyroscope/ingest"'
READ_ROUTES = 'route=~"/querier.v1.QuerierService/.*|/render.*|/pyroscope/render.*"'


def rate(metric, by=None, extra=""):
    """`sum by (by) (rate(metric{S, extra}[$__rate_interval]))`."""
    sel = S + (", " + extra if extra else "")
    inner = f"rate({metric}{{{sel}}}{RATE})"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q, histogram, by="", extra=""):
    """The q-quantile of a histogram over the rate interval, per `by`."""
    sel = S + (", " + extra if extra else "")
    keys = "le" + (", " + by if by else "")
    return f"histogram_quantile({q}, sum by ({keys}) (rate({histogram}_bucket{{{sel}}}{RATE})))"


def or_zero(failures, of):
    """`failures`, or 0 for each series of `of` that has none: a counter whose
    labels are not known ahead (an ingester's address, a scrape job) has no
    series until its first failure, and "No data" would read as a broken panel."""
    return f"{failures} or {of} * 0"


def gauge(metric, agg="sum", by="instance", extra=""):
    sel = S + (", " + extra if extra else "")
    return f"{agg} by ({by}) ({metric}{{{sel}}})"


def target(expr, legend):
    return {"expr": expr, "legendFormat": legend}


def panel(title, unit, *targets, kind="timeseries", description="", stack=False):
    return {
        "title": title,
        "unit": unit,
        "targets": list(targets),
        "kind": kind,
        "description": description,
        "stack": stack,
    }


def row(title, *panels):
    return (title, panels)


# --- the dashboards ---------------------------------------------------------------

OVERVIEW = [
    row(
        "Health",
        panel("Targets up", "short", target(f"sum by (job) (up{{{S}}})", "{{job}}"), kind="stat",
              description="Scraped processes answering /metrics, by job; see EmberTargetDown."),
        panel("Versions", "short", target(gauge("ember_build_info", "count", "version, target"),
                                          "{{target}} {{version}}"), kind="stat",
              description="Processes per Ember version and -target."),
        panel("Ingesters by ring state", "short",
              target(gauge("ember_ingester_ring_state", "sum", "state"), "{{state}}"), kind="stat",
              description="Each ingester reports 1 for its own state; all should be ACTIVE."),
        panel("Time since last compaction", "s",
              target(f"time() - max(ember_compactor_last_successful_run_timestamp_seconds{{{S}}})",
                     "since last success"),
              kind="stat", description="See EmberCompactorNotRunning (3 h)."),
    ),
    row(
        "Writes",
        panel("Profiles received /s", "short",
              target(rate("ember_distributor_received_profiles_total"), "received"),
              target(or_zero(rate("ember_distributor_rejected_profiles_total"),
                             rate("ember_distributor_received_profiles_total")), "rejected")),
        panel("Rejections /s by reason", "short",
              target(rate("ember_distributor_rejected_profiles_total", "reason"), "{{reason}}"), stack=True),
        panel("Push latency", "s",
              target(quantile(0.99, "ember_http_request_duration_seconds", extra=WRITE_ROUTES), "p99"),
              target(quantile(0.5, "ember_http_request_duration_seconds", extra=WRITE_ROUTES), "p50")),
        panel("Flushes /s", "short",
              target(rate("ember_ingester_flushes_total"), "flushes"),
              target(rate("ember_ingester_flush_failures_total"), "failures")),
    ),
    row(
        "Reads",
        panel("Queries /s by status", "short",
              target(rate("ember_querier_request_duration_seconds_count", "status"), "{{status}}"), stack=True),
        panel("Query latency", "s",
              target(quantile(0.99, "ember_querier_request_duration_seconds"), "p99"),
              target(quantile(0.5, "ember_querier_request_duration_seconds"), "p50")),
        panel("Object store failures /s", "short",
              target(rate("ember_objstore_operation_failures_total", "operation"), "{{operation}}")),
        panel("Head series", "short", target(f"sum(ember_ingester_head_series{{{S}}})", "series")),
    ),
]

WRITES = [
    row(
        "Distributor",
        panel("Profiles /s by type", "short",
              target(rate("ember_distributor_received_profiles_total", "tenant, type", 'tenant=~"$tenant"'),
                     "{{tenant}} {{type}}"), stack=True),
        panel("Samples /s by type", "short",
              target(rate("ember_distributor_received_samples_total", "tenant, type", 'tenant=~"$tenant"'),
                     "{{tenant}} {{type}}"), stack=True),
        panel("Bytes received /s", "Bps",
              target(rate("ember_distributor_received_compressed_bytes_total", "tenant", 'tenant=~"$tenant"'),
                     "{{tenant}} as pushed"),
              target(rate("ember_distributor_received_decompressed_bytes_total", "tenant", 'tenant=~"$tenant"'),
                     "{{tenant}} decompressed")),
        panel("Rejected /s by reason and status", "short",
              target(rate("ember_distributor_rejected_profiles_total", "tenant, reason, status",
                          'tenant=~"$tenant"'), "{{tenant}} {{reason}} ({{status}})"), stack=True,
              description="reason is the limit's config name, invalid_profile or too_few_ingesters."),
        panel("Push requests /s by status", "short",
              target(rate("ember_http_requests_total", "route, status", WRITE_ROUTES), "{{route}} {{status}}")),
        panel("Push latency p99 by route", "s",
              target(quantile(0.99, "ember_http_request_duration_seconds", "route", WRITE_ROUTES), "{{route}}")),
    ),
    row(
        "Replication",
        panel("Replica write latency p99 by ingester", "s",
              target(quantile(0.99, "ember_distributor_replication_duration_seconds", "ingester"), "{{ingester}}")),
        panel("Replica write failures /s by ingester", "short",
              target(or_zero(rate("ember_distributor_replication_failures_total", "ingester"),
                             rate("ember_distributor_replication_duration_seconds_count", "ingester")),
                     "{{ingester}}"),
              description="See EmberReplicationFailures."),
    ),
    row(
        "Ingester heads",
        panel("Profiles ingested /s", "short",
              target(rate("ember_ingester_ingested_profiles_total", "instance"), "{{instance}}")),
        panel("Head series", "short", target(gauge("ember_ingester_head_series"), "{{instance}}")),
        panel("Head profiles and samples", "short",
              target(gauge("ember_ingester_head_profiles"), "{{instance}} profiles"),
              target(gauge("ember_ingester_head_samples"), "{{instance}} samples")),
        panel("Head memory", "bytes", target(gauge("ember_ingester_head_bytes"), "{{instance}}")),
    ),
    row(
        "Flushes",
        panel("Head cuts and flushes /s", "short",
              target(rate("ember_ingester_head_cuts_total", "instance"), "{{instance}} cuts"),
              target(rate("ember_ingester_flushes_total", "instance"), "{{instance}} flushes")),
        panel("Flush failures /s", "short",
              target(rate("ember_ingester_flush_failures_total", "instance"), "{{instance}}"),
              description="See EmberFlushFailing."),
        panel("Flush duration p99", "s",
              target(quantile(0.99, "ember_ingester_flush_duration_seconds", "instance"), "{{instance}}")),
        panel("Flushed bytes /s and blocks uploaded /s", "short",
              target(rate("ember_ingester_flushed_bytes_total", "instance"), "{{instance}} bytes"),
              target(rate("ember_ingester_blocks_uploaded_total", "instance"), "{{instance}} blocks")),
    ),
    row(
        "Write-ahead log",
        panel("Append and fsync latency p99", "s",
              target(quantile(0.99, "ember_ingester_wal_append_duration_seconds", "instance"),
                     "{{instance}} append"),
              target(quantile(0.99, "ember_ingester_wal_fsync_duration_seconds", "instance"),
                     "{{instance}} fsync")),
        panel("Written /s", "Bps",
              target(rate("ember_ingester_wal_written_bytes_total", "instance"), "{{instance}}")),
        panel("Segments on disk", "short", target(gauge("ember_ingester_wal_segments"), "{{instance}}")),
        panel("Append failures /s", "short",
              target(rate("ember_ingester_wal_append_failures_total", "instance"), "{{instance}}"),
              description="See EmberWALAppendFailing (usually a full disk)."),
        panel("Records replayed and corrupt records skipped (since start)", "short",
              target(gauge("ember_ingester_wal_replayed_records_total", "max"), "{{instance}} replayed"),
              target(gauge("ember_ingester_wal_corrupt_records_total", "max"), "{{instance}} corrupt"),
              description="See EmberWALCorruptRecords."),
    ),
    row(
        # The agent's `job` label is its scrape job; Prometheus keeps it as
        # `exported_job` beside the job that scraped the agent.
        "Agent",
        panel("Targets by scrape job", "short",
              target(gauge("ember_agent_targets", "sum", "exported_job"), "{{exported_job}}")),
        panel("Scrapes /s", "short",
              target(rate("ember_agent_scrapes_total", "exported_job"), "{{exported_job}}"),
              target(or_zero(rate("ember_agent_scrape_failures_total", "exported_job"),
                             rate("ember_agent_scrapes_total", "exported_job")), "{{exported_job}} failed")),
        panel("Scrape latency p99", "s",
              target(quantile(0.99, "ember_agent_scrape_duration_seconds", "exported_job"), "{{exported_job}}")),
        panel("Pushed and dropped /s", "short",
              target(rate("ember_agent_pushed_profiles_total"), "pushed"),
              target(rate("ember_agent_push_failures_total"), "push failures"),
              target(rate("ember_agent_dropped_profiles_total", "reason"), "dropped {{reason}}")),
        panel("Buffered profiles", "short", target(gauge("ember_agent_buffered_profiles"), "{{instance}}")),
    ),
]

READS = [
    row(
        "Querier",
        panel("Requests /s by RPC and status", "short",
              target(rate("ember_querier_request_duration_seconds_count", "rpc, status"), "{{rpc}} {{status}}"),
              stack=True),
        panel("Latency p99 by RPC", "s",
              target(quantile(0.99, "ember_querier_request_duration_seconds", "rpc"), "{{rpc}}"),
              description="See EmberQueriesSlow."),
        panel("Latency p50 by RPC", "s",
              target(quantile(0.5, "ember_querier_request_duration_seconds", "rpc"), "{{rpc}}")),
        panel("HTTP read requests /s by route", "short",
              target(rate("ember_http_requests_total", "route, status", READ_ROUTES), "{{route}} {{status}}")),
    ),
    row(
        "Read per query",
        panel("Profiles read per query", "short",
              target(quantile(0.99, "ember_querier_query_profiles"), "p99"),
              target(quantile(0.5, "ember_querier_query_profiles"), "p50")),
        panel("Samples read per query", "short",
              target(quantile(0.99, "ember_querier_query_samples"), "p99"),
              target(quantile(0.5, "ember_querier_query_samples"), "p50")),
        panel("Object-store bytes read per query", "bytes",
              target(quantile(0.99, "ember_querier_query_read_bytes"), "p99"),
              target(quantile(0.5, "ember_querier_query_read_bytes"), "p50")),
        panel("Blocks opened /s", "short",
              target(rate("ember_querier_blocks_opened_total", "instance"), "{{instance}}")),
    ),
    row(
        "Ingesters asked",
        panel("Ingester requests /s", "short",
              target(rate("ember_querier_ingester_requests_total", "instance"), "{{instance}} requests"),
              target(rate("ember_querier_ingester_failures_total", "instance"), "{{instance}} failures")),
    ),
]

OBJECT_STORE = [
    row(
        "Operations",
        panel("Operations /s", "short",
              target(rate("ember_objstore_operations_total", "operation"), "{{operation}}"), stack=True),
        panel("Failures /s", "short",
              target(rate("ember_objstore_operation_failures_total", "operation"), "{{operation}}"),
              description="See EmberObjectStoreErrors."),
        panel("Latency p99", "s",
              target(quantile(0.99, "ember_objstore_operation_duration_seconds", "operation"), "{{operation}}")),
        panel("Latency p50", "s",
              target(quantile(0.5, "ember_objstore_operation_duration_seconds", "operation"), "{{operation}}")),
    ),
    row(
        "By process",
        panel("Operations /s by job", "short",
              target(rate("ember_objstore_operations_total", "job"), "{{job}}"), stack=True),
        panel("Bytes /s", "Bps",
              target(rate("ember_objstore_read_bytes_total", "job"), "{{job}} read"),
              target(rate("ember_objstore_written_bytes_total", "job"), "{{job}} written")),
    ),
]

COMPACTOR = [
    row(
        "Runs",
        panel("Time since last successful run", "s",
              target(f"time() - max by (instance) (ember_compactor_last_successful_run_timestamp_seconds{{{S}}})",
                     "{{instance}}"),
              description="See EmberCompactorNotRunning."),
        panel("Runs /s", "short",
              target(rate("ember_compactor_runs_total"), "runs"),
              target(rate("ember_compactor_run_failures_total"), "failures")),
        panel("Run duration", "s",
              target(quantile(0.99, "ember_compactor_run_duration_seconds"), "p99"),
              target(quantile(0.5, "ember_compactor_run_duration_seconds"), "p50")),
    ),
    row(
        "Blocks",
        panel("Blocks /s", "short",
              target(rate("ember_compactor_blocks_compacted_total"), "compacted (in)"),
              target(rate("ember_compactor_blocks_written_total"), "written (out)")),
        panel("Written /s", "Bps", target(rate("ember_compactor_written_bytes_total"), "written")),
        panel("Blocks deleted /s by reason", "short",
              target(rate("ember_compactor_blocks_deleted_total", "reason"), "{{reason}}"), stack=True),
    ),
]

RESOURCES = [
    row(
        "Process",
        panel("CPU", "percentunit",
              target(rate("process_cpu_seconds_total", "job, instance"), "{{job}} {{instance}}")),
        panel("Resident memory", "bytes",
              target(gauge("process_resident_memory_bytes", "sum", "job, instance"), "{{job}} {{instance}}")),
        panel("Open file descriptors", "short",
              target(gauge("process_open_fds", "sum", "job, instance"), "{{job}} {{instance}}")),
        panel("Uptime", "s",
              target(f"time() - max by (job, instance) (process_start_time_seconds{{{S}}})",
                     "{{job}} {{instance}}")),
    ),
    row(
        "Ring",
        panel("Members by state", "short",
              target(gauge("ember_ring_members", "max", "state"), "{{state}}")),
        panel("Oldest heartbeat age", "s",
              target(gauge("ember_ring_oldest_heartbeat_age_seconds", "max"), "{{instance}}")),
        panel("Gossip messages /s", "short",
              target(rate("ember_ring_gossip_messages_total", "direction"), "{{direction}}")),
    ),
    row(
        "HTTP",
        panel("Requests /s by status", "short",
              target(rate("ember_http_requests_total", "job, status"), "{{job}} {{status}}"), stack=True),
    ),
]

DASHBOARDS = {
    "ember-overview": ("Ember / Overview", "Is Ember healthy: targets, writes, reads, storage.", OVERVIEW),
    "ember-writes": ("Ember / Writes", "Distributor, replication, ingester heads, flushes, WAL, agent.", WRITES),
    "ember-reads": ("Ember / Reads", "Querier latency and what each query reads.", READS),
    "ember-object-store": ("Ember / Object store", "Object-store operations, errors and bytes.", OBJECT_STORE),
    "ember-compactor": ("Ember / Compactor", "Compaction runs, blocks in and out, deletions.", COMPACTOR),
    "ember-resources": ("Ember / Resources", "CPU, memory, file descriptors, ring and gossip.", RESOURCES),
}

# --- rendering --------------------------------------------------------------------


def variable(name, label, query, include_all=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "includeAll": include_all,
        "allValue": ".*",
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
        "regex": "",
        "options": [],
    }


def templating(with_tenant):
    variables = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
        },
        variable("namespace", "Namespace", "label_values(ember_build_info, namespace)"),
        variable("job", "Job", 'label_values(ember_build_info{namespace=~"$namespace"}, job)'),
    ]
    if with_tenant:
        variables.append(variable(
            "tenant", "Tenant",
            f"label_values(ember_distributor_received_profiles_total{{{S}}}, tenant)",
        ))
    return {"list": variables}


def render_panel(p, pid, x, y, w, h):
    refs = "ABCDEFGH"
    out = {
        "id": pid,
        "type": p["kind"],
        "title": p["title"],
        "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "targets": [
            {"datasource": DS, "expr": t["expr"], "legendFormat": t["legendFormat"], "refId": refs[i],
             "range": p["kind"] == "timeseries", "instant": p["kind"] == "stat"}
            for i, t in enumerate(p["targets"])
        ],
        "fieldConfig": {"defaults": {"unit": p["unit"]}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }
    if p["description"]:
        out["description"] = p["description"]
    if p["kind"] == "timeseries":
        out["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "line", "fillOpacity": 10, "lineWidth": 1, "showPoints": "never",
            "stacking": {"group": "A", "mode": "normal" if p["stack"] else "none"},
        }
    else:
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "colorMode": "value", "graphMode": "none", "textMode": "auto"}
    return out


def dashboard(uid, title, description, rows):
    panels, pid, y = [], 1, 0
    for row_title, row_panels in rows:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        per_line = min(len(row_panels), 4)
        w = 24 // per_line
        h = 4 if all(p["kind"] == "stat" for p in row_panels) else 8
        for i, p in enumerate(row_panels):
            x = (i % per_line) * w
            if i and i % per_line == 0:
                y += h
            panels.append(render_panel(p, pid, x, y, w, h))
            pid += 1
        y += h
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["ember"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "",
        "timepicker": {},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["ember"], "title": "Ember", "asDropdown": True,
                   "includeVars": True, "keepTime": True}],
        "templating": templating(uid == "ember-writes"),
        "panels": panels,
    }


def rendered():
    """Returns {file name: JSON text} for every dashboard."""
    return {
        f"{uid}.json": json.dumps(dashboard(uid, *spec), indent=2, sort_keys=True) + "\n"
        for uid, spec in DASHBOARDS.items()
    }


def main(argv):
    check = "--check" in argv
    stale = []

    def want(path, text):
        if path.exists() and path.read_text() == text:
            return
        stale.append(path)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    wanted = rendered()
    for out in OUTPUTS:
        for existing in sorted(out.glob("*.json")):
            if existing.name not in wanted:
                stale.append(existing)
                if not check:
                    existing.unlink()
        for name, text in wanted.items():
            want(out / name, text)
    want(CHART_RULES, RULES.read_text())
    if check and stale:
        for path in stale:
            print(f"{path.relative_to(ROOT)} differs from build.py's output", file=sys.stderr)
        print("run: python3 operations/dashboards/build.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
