import { RunnerStorage } from "@effect/cluster/RunnerStorage"
import { Sharding } from "@effect/cluster/Sharding"
import * as ShardId from "@effect/cluster/ShardId"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Equal from "effect/Equal"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import * as Channels from "../Channels.js"
import { ClusterConfig, renderSource } from "../ClusterConfig.js"
import type { Health, Settings, Status } from "../Health.js"
import {
  clusterStatus,
  ClusterHealth,
  HealthReport,
  HealthRpcs,
  InfrastructureHealth,
  Issue,
  LaneHealth,
  Liveness,
  NodeHealth,
  NodeVitals,
  PerformanceHealth,
  ProbeCheck,
  Readiness,
  RpcPerformance,
  ServiceHealth,
  ServiceInstance,
  ServicesHealth,
  ShardLocks,
  StatusChange,
  StorageHealth,
  ChannelsHealth,
  worstStatus
} from "../Health.js"
import * as Metrics from "../Metrics.js"
import { type Member, Node, NodeRpcs } from "../Node.js"
import { type Child, Supervisor } from "../Supervisor.js"
import { Vitals } from "../Vitals.js"
import { DetectorConfig } from "./detectorConfig.js"

type Outcome<A> =
  | { readonly ok: true; readonly value: A; readonly ms: number }
  | { readonly ok: false; readonly error: string; readonly ms: number }

class NoAnswer {
  readonly _tag = "NoAnswer"
}

const round = (value: number) => Math.round(value * 100) / 100

const describe = (cause: Cause.Cause<unknown>, timeout: Duration.Duration): string => {
  if (Cause.isInterruptedOnly(cause)) return "interrupted"
  const error = Cause.squash(cause)
  if (error instanceof NoAnswer) return `no answer within ${Duration.format(timeout)}`
  if (
    typeof error === "object" &&
    error !== null &&
    "message" in error &&
    typeof error.message === "string"
  ) {
    const tag = "_tag" in error && typeof error._tag === "string" ? `${error._tag}: ` : ""
    return error.message.length > 0 ? `${tag}${error.message}` : String(error)
  }
  return String(error)
}

const directions = ["published", "sent", "received", "delivered"] as const
const dropReasons = ["undelivered", "unacknowledged", "overflowed", "undecodable"] as const
type ChannelCounts = Record<(typeof directions)[number] | (typeof dropReasons)[number], number>

const zeroChannelCounts = (): ChannelCounts => ({
  published: 0,
  sent: 0,
  received: 0,
  delivered: 0,
  undelivered: 0,
  unacknowledged: 0,
  overflowed: 0,
  undecodable: 0
})

interface RpcTotals {
  calls: number
  errors: number
  latencySum: number
  latencyCount: number
}

/** This node's Foundation metrics at one moment, read from `Metric.snapshot`. */
interface Totals {
  readonly at: number
  readonly rpc: Map<string, RpcTotals>
  readonly channels: ChannelCounts
  /** per channel: messages dropped, by reason */
  readonly dropsByChannel: Map<string, ChannelCounts>
  readonly rtt: Map<string, number>
}

const numberOf = (value: number | bigint) => Number(value)

const statusLevel = (status: Status) => (status === "healthy" ? 0 : status === "degraded" ? 1 : 2)

export const make = (settings: Settings) =>
  Effect.gen(function* () {
    const node = yield* Node
    const sharding = yield* Sharding
    const shardingConfig = yield* ShardingConfig.ShardingConfig
    const storage = yield* RunnerStorage
    const vitals = yield* Vitals
    const detector = yield* DetectorConfig
    const clusterConfig = yield* Effect.serviceOption(ClusterConfig)
    const supervisor = yield* Effect.serviceOption(Supervisor)
    const channels = yield* Effect.serviceOption(Channels.Channels)
    const clock = yield* Effect.clock
    const self = node.self
    const now = () => clock.unsafeCurrentTimeMillis()
    const nowNanos = () => clock.unsafeCurrentTimeNanos()
    const selfTag = { node: self.id as string }

    const shardIds = Array.from(ShardingConfig.shardGroupConfig(shardingConfig).assigned).flatMap((group) =>
      Array.from({ length: shardingConfig.shardsPerGroup }, (_, i) => ShardId.make(group, i + 1))
    )

    /** Runs `effect` with a timeout and measures it; never fails. */
    const attempt = <A, E, R>(effect: Effect.Effect<A, E, R>, timeout: Duration.Duration) =>
      Effect.suspend(() => {
        const start = nowNanos()
        return effect.pipe(
          Effect.timeoutFail({ duration: timeout, onTimeout: () => new NoAnswer() }),
          Effect.exit,
          Effect.map((exit): Outcome<A> => {
            const ms = round(Number(nowNanos() - start) / 1e6)
            return Exit.isSuccess(exit)
              ? { ok: true, value: exit.value, ms }
              : { ok: false, error: describe(exit.cause, timeout), ms }
          })
        )
      })

    // -------------------------------------------------------------------------
    // What this node says about itself, served to every peer
    // -------------------------------------------------------------------------

    const ownVitals = Effect.gen(function* () {
      const sample = yield* vitals.sample
      const entities = yield* sharding.activeEntityCount
      let held = 0
      for (const shard of shardIds) if (sharding.hasShardId(shard)) held++
      return new NodeVitals({
        node: self.id,
        startedAt: self.startedAt,
        uptimeMs: now() - self.startedAt,
        memory: sample.memory,
        eventLoopLag: sample.eventLoopLag,
        shardsHeld: held,
        shardsTotal: shardIds.length,
        entities
      })
    })

    yield* node.serve(HealthRpcs, yield* HealthRpcs.toHandlersContext({ "Health.Vitals": () => ownVitals }))

    // -------------------------------------------------------------------------
    // Metrics sampled from their sources
    // -------------------------------------------------------------------------

    const collectLock = yield* Effect.makeSemaphore(1)
    const lastChannelStats = new Map<string, number>()

    const collectMetrics = collectLock.withPermits(1)(
      Effect.gen(function* () {
        const members = yield* node.members
        for (const status of ["up", "suspect", "down"] as const) {
          yield* Metric.set(
            Metrics.withTags(Metrics.members, { ...selfTag, status }),
            members.filter((member) => member.status === status).length
          )
        }
        for (const member of members) {
          if (member.info.id === self.id || member.lastHeardAt === 0) continue
          yield* Metric.set(
            Metrics.withTags(Metrics.heartbeatRtt, { ...selfTag, peer: member.info.id }),
            member.lastRttMs
          )
        }
        if (Option.isNone(channels)) return
        const stats = yield* channels.value.stats
        for (const channel of Channels.channels) {
          for (const field of [...directions, ...dropReasons]) {
            const key = `${channel}:${field}`
            const current = stats[channel][field]
            const delta = current - (lastChannelStats.get(key) ?? 0)
            lastChannelStats.set(key, current)
            if (delta <= 0) continue
            const isDirection = (directions as ReadonlyArray<string>).includes(field)
            yield* Metric.incrementBy(
              Metrics.withTags(
                isDirection ? Metrics.channelMessages : Metrics.channelDropped,
                isDirection
                  ? { ...selfTag, channel, direction: field }
                  : { ...selfTag, channel, reason: field }
              ),
              delta
            )
          }
        }
      })
    )

    const totalsOf = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>, at: number): Totals => {
      const totals: Totals = {
        at,
        rpc: new Map(),
        channels: zeroChannelCounts(),
        dropsByChannel: new Map(),
        rtt: new Map()
      }
      const rpcOf = (rpc: string) => {
        let entry = totals.rpc.get(rpc)
        if (!entry) {
          entry = { calls: 0, errors: 0, latencySum: 0, latencyCount: 0 }
          totals.rpc.set(rpc, entry)
        }
        return entry
      }
      for (const pair of pairs) {
        const tags = Object.fromEntries(pair.metricKey.tags.map((tag) => [tag.key, tag.value]))
        if (tags.node !== self.id) continue
        const state = pair.metricState
        switch (pair.metricKey.name) {
          case "foundation_rpc_calls_total":
            if (MetricState.isCounterState(state)) rpcOf(tags.rpc).calls = numberOf(state.count)
            break
          case "foundation_rpc_errors_total":
            if (MetricState.isCounterState(state)) rpcOf(tags.rpc).errors = numberOf(state.count)
            break
          case "foundation_rpc_latency_ms":
            if (MetricState.isHistogramState(state)) {
              rpcOf(tags.rpc).latencySum = state.sum
              rpcOf(tags.rpc).latencyCount = state.count
            }
            break
          case "foundation_channel_messages_total":
          case "foundation_channel_dropped_total": {
            const field = (tags.direction ?? tags.reason) as keyof ChannelCounts
            if (!MetricState.isCounterState(state) || !(field in totals.channels)) break
            totals.channels[field] += numberOf(state.count)
            let perChannel = totals.dropsByChannel.get(tags.channel)
            if (!perChannel) {
              perChannel = zeroChannelCounts()
              totals.dropsByChannel.set(tags.channel, perChannel)
            }
            perChannel[field] += numberOf(state.count)
            break
          }
          case "foundation_node_heartbeat_rtt_ms":
            if (MetricState.isGaugeState(state)) totals.rtt.set(tags.peer, numberOf(state.value))
            break
        }
      }
      return totals
    }

    // The window of `performance` and of restart counts: since the previous check.
    const accountingLock = yield* Effect.makeSemaphore(1)
    yield* collectMetrics
    let baseline = totalsOf(yield* Metric.snapshot, now())
    const lastRestarts = new Map<string, number>()

    // -------------------------------------------------------------------------
    // The checks
    // -------------------------------------------------------------------------

    const probeMember = (member: Member): Effect.Effect<NodeHealth> => {
      const id = member.info.id
      const base = {
        node: id as string,
        address: member.info.address.toString(),
        membership: member.status,
        downReason: member.downReason ?? null
      }
      const lagging = (v: NodeVitals) =>
        v.eventLoopLag !== null && v.eventLoopLag.p99Ms > settings.maxEventLoopLagMs
      const fromVitals = (v: NodeVitals) => ({
        uptimeMs: v.uptimeMs,
        memory: v.memory,
        eventLoopLag: v.eventLoopLag,
        shardsHeld: v.shardsHeld,
        entities: v.entities
      })
      const noVitals = { uptimeMs: null, memory: null, eventLoopLag: null, shardsHeld: null, entities: null }
      if (id === self.id) {
        return Effect.map(
          ownVitals,
          (v) =>
            new NodeHealth({
              ...base,
              self: true,
              status: lagging(v) ? "slow" : "healthy",
              pingMs: 0,
              ...fromVitals(v),
              error: null
            })
        )
      }
      return Effect.map(
        Effect.all(
          [
            attempt(
              Effect.flatMap(node.client(id), (client) => client.Ping({ from: self.id, sentAt: now() })).pipe(
                Metrics.track("Node.Ping", self.id)
              ),
              settings.pingTimeout
            ),
            attempt(
              Effect.flatMap(node.clientFor(HealthRpcs)(id), (client) => client.Health.Vitals()).pipe(
                Metrics.track("Health.Vitals", self.id)
              ),
              settings.pingTimeout
            )
          ],
          { concurrency: 2 }
        ),
        ([ping, answer]) => {
          if (!ping.ok) {
            return new NodeHealth({
              ...base,
              self: false,
              status: "unreachable",
              pingMs: null,
              ...noVitals,
              error: ping.error
            })
          }
          const v = answer.ok ? answer.value : undefined
          return new NodeHealth({
            ...base,
            self: false,
            status: ping.ms > settings.slowPingMs || (v && lagging(v)) ? "slow" : "healthy",
            pingMs: ping.ms,
            ...(v ? fromVitals(v) : noVitals),
            error: answer.ok ? null : `vitals unavailable: ${answer.error}`
          })
        }
      )
    }

    const expected = (known: number): { readonly count: number; readonly source: string } => {
      if (settings.expectedNodes !== undefined) {
        return { count: settings.expectedNodes, source: "Health settings.expectedNodes" }
      }
      if (Option.isSome(clusterConfig)) {
        const resolved = clusterConfig.value
        const choice = resolved.choices.find((c) => c.setting === "expectedNodes")
        if (choice && choice.source._tag !== "Rule") {
          return { count: resolved.expectedNodes, source: renderSource(choice.source) }
        }
      }
      return { count: Math.max(1, known), source: "the members known (no expected node count configured)" }
    }

    const storageCheck = Effect.map(
      attempt(storage.getRunners, settings.storageTimeout),
      (outcome) =>
        new StorageHealth(
          outcome.ok
            ? {
                reachable: true,
                latencyMs: outcome.ms,
                runners: outcome.value.length,
                healthyRunners: outcome.value.filter(([, healthy]) => healthy).length,
                error: null
              }
            : { reachable: false, latencyMs: null, runners: null, healthyRunners: null, error: outcome.error }
        )
    )

    const serviceOf = (child: Child, up: ReadonlySet<string>): ServiceHealth => {
      const instances = child.running.map(
        (ref) => new ServiceInstance({ node: ref.node, epoch: ref.epoch, startedAt: ref.startedAt })
      )
      if (child.kind === "singleton") {
        return new ServiceHealth({
          name: child.name,
          kind: child.kind,
          spec: child.spec,
          restart: child.restart,
          status: instances.length > 0 ? "running" : "not-running",
          expectedInstances: 1,
          instances,
          restarts: Math.max(0, child.epoch - 1)
        })
      }
      const onUp = new Set(instances.filter((i) => up.has(i.node)).map((i) => i.node))
      return new ServiceHealth({
        name: child.name,
        kind: child.kind,
        spec: child.spec,
        restart: child.restart,
        status: onUp.size >= up.size ? "running" : onUp.size > 0 ? "partial" : "not-running",
        expectedInstances: up.size,
        instances,
        restarts: instances.reduce((sum, i) => sum + Math.max(0, i.epoch - 1), 0)
      })
    }

    const servicesCheck = (members: ReadonlyArray<Member>) =>
      Option.match(supervisor, {
        onNone: () =>
          Effect.succeed({
            services: [] as ReadonlyArray<ServiceHealth>,
            error: "no Supervisor is provided to Health on this node" as string | null,
            available: false
          }),
        onSome: (service) =>
          Effect.map(attempt(service.whichChildren, settings.storageTimeout), (outcome) => {
            const up = new Set(members.filter((m) => m.status === "up").map((m) => m.info.id as string))
            return outcome.ok
              ? { services: outcome.value.map((child) => serviceOf(child, up)), error: null, available: true }
              : { services: [], error: `Supervisor.whichChildren failed: ${outcome.error}`, available: true }
          })
      })

    const laneCheck = (nodes: ReadonlyArray<NodeHealth>) =>
      Option.match(channels, {
        onNone: () =>
          Effect.succeed(
            new ChannelsHealth({
              available: false,
              reason: "no Channels is provided to Health on this node",
              lanes: []
            })
          ),
        onSome: () => {
          const peers = nodes.filter((n) => !n.self && n.status !== "unreachable").map((n) => n.node)
          return Effect.map(
            Effect.forEach(
              Channels.channels,
              (channel) => {
                const lane = Channels.laneOf(channel)
                return Effect.map(
                  Effect.forEach(
                    peers,
                    (peer) =>
                      Effect.map(
                        attempt(
                          Effect.flatMap(
                            node.clientFor(NodeRpcs, { lane })(peer as Member["info"]["id"]),
                            (client) => client.Ping({ from: self.id, sentAt: now() })
                          ).pipe(Metrics.track(`Node.Ping@${lane}`, self.id)),
                          settings.pingTimeout
                        ),
                        (outcome) => ({ peer, outcome })
                      ),
                    { concurrency: "unbounded" }
                  ),
                  (results) =>
                    new LaneHealth({
                      channel,
                      lane,
                      up: results.filter((r) => r.outcome.ok).map((r) => r.peer),
                      down: results.flatMap((r) =>
                        r.outcome.ok ? [] : [{ node: r.peer, error: r.outcome.error }]
                      ),
                      maxPingMs: results.some((r) => r.outcome.ok)
                        ? Math.max(...results.filter((r) => r.outcome.ok).map((r) => r.outcome.ms))
                        : null
                    })
                )
              },
              { concurrency: "unbounded" }
            ),
            (lanes) => new ChannelsHealth({ available: true, reason: null, lanes })
          )
        }
      })

    const performanceOf = (previous: Totals, current: Totals, members: ReadonlyArray<Member>) => {
      const windowMs = Math.max(1, current.at - previous.at)
      const byRpc: Array<RpcPerformance> = []
      let calls = 0
      let errors = 0
      let latencySum = 0
      let latencyCount = 0
      for (const [rpc, now] of current.rpc) {
        const before = previous.rpc.get(rpc) ?? { calls: 0, errors: 0, latencySum: 0, latencyCount: 0 }
        const c = now.calls - before.calls
        const e = now.errors - before.errors
        const s = now.latencySum - before.latencySum
        const n = now.latencyCount - before.latencyCount
        if (c <= 0 && n <= 0) continue
        calls += c
        errors += e
        latencySum += s
        latencyCount += n
        byRpc.push(
          new RpcPerformance({ rpc, calls: c, errors: e, avgLatencyMs: n > 0 ? round(s / n) : null })
        )
      }
      const channel = zeroChannelCounts()
      for (const key of Object.keys(channel) as Array<keyof ChannelCounts>) {
        channel[key] = current.channels[key] - previous.channels[key]
      }
      const dropped = channel.undelivered + channel.unacknowledged + channel.overflowed + channel.undecodable
      const messages = calls + channel.sent + channel.received
      const totalErrors = errors + dropped
      const up = members
        .filter((m) => m.info.id !== self.id && m.status === "up")
        .map((m) => m.info.id as string)
      const rtts = up.flatMap((peer) => {
        const rtt = current.rtt.get(peer)
        return rtt === undefined ? [] : [rtt]
      })
      const dropsByChannel = Array.from(current.dropsByChannel, ([name, counts]) => {
        const before = previous.dropsByChannel.get(name) ?? zeroChannelCounts()
        return {
          channel: name,
          undelivered: counts.undelivered - before.undelivered,
          unacknowledged: counts.unacknowledged - before.unacknowledged,
          overflowed: counts.overflowed - before.overflowed,
          undecodable: counts.undecodable - before.undecodable
        }
      })
      return {
        performance: new PerformanceHealth({
          windowMs,
          messages,
          errors: totalErrors,
          avgMessageLatencyMs: latencyCount > 0 ? round(latencySum / latencyCount) : null,
          avgHeartbeatRttMs: rtts.length > 0 ? round(rtts.reduce((a, b) => a + b, 0) / rtts.length) : null,
          messageThroughputPerSec: round((messages * 1000) / windowMs),
          errorRatePercent: messages > 0 ? round(Math.min(100, (totalErrors * 100) / messages)) : 0,
          byRpc,
          channels: channel
        }),
        dropsByChannel
      }
    }

    const runCheck: Effect.Effect<HealthReport> = Effect.gen(function* () {
      const checkedAt = now()
      const started = nowNanos()
      const members = yield* node.members
      const [probed, storageHealth, servicesFound] = yield* Effect.all(
        [
          Effect.forEach(members, probeMember, { concurrency: "unbounded" }),
          storageCheck,
          servicesCheck(members)
        ],
        { concurrency: "unbounded" }
      )
      const nodes = [...probed].sort((a, b) => a.node.localeCompare(b.node))
      const channelsHealth = yield* laneCheck(nodes)
      const hasQuorum = yield* node.hasQuorum
      yield* collectMetrics
      const { dropsByChannel, performance, restartsBefore } = yield* accountingLock.withPermits(1)(
        Effect.gen(function* () {
          const current = totalsOf(yield* Metric.snapshot, now())
          const result = performanceOf(baseline, current, members)
          baseline = current
          const restartsBefore = new Map(lastRestarts)
          for (const service of servicesFound.services) lastRestarts.set(service.name, service.restarts)
          return { ...result, restartsBefore }
        })
      )

      const issues: Array<Issue> = []
      const recommendations: Array<string> = []
      const issue = (section: Issue["section"], message: string, recommendation?: string) => {
        issues.push(new Issue({ section, message }))
        if (recommendation !== undefined && !recommendations.includes(recommendation)) {
          recommendations.push(recommendation)
        }
      }
      const recommend = (recommendation: string) => {
        if (!recommendations.includes(recommendation)) recommendations.push(recommendation)
      }

      // cluster
      const expectation = expected(members.length)
      const healthyNodes = nodes.filter((n) => n.status === "healthy").length
      const reachable = nodes.filter((n) => n.status !== "unreachable")
      const unreachable = nodes.filter((n) => n.status === "unreachable")
      const heartbeatTimeout = Duration.format(detector.heartbeatTimeout)
      const configured = !expectation.source.startsWith("the members")
      // how to change the expected count, named after where it came from
      const setExpected = (count: number) =>
        expectation.source.startsWith("env ")
          ? `set ${expectation.source.slice(4)}=${count}`
          : expectation.source.startsWith("settings.")
            ? `set ${expectation.source} to ${count}`
            : `set Health's expectedNodes to ${count}`
      const retired = (count: number) =>
        configured
          ? setExpected(count)
          : "nothing to change: with no expected count configured, it stops counting once its node directory " +
            "entry expires (30 s after its last refresh with SQL storage)"
      if (!hasQuorum) {
        issue(
          "cluster",
          `${self.id} reaches ${reachable.length} of ${nodes.length} known nodes and has no quorum`,
          `${self.id} is probably on the minority side of a network partition: check the network between ` +
            `${self.id} and ${unreachable.map((n) => n.node).join(", ")} (firewalls, routes, DNS). ` +
            "While cut off it evicts no one; the majority declares it down after the heartbeat timeout " +
            `(${heartbeatTimeout}) and takes over its shards.`
        )
      }
      for (const n of unreachable) {
        const seen =
          n.membership === "down"
            ? `has declared it down (${n.downReason ?? "unknown"})`
            : `still sees it ${n.membership}`
        const refused = n.downReason === "connection-refused" || /refused/i.test(n.error ?? "")
        issue(
          "cluster",
          `${n.node} (${n.address}) is unreachable: ${n.error}; the failure detector ${seen}`,
          refused
            ? `Restart ${n.node}: its endpoint ${n.address} refuses connections, so its process is gone. ` +
                `If it was retired on purpose, ${retired(Math.max(1, expectation.count - 1))}.`
            : hasQuorum
              ? `Check ${n.node}: it does not answer within ${Duration.format(settings.pingTimeout)} ` +
                "(a frozen or overloaded process, a long GC pause, or a network partition). If it stays silent " +
                `beyond the heartbeat timeout (${heartbeatTimeout}) the majority declares it down and moves its shards.`
              : undefined
        )
      }
      for (const n of nodes.filter((n) => n.status === "slow")) {
        if (n.pingMs !== null && n.pingMs > settings.slowPingMs) {
          issue(
            "cluster",
            `${n.node} answered the ping in ${n.pingMs} ms (more than ${settings.slowPingMs} ms)`,
            `Check ${n.node}'s CPU load and event-loop lag: every message to it waits as long as its ping.`
          )
        }
        if (n.eventLoopLag !== null && n.eventLoopLag.p99Ms > settings.maxEventLoopLagMs) {
          issue(
            "cluster",
            `${n.node}'s event loop lags ${round(n.eventLoopLag.p99Ms)} ms at p99 ` +
              `(max ${round(n.eventLoopLag.maxMs)} ms; more than ${settings.maxEventLoopLagMs} ms)`,
            `Move CPU-bound work on ${n.node} off the event loop (a worker thread) or spread the load over ` +
              "more nodes: its timers, heartbeats and messages all wait behind it."
          )
        }
      }
      for (const n of nodes) {
        const memory = n.memory
        if (memory === null || memory.heapLimitBytes === null || memory.heapLimitBytes <= 0) continue
        const ratio = memory.heapUsedBytes / memory.heapLimitBytes
        if (ratio > settings.maxHeapUsedRatio) {
          const mb = (bytes: number) => `${Math.round(bytes / 1024 / 1024)} MB`
          recommend(
            `${n.node} uses ${Math.round(ratio * 100)}% of its heap limit (${mb(memory.heapUsedBytes)} of ` +
              `${mb(memory.heapLimitBytes)}): raise --max-old-space-size or look for a leak (a heap snapshot).`
          )
        }
      }
      for (const n of reachable.filter((n) => n.error !== null)) {
        recommend(
          /Unknown request tag/.test(n.error ?? "")
            ? `Run Health.layer on ${n.node} too: it answers pings but does not serve HealthRpcs, so its memory, ` +
                "event-loop lag and shard leases are unknown."
            : `${n.node} answers pings but not its vitals call (${n.error}): look for errors in its logs.`
        )
      }
      const cluster = new ClusterHealth({
        status: clusterStatus(healthyNodes, expectation.count),
        expectedNodes: expectation.count,
        expectedSource: expectation.source,
        knownNodes: nodes.length,
        connectedNodes: members.filter((m) => m.status === "up").length,
        healthyNodes,
        hasQuorum,
        nodes
      })
      if (healthyNodes < expectation.count) {
        // the nodes known but not healthy have their own recommendations above; this one is for the missing
        issue(
          "cluster",
          `${healthyNodes} of ${expectation.count} expected nodes are healthy (expected from ${expectation.source})`,
          nodes.length < expectation.count
            ? `Only ${nodes.length} of the ${expectation.count} expected nodes are known: start ` +
                `${expectation.count - nodes.length} more (they join through the node directory), or if the ` +
                `cluster is meant to be smaller, ${setExpected(nodes.length)}.`
            : undefined
        )
      } else if (healthyNodes > expectation.count && configured) {
        recommend(
          `${healthyNodes} nodes are healthy, more than the ${expectation.count} expected: ` +
            `${setExpected(healthyNodes)}, so that losing one is reported.`
        )
      }

      // services
      let services: ServicesHealth
      if (!servicesFound.available) {
        services = new ServicesHealth({
          status: "unavailable",
          reason: servicesFound.error,
          totalRegistered: 0,
          running: 0,
          notRunning: 0,
          services: []
        })
      } else if (servicesFound.error !== null) {
        issue(
          "services",
          servicesFound.error,
          "Check the Supervisor's storage (the database): without it no process can be started, moved or listed."
        )
        services = new ServicesHealth({
          status: "degraded",
          reason: servicesFound.error,
          totalRegistered: 0,
          running: 0,
          notRunning: 0,
          services: []
        })
      } else {
        const list = servicesFound.services
        const running = list.filter((s) => s.status === "running").length
        for (const s of list) {
          if (s.status === "not-running") {
            issue(
              "services",
              `${s.kind} "${s.name}" (spec ${s.spec}, restart ${s.restart}) runs nowhere`,
              s.restart === "permanent"
                ? `"${s.name}" is being restarted with backoff: if it stays down, read the failure logged as ` +
                    `process "${s.name}" failed on the node that ran it, and Supervisor.whichChildren for its row.`
                : `"${s.name}" is ${s.restart}: the Supervisor does not restart it ${
                    s.restart === "transient" ? "after a normal exit" : "at all"
                  }; start it again (Supervisor.startSingleton) or stop it (Supervisor.stop) to clear it.`
            )
          } else if (s.status === "partial") {
            const missing = Array.from(
              new Set(nodes.filter((n) => n.membership === "up").map((n) => n.node)).values()
            ).filter((id) => !s.instances.some((i) => i.node === id))
            issue(
              "services",
              `replicated "${s.name}" runs on ${s.instances.length} of ${s.expectedInstances} nodes that are up ` +
                `(missing on ${missing.join(", ")})`,
              `The Supervisor reconciles replicas every second: if "${s.name}" stays missing on ${missing.join(", ")}, ` +
                "read that node's logs for its start failure."
            )
          }
          const before = restartsBefore.get(s.name)
          if (before !== undefined && s.restarts > before) {
            recommend(
              `${s.kind} "${s.name}" restarted ${s.restarts - before} time(s) since the previous check ` +
                `(${s.restarts} in all): if it keeps failing, fix the failure in its logs; restarts back off up to 5 s.`
            )
          }
        }
        services = new ServicesHealth({
          status: list.length === 0 ? "healthy" : clusterStatus(running, list.length),
          reason: null,
          totalRegistered: list.length,
          running,
          notRunning: list.length - running,
          services: list
        })
      }

      // infrastructure
      const byNode = nodes.flatMap((n) =>
        n.shardsHeld === null ? [] : [{ node: n.node, held: n.shardsHeld }]
      )
      const shardLocks = new ShardLocks({
        total: shardIds.length,
        held: byNode.reduce((sum, n) => sum + n.held, 0),
        byNode,
        unknownNodes: nodes.filter((n) => n.shardsHeld === null).map((n) => n.node)
      })
      const infraStatuses: Array<Status> = []
      if (!storageHealth.reachable) {
        infraStatuses.push("critical")
        issue(
          "infrastructure",
          `storage does not answer RunnerStorage.getRunners: ${storageHealth.error}`,
          "Check the database (FOUNDATION_DATABASE_URL, its server, the network to it). Until it answers, no " +
            "shard lease is acquired or refreshed: shards cannot move, and leases expire after " +
            `shardLockExpiration (${Duration.format(shardingConfig.shardLockExpiration)}).`
        )
      } else if (storageHealth.latencyMs !== null && storageHealth.latencyMs > settings.slowStorageMs) {
        infraStatuses.push("degraded")
        issue(
          "infrastructure",
          `storage answered RunnerStorage.getRunners in ${storageHealth.latencyMs} ms (more than ${settings.slowStorageMs} ms)`,
          "Check the database's load and the network latency to it: lease refreshes run every " +
            `${Duration.format(shardingConfig.shardLockRefreshInterval)} and need headroom.`
        )
      }
      if (shardLocks.held < shardLocks.total) {
        infraStatuses.push("degraded")
        const missing = shardLocks.total - shardLocks.held
        issue(
          "infrastructure",
          `${missing} of ${shardLocks.total} shards are held by no node that answered` +
            (shardLocks.unknownNodes.length > 0
              ? ` (no answer from ${shardLocks.unknownNodes.join(", ")})`
              : ""),
          `Entities of ${missing} shard(s) do not answer until their leases move: at once when the failure ` +
            "detector declares the holder down, otherwise when the leases expire after " +
            `${Duration.format(shardingConfig.shardLockExpiration)}. If it lasts, check the nodes above and storage.`
        )
      }
      for (const lane of channelsHealth.lanes) {
        for (const down of lane.down) {
          infraStatuses.push("degraded")
          issue(
            "infrastructure",
            `channel lane ${lane.lane} to ${down.node} fails (${down.error}) while ${down.node} answers on its default connection`,
            `Messages on ${lane.channel} to ${down.node} are delayed or lost: look for a stuck transfer on that ` +
              `lane (Channels.stats: unacknowledged) and for errors in ${down.node}'s logs.`
          )
        }
      }
      const infrastructure = new InfrastructureHealth({
        status: worstStatus(infraStatuses),
        storage: storageHealth,
        shardLocks,
        channels: channelsHealth
      })

      // performance
      const window =
        performance.windowMs < 2000
          ? `${Math.round(performance.windowMs)} ms`
          : `${Math.round(performance.windowMs / 1000)} s`
      for (const drops of dropsByChannel) {
        const parts = dropReasons.filter((reason) => drops[reason] > 0)
        if (parts.length === 0) continue
        const why: Record<(typeof dropReasons)[number], string> = {
          undelivered: "copies for a node that was down or whose queue was full (maxQueuedBytes)",
          unacknowledged:
            "frames not acknowledged within ackTimeout: the receiving node is slow or overloaded",
          overflowed:
            "a subscriber's buffer was full: it consumes too slowly; raise bufferSize or process faster",
          undecodable:
            "messages a subscriber's Schema could not decode: publishers and subscribers disagree on the topic's Schema"
        }
        issue(
          "performance",
          `channel ${drops.channel} lost ${parts.map((reason) => `${drops[reason]} ${reason}`).join(", ")} in the last ${window}`,
          parts.map((reason) => `Channel ${drops.channel}, ${reason}: ${why[reason]}.`).join(" ")
        )
      }
      // with a node unreachable, the failures are the calls to it: the cluster section already says so
      if (unreachable.length === 0 && performance.errorRatePercent > settings.maxErrorRatePercent) {
        const worst = [...performance.byRpc].sort((a, b) => b.errors - a.errors).filter((r) => r.errors > 0)
        issue(
          "performance",
          `${performance.errorRatePercent}% of messages failed in the last ${window} ` +
            `(${performance.errors} of ${performance.messages})`,
          `Most failures: ${
            worst.length > 0 ? worst.map((r) => `${r.rpc} (${r.errors})`).join(", ") : "channel messages lost"
          }: look at the errors their callers log, and at the lost channel messages above.`
        )
      }
      if (performance.avgMessageLatencyMs !== null && performance.avgMessageLatencyMs > settings.slowPingMs) {
        issue(
          "performance",
          `node RPC calls took ${performance.avgMessageLatencyMs} ms on average in the last ${window}`,
          "Node RPC is slow: check the event-loop lag of the nodes above and the network between them."
        )
      }

      const overallStatus = worstStatus([cluster.status, services.status, infrastructure.status])
      return new HealthReport({
        overallStatus,
        node: self.id,
        cluster,
        services,
        infrastructure,
        performance,
        issues,
        recommendations,
        checkedAt,
        checkDurationMs: round(Number(nowNanos() - started) / 1e6)
      })
    })

    // -------------------------------------------------------------------------
    // Scheduled checks, history, status changes, logs
    // -------------------------------------------------------------------------

    let history: ReadonlyArray<HealthReport> = []
    let lastStatus: Status | null = null
    let started = false
    const changes = yield* Effect.acquireRelease(PubSub.unbounded<StatusChange>(), PubSub.shutdown)
    const wake = yield* Queue.sliding<void>(1)

    const scheduledCheck = Effect.gen(function* () {
      started = true
      const report = yield* runCheck
      history = [report, ...history].slice(0, settings.historySize)
      yield* Metric.set(Metrics.withTags(Metrics.healthStatus, selfTag), statusLevel(report.overallStatus))
      yield* Metric.set(Metrics.withTags(Metrics.healthCheckDuration, selfTag), report.checkDurationMs)
      yield* Metric.increment(
        Metrics.withTags(Metrics.healthChecks, { ...selfTag, status: report.overallStatus })
      )
      const issues = report.issues.map((i) => `[${i.section}] ${i.message}`).join("; ")
      if (report.overallStatus === "healthy") yield* Effect.logDebug("Cluster health: OK")
      else if (report.overallStatus === "degraded")
        yield* Effect.logWarning(`Cluster health: DEGRADED. Issues: ${issues}`)
      else yield* Effect.logError(`Cluster health: CRITICAL. Issues: ${issues}`)
      if (report.overallStatus !== lastStatus) {
        if (lastStatus !== null) {
          yield* Effect.logInfo(`Cluster health changed from ${lastStatus} to ${report.overallStatus}`)
        }
        yield* PubSub.publish(
          changes,
          new StatusChange({ from: lastStatus, to: report.overallStatus, at: report.checkedAt, report })
        )
        lastStatus = report.overallStatus
      }
    })

    const events = yield* node.events
    yield* events.pipe(
      Stream.runForEach((event) => {
        const check = started && settings.checkOnMembershipChange ? Queue.offer(wake, void 0) : Effect.void
        if (event._tag === "NodeDown") {
          const message = `node ${event.node.id} is down (${event.reason}); checking cluster health`
          return Effect.zipRight(
            event.reason === "left" ? Effect.logInfo(message) : Effect.logError(message),
            check
          )
        }
        return event._tag === "NodeUp" ? check : Effect.void
      }),
      Effect.interruptible,
      Effect.forkScoped
    )

    yield* Effect.gen(function* () {
      yield* Effect.sleep(settings.initialDelay)
      while (true) {
        // a defect in one check must not end the schedule
        yield* scheduledCheck.pipe(
          Effect.catchAllCause((cause) => Effect.logError("Cluster health check failed", cause))
        )
        yield* Effect.raceFirst(Effect.sleep(settings.interval), Queue.take(wake))
      }
    }).pipe(Effect.interruptible, Effect.forkScoped)

    const service: Health["Type"] = {
      getClusterHealth: runCheck,
      latest: Effect.sync(() => Option.fromNullable(history[0])),
      history: Effect.sync(() => history),
      changes: Effect.map(PubSub.subscribe(changes), Stream.fromQueue),
      liveness: Effect.map(sharding.isShutdown, (shutdown) =>
        shutdown
          ? new Liveness({ alive: false, detail: `${self.id} is shutting down` })
          : new Liveness({
              alive: true,
              detail: `${self.id} runs (up ${Math.round((now() - self.startedAt) / 1000)} s)`
            })
      ),
      readiness: Effect.gen(function* () {
        const shutdown = yield* sharding.isShutdown
        const runners = yield* attempt(storage.getRunners, settings.storageTimeout)
        const quorum = yield* node.hasQuorum
        const own = runners.ok
          ? runners.value.find(([runner]) => Equal.equals(runner.address, self.runnerAddress))
          : undefined
        const checks = [
          new ProbeCheck({
            name: "running",
            ok: !shutdown,
            detail: shutdown ? "Sharding is shutting down" : "Sharding is running"
          }),
          new ProbeCheck({
            name: "storage",
            ok: runners.ok,
            detail: runners.ok ? `RunnerStorage.getRunners answered in ${runners.ms} ms` : runners.error
          }),
          new ProbeCheck({
            name: "runner",
            ok: own !== undefined && own[1],
            detail:
              own === undefined
                ? `runner ${self.runnerAddress.host}:${self.runnerAddress.port} is not registered in storage`
                : own[1]
                  ? `runner ${self.runnerAddress.host}:${self.runnerAddress.port} is registered and healthy`
                  : `runner ${self.runnerAddress.host}:${self.runnerAddress.port} is marked unhealthy (declared down by its peers)`
          }),
          new ProbeCheck({
            name: "quorum",
            ok: quorum,
            detail: quorum
              ? `${self.id} sees a majority of the cluster`
              : `${self.id} does not see a majority of the cluster`
          })
        ]
        return new Readiness({ ready: checks.every((c) => c.ok), checks })
      }),
      collectMetrics,
      settings
    }
    return service
  })
