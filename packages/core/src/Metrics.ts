/**
 * Foundation's metrics, and the Prometheus text format of every Effect metric of the process.
 *
 * They are plain `effect/Metric` metrics in the process-wide registry, beside the engine's own
 * (`@effect/cluster`'s `ClusterMetrics`: `effect_cluster_entities`, `_singletons`, `_runners`,
 * `_runners_healthy`, `_shards`). Every Foundation metric carries a `node` tag, because one process
 * can host several nodes (the demo, TestCluster); the engine's gauges carry none, so in such a
 * process they hold the value the last node wrote.
 *
 * Who writes what:
 * - `track(rpc)` around a call: `foundation_rpc_calls_total`, `foundation_rpc_errors_total` and the
 *   `foundation_rpc_latency_ms` histogram, tagged `rpc`. `Health` tracks its own probes (`Node.Ping`
 *   per lane, `Health.Vitals`); wrap your own node RPC calls the same way to see them in the report;
 * - `Health` samples the others from their sources at each check and before each scrape: the
 *   failure detector's last heartbeat round trip per peer (`Node.members`), the member count per
 *   status, and the counters of `Channels.stats`; and it records its own checks.
 *
 * Drop down to `Metric.snapshot` (what `prometheus` renders) or to an OpenTelemetry exporter
 * (`@effect/opentelemetry`) to ship them elsewhere.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"
import { Node } from "./Node.js"

/** Calls made through `track`, tagged `node` and `rpc`. */
export const rpcCalls = Metric.counter("foundation_rpc_calls_total", {
  description: "Node RPC calls made (Metrics.track)",
  incremental: true
})

/** Calls through `track` that failed, died or were interrupted (a timeout), tagged `node` and `rpc`. */
export const rpcErrors = Metric.counter("foundation_rpc_errors_total", {
  description: "Node RPC calls that failed or timed out (Metrics.track)",
  incremental: true
})

/** Latency of calls through `track`, successful or not, in milliseconds, tagged `node` and `rpc`. */
export const rpcLatency = Metric.histogram(
  "foundation_rpc_latency_ms",
  MetricBoundaries.exponential({ start: 0.25, factor: 2, count: 17 }),
  "Latency of node RPC calls in milliseconds (Metrics.track)"
)

/** The failure detector's last heartbeat round trip to a peer, tagged `node` and `peer`. */
export const heartbeatRtt = Metric.gauge("foundation_node_heartbeat_rtt_ms", {
  description: "Round trip of the last answered heartbeat (NodeRpcs.Ping) to a peer, in milliseconds"
})

/** Members as a node sees them, tagged `node` and `status` (`up`, `suspect`, `down`). */
export const members = Metric.gauge("foundation_cluster_members", {
  description: "Members of the cluster as this node sees them, by status"
})

/**
 * Channel messages, tagged `node`, `channel` and `direction`: `published` (broadcast here), `sent`
 * (copies queued to other nodes), `received` (from other nodes), `delivered` (to subscribers here).
 */
export const channelMessages = Metric.counter("foundation_channel_messages_total", {
  description: "Channels messages by direction (published, sent, received, delivered)",
  incremental: true
})

/**
 * Channel messages lost, tagged `node`, `channel` and `reason`: `undelivered` (dropped before
 * sending), `unacknowledged` (frames not acknowledged in time), `overflowed` (a full subscriber
 * buffer), `undecodable`.
 */
export const channelDropped = Metric.counter("foundation_channel_dropped_total", {
  description: "Channels messages lost, by reason (undelivered, unacknowledged, overflowed, undecodable)",
  incremental: true
})

/** The status of the last check Health ran itself: 0 healthy, 1 degraded, 2 critical; tagged `node`. */
export const healthStatus = Metric.gauge("foundation_health_status", {
  description: "Overall status of the last scheduled health check: 0 healthy, 1 degraded, 2 critical"
})

/** How long the last check Health ran itself took, in milliseconds; tagged `node`. */
export const healthCheckDuration = Metric.gauge("foundation_health_check_duration_ms", {
  description: "Duration of the last scheduled health check in milliseconds"
})

/** Checks Health ran itself, tagged `node` and `status`. */
export const healthChecks = Metric.counter("foundation_health_checks_total", {
  description: "Scheduled health checks, by overall status",
  incremental: true
})

/**
 * Measures a call: counts it in `rpcCalls`, its failure (or interruption, as by a timeout) in
 * `rpcErrors`, and its latency in `rpcLatency`, tagged `rpc` and `node` (`node` defaults to this
 * node, read from `Node.Node` when it is in the context).
 */
export const track =
  (rpc: string, node?: string) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.flatMap(Effect.serviceOption(Node), (service) => {
      const tags = {
        rpc,
        node: node ?? Option.match(service, { onNone: () => "", onSome: (n) => n.self.id })
      }
      return Effect.flatMap(Clock.currentTimeNanos, (start) =>
        Effect.onExit(self, (exit) =>
          Effect.flatMap(Clock.currentTimeNanos, (end) => {
            const latencyMs = Number(end - start) / 1e6
            return Effect.all(
              [
                Metric.increment(withTags(rpcCalls, tags)),
                Exit.isSuccess(exit) ? Effect.void : Metric.increment(withTags(rpcErrors, tags)),
                Metric.update(withTags(rpcLatency, tags), latencyMs)
              ],
              { discard: true }
            )
          })
        )
      )
    })

/** `metric` with every tag of `tags` (`Metric.tagged`, once per tag). */
export const withTags = <Type, In, Out>(
  metric: Metric.Metric<Type, In, Out>,
  tags: Readonly<Record<string, string>>
): Metric.Metric<Type, In, Out> =>
  Object.entries(tags).reduce((tagged, [key, value]) => Metric.tagged(tagged, key, value), metric)

// -----------------------------------------------------------------------------
// Prometheus text format
// -----------------------------------------------------------------------------

/** The content type of `prometheus`'s output (text exposition format 0.0.4). */
export const prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

/**
 * Every metric of the process (`Metric.snapshot`) in the Prometheus text exposition format:
 * counters and gauges as one sample per tag set, histograms as cumulative `_bucket{le}` samples with
 * `_sum` and `_count`, summaries as `{quantile}` samples with `_sum` and `_count`, frequencies as a
 * counter with a `key` label. Names are sanitized to `[a-zA-Z_:][a-zA-Z0-9_:]*`.
 */
export const prometheus: Effect.Effect<string> = Effect.map(Metric.snapshot, (pairs) =>
  renderPrometheus(pairs)
)

/** `prometheus` for a given snapshot. */
export const renderPrometheus = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, { type: string; help: string | undefined; lines: Array<string> }>()
  const sorted = [...pairs].sort((a, b) => a.metricKey.name.localeCompare(b.metricKey.name))
  for (const pair of sorted) {
    const name = sanitizeName(pair.metricKey.name)
    const tags = pair.metricKey.tags.map((tag) => [sanitizeLabel(tag.key), tag.value] as const)
    const state = pair.metricState
    const type = MetricState.isCounterState(state)
      ? "counter"
      : MetricState.isGaugeState(state)
        ? "gauge"
        : MetricState.isHistogramState(state)
          ? "histogram"
          : MetricState.isSummaryState(state)
            ? "summary"
            : "counter"
    let family = families.get(name)
    if (!family) {
      family = { type, help: Option.getOrUndefined(pair.metricKey.description), lines: [] }
      families.set(name, family)
    }
    if (family.type !== type) continue
    const lines = family.lines
    if (MetricState.isCounterState(state) || MetricState.isGaugeState(state)) {
      lines.push(
        `${name}${renderLabels(tags)} ${renderNumber(MetricState.isCounterState(state) ? state.count : state.value)}`
      )
    } else if (MetricState.isHistogramState(state)) {
      let infinite = false
      for (const [boundary, count] of state.buckets) {
        infinite ||= boundary === Number.POSITIVE_INFINITY
        lines.push(`${name}_bucket${renderLabels([...tags, ["le", renderNumber(boundary)]])} ${count}`)
      }
      if (!infinite) lines.push(`${name}_bucket${renderLabels([...tags, ["le", "+Inf"]])} ${state.count}`)
      lines.push(`${name}_sum${renderLabels(tags)} ${renderNumber(state.sum)}`)
      lines.push(`${name}_count${renderLabels(tags)} ${state.count}`)
    } else if (MetricState.isSummaryState(state)) {
      for (const [quantile, value] of state.quantiles) {
        lines.push(
          `${name}${renderLabels([...tags, ["quantile", renderNumber(quantile)]])} ${Option.match(value, {
            onNone: () => "NaN",
            onSome: renderNumber
          })}`
        )
      }
      lines.push(`${name}_sum${renderLabels(tags)} ${renderNumber(state.sum)}`)
      lines.push(`${name}_count${renderLabels(tags)} ${state.count}`)
    } else if (MetricState.isFrequencyState(state)) {
      for (const [key, count] of state.occurrences) {
        lines.push(`${name}${renderLabels([...tags, ["key", key]])} ${count}`)
      }
    }
  }
  const out: Array<string> = []
  for (const [name, family] of families) {
    if (family.help !== undefined) out.push(`# HELP ${name} ${escapeHelp(family.help)}`)
    out.push(`# TYPE ${name} ${family.type}`)
    out.push(...family.lines)
  }
  return out.length === 0 ? "" : out.join("\n") + "\n"
}

const sanitizeName = (name: string) => {
  const cleaned = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return /^[a-zA-Z_:]/.test(cleaned) ? cleaned : `_${cleaned}`
}

const sanitizeLabel = (name: string) => {
  const cleaned = name.replace(/[^a-zA-Z0-9_]/g, "_")
  return /^[a-zA-Z_]/.test(cleaned) ? cleaned : `_${cleaned}`
}

const renderNumber = (value: number | bigint): string =>
  typeof value === "bigint"
    ? value.toString()
    : Number.isNaN(value)
      ? "NaN"
      : value === Number.POSITIVE_INFINITY
        ? "+Inf"
        : value === Number.NEGATIVE_INFINITY
          ? "-Inf"
          : String(value)

const renderLabels = (labels: ReadonlyArray<readonly [string, string]>) =>
  labels.length === 0
    ? ""
    : `{${labels.map(([key, value]) => `${key}="${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`).join(",")}}`

const escapeHelp = (help: string) => help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
