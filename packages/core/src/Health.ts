/**
 * Cluster health, the seed's `Foundation.HealthMonitor`: a scheduled check of the whole cluster,
 * seen from this node, that says healthy, degraded or critical, with the facts it measured and
 * recommendations derived from them. Every check is real; nothing reports "healthy" by default.
 *
 * What it checks, and how:
 * - **cluster**: every member of `Node.members` is pinged over the node RPC (`NodeRpcs.Ping`, timed)
 *   and asked for its vitals (`HealthRpcs.Vitals`: memory and event-loop lag from its `Vitals`
 *   service, shard leases held from `Sharding.hasShardId`, entities from
 *   `Sharding.activeEntityCount`). The expected node count comes from `settings.expectedNodes`,
 *   else `ClusterConfig` when it was configured (`FOUNDATION_EXPECTED_NODES`, `expectedNodes`), else
 *   the members known;
 * - **services**: `Supervisor.whichChildren` (singletons and replicated processes, the instances
 *   running now, restarts derived from their epochs), when a `Supervisor` is provided;
 * - **infrastructure**: `RunnerStorage.getRunners`, timed (storage reachable and its latency); shard
 *   leases held, summed over the nodes that answered; with `Channels` provided, one `NodeRpcs.Ping`
 *   per channel lane and peer (`Node.clientFor(NodeRpcs, { lane })`), each lane being a connection;
 * - **performance**: Foundation's metrics (`Metrics`), read with `Metric.snapshot` over the window
 *   since the previous check: node RPC latency, messages per second, error rate.
 *
 * The rules (`clusterStatus`, `worstStatus`): the cluster is healthy when at least the expected
 * number of nodes are healthy, degraded with at least half, critical below; the overall status is
 * the worst of cluster, services and infrastructure. Each scheduled check (every `interval`, 30 s,
 * the first after `initialDelay`, 5 s, and one at once after a member goes down or comes back) is
 * kept in a history of the last `historySize` (10) reports, logged (debug when healthy, warning when
 * degraded, error when critical) and published on `changes` when the status changed. A member going
 * down is logged as an error at once (the seed's flow 2).
 *
 * Drop down to the calls above to check one thing yourself; `HealthRpcs` is served on every node
 * running this layer, so `node.clientFor(HealthRpcs)(id)` reads any node's vitals.
 */
import type { RunnerStorage } from "@effect/cluster/RunnerStorage"
import type { Sharding } from "@effect/cluster/Sharding"
import type { ShardingConfig } from "@effect/cluster/ShardingConfig"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as internal from "./internal/health.js"
import * as internalSettings from "./internal/settings.js"
import { type Node, NodeId } from "./Node.js"
import { RestartPolicy } from "./SupervisorStorage.js"
import { EventLoopLag, Memory, type Vitals } from "./Vitals.js"

// -----------------------------------------------------------------------------
// Statuses and rules
// -----------------------------------------------------------------------------

/** A status, from best to worst. */
export const Status = Schema.Literal("healthy", "degraded", "critical")
/** @see Status */
export type Status = typeof Status.Type

/** A section's status; `unavailable` when the component it reports on is not provided (it does not count). */
export const SectionStatus = Schema.Literal("healthy", "degraded", "critical", "unavailable")
/** @see SectionStatus */
export type SectionStatus = typeof SectionStatus.Type

/**
 * The seed's rule: healthy if `healthy >= expected`, degraded if `healthy >= expected / 2`, critical
 * otherwise. Unlike the seed's integer division (`div(expected, 2)`), half is exact: one healthy
 * node of three is critical, not degraded.
 */
export const clusterStatus = (healthy: number, expected: number): Status =>
  healthy >= expected ? "healthy" : healthy * 2 >= expected ? "degraded" : "critical"

/** The worst of some statuses (`unavailable` ones do not count); `healthy` when none count. */
export const worstStatus = (statuses: ReadonlyArray<SectionStatus>): Status =>
  statuses.includes("critical") ? "critical" : statuses.includes("degraded") ? "degraded" : "healthy"

// -----------------------------------------------------------------------------
// Node RPC
// -----------------------------------------------------------------------------

/** What a node says about itself (`HealthRpcs.Vitals`). */
export class NodeVitals extends Schema.Class<NodeVitals>("@foundation/NodeVitals")({
  node: NodeId,
  startedAt: Schema.Number,
  uptimeMs: Schema.Number,
  memory: Schema.NullOr(Memory),
  eventLoopLag: Schema.NullOr(EventLoopLag),
  /** shards of this node's assigned groups whose lease this node holds (`Sharding.hasShardId`) */
  shardsHeld: Schema.Number,
  /** shards of this node's assigned groups (`shardsPerGroup` per group) */
  shardsTotal: Schema.Number,
  /** entities running on this node (`Sharding.activeEntityCount`) */
  entities: Schema.Number
}) {}

/** The group `layer` serves on every node: `Health.Vitals`, the node's `NodeVitals`. */
export class HealthRpcs extends RpcGroup.make(Rpc.make("Health.Vitals", { success: NodeVitals })) {}

// -----------------------------------------------------------------------------
// The report
// -----------------------------------------------------------------------------

/**
 * One member, as this check found it:
 * - `healthy`: it answered the ping within `pingTimeout`, in at most `slowPingMs`, and its vitals
 *   show no event-loop lag above `maxEventLoopLagMs` at p99;
 * - `slow`: it answered, but slower than that, or its event loop lags;
 * - `unreachable`: no answer (`error` says why), or the failure detector declared it down.
 */
export class NodeHealth extends Schema.Class<NodeHealth>("@foundation/NodeHealth")({
  node: Schema.String,
  address: Schema.String,
  self: Schema.Boolean,
  /** the failure detector's view (`Node.members`) */
  membership: Schema.Literal("up", "suspect", "down"),
  downReason: Schema.NullOr(Schema.String),
  status: Schema.Literal("healthy", "slow", "unreachable"),
  /** round trip of `NodeRpcs.Ping`; 0 for this node, which answers itself */
  pingMs: Schema.NullOr(Schema.Number),
  uptimeMs: Schema.NullOr(Schema.Number),
  memory: Schema.NullOr(Memory),
  eventLoopLag: Schema.NullOr(EventLoopLag),
  shardsHeld: Schema.NullOr(Schema.Number),
  entities: Schema.NullOr(Schema.Number),
  /** why it is unreachable, or why its vitals are missing */
  error: Schema.NullOr(Schema.String)
}) {}

/** The cluster section: every member pinged, and the status by `clusterStatus`. */
export class ClusterHealth extends Schema.Class<ClusterHealth>("@foundation/ClusterHealth")({
  status: Status,
  expectedNodes: Schema.Number,
  /** where `expectedNodes` came from: a setting, an env var, or the members known */
  expectedSource: Schema.String,
  /** members in `Node.members`, this node included */
  knownNodes: Schema.Number,
  /** members the failure detector sees up */
  connectedNodes: Schema.Number,
  healthyNodes: Schema.Number,
  /** whether this node sees a majority (`Node.hasQuorum`); false on the minority side of a partition */
  hasQuorum: Schema.Boolean,
  nodes: Schema.Array(NodeHealth)
}) {}

/** A running instance of a supervised process. */
export class ServiceInstance extends Schema.Class<ServiceInstance>("@foundation/ServiceInstance")({
  node: Schema.String,
  epoch: Schema.Number,
  startedAt: Schema.Number
}) {}

/**
 * A supervised process (`Supervisor.whichChildren`). `restarts` counts starts after the first: for a
 * singleton, restarts after a failure, failovers and handovers (its stored epoch minus one); for a
 * replicated process, restarts of the instances running now (their epochs minus one each).
 */
export class ServiceHealth extends Schema.Class<ServiceHealth>("@foundation/ServiceHealth")({
  name: Schema.String,
  kind: Schema.Literal("singleton", "replicated"),
  spec: Schema.String,
  restart: RestartPolicy,
  /** `partial`: a replicated process missing on some node that is up */
  status: Schema.Literal("running", "partial", "not-running"),
  expectedInstances: Schema.Number,
  instances: Schema.Array(ServiceInstance),
  restarts: Schema.Number
}) {}

/** The services section; `unavailable` (with `reason`) when no `Supervisor` is provided. */
export class ServicesHealth extends Schema.Class<ServicesHealth>("@foundation/ServicesHealth")({
  status: SectionStatus,
  reason: Schema.NullOr(Schema.String),
  totalRegistered: Schema.Number,
  running: Schema.Number,
  notRunning: Schema.Number,
  services: Schema.Array(ServiceHealth)
}) {}

/** `RunnerStorage.getRunners`, timed. */
export class StorageHealth extends Schema.Class<StorageHealth>("@foundation/StorageHealth")({
  reachable: Schema.Boolean,
  latencyMs: Schema.NullOr(Schema.Number),
  /** runners registered in storage, and those marked healthy */
  runners: Schema.NullOr(Schema.Number),
  healthyRunners: Schema.NullOr(Schema.Number),
  error: Schema.NullOr(Schema.String)
}) {}

/** Shard leases, summed over the nodes that answered (`unknownNodes` did not). */
export class ShardLocks extends Schema.Class<ShardLocks>("@foundation/ShardLocks")({
  total: Schema.Number,
  held: Schema.Number,
  byNode: Schema.Array(Schema.Struct({ node: Schema.String, held: Schema.Number })),
  unknownNodes: Schema.Array(Schema.String)
}) {}

/** One channel lane: the peers that answered a ping on it, and those that did not. */
export class LaneHealth extends Schema.Class<LaneHealth>("@foundation/LaneHealth")({
  channel: Schema.String,
  lane: Schema.String,
  up: Schema.Array(Schema.String),
  down: Schema.Array(Schema.Struct({ node: Schema.String, error: Schema.String })),
  /** the slowest answer on this lane */
  maxPingMs: Schema.NullOr(Schema.Number)
}) {}

/** The channels part; `available: false` (with `reason`) when no `Channels` is provided. */
export class ChannelsHealth extends Schema.Class<ChannelsHealth>("@foundation/ChannelsHealth")({
  available: Schema.Boolean,
  reason: Schema.NullOr(Schema.String),
  lanes: Schema.Array(LaneHealth)
}) {}

/** The infrastructure section. */
export class InfrastructureHealth extends Schema.Class<InfrastructureHealth>(
  "@foundation/InfrastructureHealth"
)({
  status: Status,
  storage: StorageHealth,
  shardLocks: ShardLocks,
  channels: ChannelsHealth
}) {}

/** Calls of one kind through `Metrics.track` in the window. */
export class RpcPerformance extends Schema.Class<RpcPerformance>("@foundation/RpcPerformance")({
  rpc: Schema.String,
  calls: Schema.Number,
  errors: Schema.Number,
  avgLatencyMs: Schema.NullOr(Schema.Number)
}) {}

/**
 * The performance section, from `Metric.snapshot` over `windowMs` (since the previous check):
 * messages are node RPC calls (`Metrics.track`) plus channel messages sent to or received from other
 * nodes; errors are failed calls plus channel messages lost. Not part of the overall status (as in
 * the seed); it feeds recommendations.
 */
export class PerformanceHealth extends Schema.Class<PerformanceHealth>("@foundation/PerformanceHealth")({
  windowMs: Schema.Number,
  messages: Schema.Number,
  errors: Schema.Number,
  /** mean latency of the calls through `Metrics.track` in the window; `null` when there were none */
  avgMessageLatencyMs: Schema.NullOr(Schema.Number),
  /** mean of the failure detector's last heartbeat round trip to each peer that is up */
  avgHeartbeatRttMs: Schema.NullOr(Schema.Number),
  messageThroughputPerSec: Schema.Number,
  errorRatePercent: Schema.Number,
  byRpc: Schema.Array(RpcPerformance),
  channels: Schema.Struct({
    published: Schema.Number,
    sent: Schema.Number,
    received: Schema.Number,
    delivered: Schema.Number,
    undelivered: Schema.Number,
    unacknowledged: Schema.Number,
    overflowed: Schema.Number,
    undecodable: Schema.Number
  })
}) {}

/** A fact that made a section degraded or critical, or that a recommendation rests on. */
export class Issue extends Schema.Class<Issue>("@foundation/HealthIssue")({
  section: Schema.Literal("cluster", "services", "infrastructure", "performance"),
  message: Schema.String
}) {}

/** The seed's report, with every field measured. */
export class HealthReport extends Schema.Class<HealthReport>("@foundation/HealthReport")({
  overallStatus: Status,
  /** the node that ran the check */
  node: Schema.String,
  cluster: ClusterHealth,
  services: ServicesHealth,
  infrastructure: InfrastructureHealth,
  performance: PerformanceHealth,
  issues: Schema.Array(Issue),
  recommendations: Schema.Array(Schema.String),
  /** epoch ms when the check started */
  checkedAt: Schema.Number,
  checkDurationMs: Schema.Number
}) {}

/** The overall status changed between two checks Health ran itself (`from` is `null` for the first). */
export class StatusChange extends Schema.Class<StatusChange>("@foundation/HealthStatusChange")({
  from: Schema.NullOr(Status),
  to: Status,
  at: Schema.Number,
  report: HealthReport
}) {}

/** One readiness condition. */
export class ProbeCheck extends Schema.Class<ProbeCheck>("@foundation/ProbeCheck")({
  name: Schema.String,
  ok: Schema.Boolean,
  detail: Schema.String
}) {}

/**
 * Whether this node should receive traffic (a Kubernetes readiness probe): its runtime is not
 * shutting down, storage answers, its runner is registered and healthy in storage, and it sees a
 * majority of the cluster. It does not depend on other nodes being healthy: a degraded cluster
 * still serves.
 */
export class Readiness extends Schema.Class<Readiness>("@foundation/Readiness")({
  ready: Schema.Boolean,
  checks: Schema.Array(ProbeCheck)
}) {}

/**
 * Whether this node's process should be left running (a Kubernetes liveness probe): only false once
 * its `Sharding` is shut down. Nothing outside the process counts, so a database outage or a
 * partition never gets every pod restarted.
 */
export class Liveness extends Schema.Class<Liveness>("@foundation/Liveness")({
  alive: Schema.Boolean,
  detail: Schema.String
}) {}

// -----------------------------------------------------------------------------
// Settings
// -----------------------------------------------------------------------------

/** Tunables; every field has a default (`defaults`). */
export interface Settings {
  /** time between scheduled checks (30 s) */
  readonly interval: Duration.Duration
  /** time before the first scheduled check (5 s) */
  readonly initialDelay: Duration.Duration
  /** reports kept in `history` (10) */
  readonly historySize: number
  /** how long a ping or a vitals call may take before the node counts as unreachable (2 s) */
  readonly pingTimeout: Duration.Duration
  /** how long `RunnerStorage.getRunners` may take before storage counts as unreachable (2 s) */
  readonly storageTimeout: Duration.Duration
  /** a ping slower than this makes a node `slow` (1000 ms) */
  readonly slowPingMs: number
  /** an event-loop lag above this at p99 makes a node `slow` (250 ms) */
  readonly maxEventLoopLagMs: number
  /** heap used above this fraction of the heap limit gets a recommendation (0.9) */
  readonly maxHeapUsedRatio: number
  /** storage slower than this makes infrastructure degraded (1000 ms) */
  readonly slowStorageMs: number
  /** an error rate above this (percent) gets a recommendation (5) */
  readonly maxErrorRatePercent: number
  /** the expected node count; overrides `ClusterConfig` and the members known */
  readonly expectedNodes: number | undefined
  /** run a check at once when a member goes down or comes back (true) */
  readonly checkOnMembershipChange: boolean
}

/** The defaults: interval 30 s, first check after 5 s, 10 reports, 2 s timeouts. */
export const defaults: Settings = {
  interval: Duration.seconds(30),
  initialDelay: Duration.seconds(5),
  historySize: 10,
  pingTimeout: Duration.seconds(2),
  storageTimeout: Duration.seconds(2),
  slowPingMs: 1000,
  maxEventLoopLagMs: 250,
  maxHeapUsedRatio: 0.9,
  slowStorageMs: 1000,
  maxErrorRatePercent: 5,
  expectedNodes: undefined,
  checkOnMembershipChange: true
}

/** Overrides of `defaults`; durations as `Duration.DurationInput` ("30 seconds", 30000, ...). */
export type SettingsInput = internalSettings.Input<Settings>

/** `defaults` with `input` applied. */
export const resolveSettings = (input?: SettingsInput): Settings =>
  internalSettings.withDefaults(defaults, input)

// -----------------------------------------------------------------------------
// The service
// -----------------------------------------------------------------------------

/** The Health service of one node. */
export class Health extends Context.Tag("@foundation/core/Health")<
  Health,
  {
    /** Runs a check now and returns its report (not kept in `history`, not published on `changes`). */
    readonly getClusterHealth: Effect.Effect<HealthReport>
    /** The report of the last scheduled check, if one ran. */
    readonly latest: Effect.Effect<Option.Option<HealthReport>>
    /** The reports of the last `historySize` scheduled checks, newest first. */
    readonly history: Effect.Effect<ReadonlyArray<HealthReport>>
    /** Status changes of the scheduled checks, from the moment of subscription (scoped subscription). */
    readonly changes: Effect.Effect<Stream.Stream<StatusChange>, never, Scope.Scope>
    /** The liveness probe (local, instant). */
    readonly liveness: Effect.Effect<Liveness>
    /** The readiness probe (local, one storage read bounded by `storageTimeout`). */
    readonly readiness: Effect.Effect<Readiness>
    /**
     * Samples the metrics Health maintains from their sources (members, heartbeat round trips,
     * `Channels.stats`) into `Metrics`; call it before `Metric.snapshot` for current values.
     */
    readonly collectMetrics: Effect.Effect<void>
    readonly settings: Settings
  }
>() {}

/**
 * Builds this node's Health: serves `HealthRpcs`, starts the scheduled checks and follows
 * membership. `Supervisor`, `Channels` and `ClusterConfig` are read with `Effect.serviceOption` from
 * the context this is built in: provide them to this layer (`Layer.provide`) for their sections.
 */
export const make = (
  settings?: SettingsInput
): Effect.Effect<
  Health["Type"],
  never,
  Node | Sharding | ShardingConfig | RunnerStorage | Vitals | Scope.Scope
> => internal.make(resolveSettings(settings))

/** Health as a layer. Every node of the cluster should run it (each serves `HealthRpcs`). */
export const layer = (
  settings?: SettingsInput
): Layer.Layer<Health, never, Node | Sharding | ShardingConfig | RunnerStorage | Vitals> =>
  Layer.scoped(Health, make(settings))

/** Runs a check now on this node's Health. */
export const getClusterHealth: Effect.Effect<HealthReport, never, Health> = Effect.flatMap(
  Health,
  (health) => health.getClusterHealth
)
