/**
 * A Foundation node: an `@effect/cluster` runner plus Foundation's own node endpoint.
 *
 * This module holds a node's identity, the live membership view (up / suspect / down, with a stream
 * of NodeUp / NodeSuspect / NodeDown events, the analog of libcluster's `{:node_down, node}`), and the
 * typed node-to-node RPC group served by every node.
 *
 * What it does underneath:
 * - membership: the node list comes from `NodeDirectory` (a table beside the engine's
 *   `cluster_runners`); liveness comes from Foundation's failure detector, which pings every member
 *   over `NodeRpcs.Ping` and probes the socket when a call fails (see `FailureDetector`);
 * - node RPC: `RpcServer.layer(NodeRpcs)` on the node endpoint, `RpcClient.make(NodeRpcs)` per peer
 *   over `NodeTransport.makeClientProtocol`. Drop down to those calls for custom protocols.
 */
import { RunnerAddress } from "@effect/cluster/RunnerAddress"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcClient from "@effect/rpc/RpcClient"
import type { RpcClientError } from "@effect/rpc/RpcClientError"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcServer from "@effect/rpc/RpcServer"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Equal from "effect/Equal"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberMap from "effect/FiberMap"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { DetectorConfig } from "./internal/detectorConfig.js"
import { NodeDirectory } from "./NodeDirectory.js"
import { type NodeDirectoryError, NodeNotFound } from "./NodeError.js"
import { NodeTransport } from "./NodeTransport.js"
import * as FastRpc from "./internal/fastRpc.js"
import type { Link } from "./internal/fastRpc.js"

const defaultLane = "default"

/** A node's stable name, unique in the cluster (for example `node-1` or a pod name). */
export const NodeId = Schema.NonEmptyTrimmedString.pipe(Schema.brand("@foundation/NodeId"))
/** @see NodeId */
export type NodeId = typeof NodeId.Type

/** Where a node's Foundation endpoint listens. */
export class NodeAddress extends Schema.Class<NodeAddress>("@foundation/NodeAddress")({
  host: Schema.NonEmptyString,
  port: Schema.Int.pipe(Schema.between(0, 65535))
}) {
  toString(): string {
    return `${this.host}:${this.port}`
  }
}

/**
 * A node's identity: its id, its Foundation endpoint, and the address of the `@effect/cluster`
 * runner it hosts (the key of `cluster_runners` and of every shard lock it holds).
 */
export class NodeInfo extends Schema.Class<NodeInfo>("@foundation/NodeInfo")({
  id: NodeId,
  address: NodeAddress,
  runnerAddress: RunnerAddress,
  startedAt: Schema.Number
}) {}

/** up: heard within the heartbeat interval; suspect: missed beats; down: declared dead. */
export type MemberStatus = "up" | "suspect" | "down"

/**
 * Why a node was declared down:
 * - `connection-refused`: its endpoint refused a connection (the process is gone, e.g. SIGKILL);
 * - `heartbeat-timeout`: no heartbeat answered within `heartbeatTimeout` while this node saw a
 *   majority of the cluster (a frozen process, or the minority side of a partition);
 * - `left`: it left gracefully and removed itself from the directory.
 */
export type DownReason = "connection-refused" | "heartbeat-timeout" | "left"

/** A member as this node currently sees it. */
export interface Member {
  readonly info: NodeInfo
  readonly status: MemberStatus
  /** epoch ms of the last status change */
  readonly since: number
  /** epoch ms of the last heartbeat answer, 0 if none yet */
  readonly lastHeardAt: number
  /** round trip of the last heartbeat answer, in ms */
  readonly lastRttMs: number
  readonly downReason?: DownReason
}

/** A member became reachable (first heartbeat, or back after being suspect or down). */
export class NodeUp extends Data.TaggedClass("NodeUp")<{ readonly node: NodeInfo; readonly at: number }> {}
/** A member missed heartbeats; it is not declared down yet. */
export class NodeSuspect extends Data.TaggedClass("NodeSuspect")<{
  readonly node: NodeInfo
  readonly at: number
  readonly silentForMs: number
}> {}
/** A member was declared down: its runner is marked unhealthy and its shard leases are released. */
export class NodeDown extends Data.TaggedClass("NodeDown")<{
  readonly node: NodeInfo
  readonly at: number
  readonly reason: DownReason
}> {}
/** Every change of the membership view. */
export type MembershipEvent = NodeUp | NodeSuspect | NodeDown

/** The heartbeat reply. */
export class Pong extends Schema.Class<Pong>("@foundation/Pong")({
  node: NodeId,
  sentAt: Schema.Number,
  receivedAt: Schema.Number
}) {}

/**
 * The node-to-node RPC group, served by every node's endpoint.
 * - `Ping`: the failure detector's heartbeat;
 * - `Info`: the node's identity.
 */
export class NodeRpcs extends RpcGroup.make(
  Rpc.make("Ping", {
    payload: { from: NodeId, sentAt: Schema.Number },
    success: Pong
  }),
  Rpc.make("Info", { success: NodeInfo })
) {}

/** A typed client of one peer's node endpoint. */
export type NodeClient = RpcClient.RpcClient<RpcGroup.Rpcs<typeof NodeRpcs>, RpcClientError>

/**
 * The node service: identity, membership and node-to-node clients.
 */
export class Node extends Context.Tag("@foundation/core/Node")<
  Node,
  {
    /** This node's identity. */
    readonly self: NodeInfo
    /** Every known member, this node included, with its status. */
    readonly members: Effect.Effect<ReadonlyArray<Member>>
    /** One member by id. */
    readonly member: (id: NodeId) => Effect.Effect<Member, NodeNotFound>
    /** The member hosting a runner, if it is known. */
    readonly memberByRunner: (address: RunnerAddress) => Effect.Effect<Member | undefined>
    /** Membership changes from the moment of subscription (scoped subscription). */
    readonly events: Effect.Effect<Stream.Stream<MembershipEvent>, never, Scope.Scope>
    /** A typed `NodeRpcs` client for a member's node endpoint. Connections are cached per node. */
    readonly client: (id: NodeId) => Effect.Effect<NodeClient, NodeNotFound>
    /**
     * A typed client of any group served on the members' node endpoints (see `serve`). Calls to one
     * member share one connection per `lane` (default `"default"`): a separate lane is a separate
     * connection, so bulk traffic on one lane does not queue urgent calls on another.
     */
    readonly clientFor: <Rpcs extends Rpc.Any>(
      group: RpcGroup.RpcGroup<Rpcs>,
      options?: { readonly lane?: string | undefined }
    ) => (id: NodeId) => Effect.Effect<RpcClient.RpcClient<Rpcs, RpcClientError>, NodeNotFound>
    /**
     * Serves `group` on this node's endpoint, with the handlers in `handlers` (the context of
     * `group.toLayer(...)`), until the scope closes. Tags must be unique across the groups served.
     */
    readonly serve: <Rpcs extends Rpc.Any>(
      group: RpcGroup.RpcGroup<Rpcs>,
      handlers: Context.Context<Rpc.ToHandler<Rpcs>>
    ) => Effect.Effect<void, never, Scope.Scope>
    /** Whether this node currently sees a majority of the members it does not know to be dead. */
    readonly hasQuorum: Effect.Effect<boolean>
  }
>() {}

/** Builds a `NodeId` from a string, throwing on an empty one (use `Schema.decode(NodeId)` for input). */
export const nodeId = (id: string): NodeId => NodeId.make(id)

// -----------------------------------------------------------------------------
// Implementation
// -----------------------------------------------------------------------------

interface MemberState {
  info: NodeInfo
  status: MemberStatus
  since: number
  lastHeardAt: number
  lastRttMs: number
  downReason: DownReason | undefined
  /**
   * when this node started watching it (or its new incarnation): silence is measured from the later
   * of this and the last answer; moved forward by the time this node spent without a majority
   */
  watchedSince: number
  probing: boolean
  /** open connections to its endpoint, by lane */
  readonly links: Map<
    string,
    { readonly address: NodeAddress; readonly link: Link; readonly scope: Scope.CloseableScope }
  >
}

const toMember = (state: MemberState): Member => ({
  info: state.info,
  status: state.status,
  since: state.since,
  lastHeardAt: state.lastHeardAt,
  lastRttMs: state.lastRttMs,
  ...(state.downReason ? { downReason: state.downReason } : {})
})

/**
 * Builds the node service and serves `NodeRpcs` on the node endpoint.
 *
 * Underneath: registers `self` in `NodeDirectory` (and refreshes it), polls the directory every
 * `discoveryInterval`, and runs one heartbeat fiber per peer (`NodeRpcs.Ping` every
 * `heartbeatInterval`, answers awaited up to `heartbeatTimeout`, so a slow answer still counts).
 * A failed call triggers `NodeTransport.probe`: `refused` declares the peer down at once. Silence
 * beyond `heartbeatTimeout` declares it down only while this node sees a majority, so the minority
 * side of a partition never evicts the majority.
 */
export const make = (options: {
  readonly id: NodeId
  readonly address: NodeAddress
  readonly runnerAddress: RunnerAddress
}): Effect.Effect<
  Node["Type"],
  NodeDirectoryError,
  NodeTransport | NodeDirectory | RpcServer.Protocol | Scope.Scope
> =>
  Effect.gen(function* () {
    const config = yield* DetectorConfig
    const transport = yield* NodeTransport
    const directory = yield* NodeDirectory
    const nodeScope = yield* Effect.scope
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const self = new NodeInfo({
      id: options.id,
      address: options.address,
      runnerAddress: options.runnerAddress,
      startedAt: now()
    })
    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<MembershipEvent>(), PubSub.shutdown)
    const publish = (event: MembershipEvent) => void pubsub.unsafeOffer(event)
    const states = new Map<string, MemberState>()
    const heartbeats = yield* FiberMap.make<string>()
    const linkLock = Effect.unsafeMakeSemaphore(1)
    const endpoint = yield* FastRpc.serve(yield* RpcServer.Protocol)

    const selfState: MemberState = {
      info: self,
      status: "up",
      since: self.startedAt,
      lastHeardAt: self.startedAt,
      lastRttMs: 0,
      downReason: undefined,
      watchedSince: self.startedAt,
      probing: false,
      links: new Map()
    }
    states.set(self.id, selfState)

    const notFound = (id: string) => new NodeNotFound({ nodeId: id, members: Array.from(states.keys()) })

    const dropClient = (state: MemberState) =>
      Effect.suspend(() => {
        const open = Array.from(state.links.values())
        state.links.clear()
        return Effect.forEach(open, (cached) => Scope.close(cached.scope, Exit.void), { discard: true })
      })

    const openLink = (state: MemberState, lane: string): Effect.Effect<Link> =>
      linkLock.withPermits(1)(
        Effect.gen(function* () {
          const cached = state.links.get(lane)
          if (cached) {
            if (Equal.equals(cached.address, state.info.address)) return cached.link
            state.links.delete(lane)
            yield* Scope.close(cached.scope, Exit.void)
          }
          const scope = yield* Scope.fork(nodeScope, ExecutionStrategy.sequential)
          const address = state.info.address
          const link = yield* transport
            .makeClientProtocol(address)
            .pipe(Effect.flatMap(FastRpc.makeLink), Scope.extend(scope))
          state.links.set(lane, { address, link, scope })
          return link
        })
      )

    const linkOf = (state: MemberState, lane: string): Effect.Effect<Link> => {
      const cached = state.links.get(lane)
      return cached && Equal.equals(cached.address, state.info.address)
        ? Effect.succeed(cached.link)
        : openLink(state, lane)
    }

    const clientOf = (state: MemberState): Effect.Effect<NodeClient> =>
      Effect.map(linkOf(state, defaultLane), (link) => link.client(NodeRpcs))

    const quorum = (): boolean => {
      let voters = 0
      let up = 0
      for (const state of states.values()) {
        if (state.status === "down" && state.downReason !== "heartbeat-timeout") continue
        voters++
        if (state.status === "up") up++
      }
      return up * 2 > voters
    }

    const setStatus = (state: MemberState, status: MemberStatus, at: number, reason?: DownReason) => {
      if (state.status === status) return
      state.status = status
      state.since = at
      state.downReason = status === "down" ? reason : undefined
      if (status === "up") publish(new NodeUp({ node: state.info, at }))
      else if (status === "suspect")
        publish(new NodeSuspect({ node: state.info, at, silentForMs: at - lastSign(state) }))
      else publish(new NodeDown({ node: state.info, at, reason: reason ?? "heartbeat-timeout" }))
    }

    const lastSign = (state: MemberState) => Math.max(state.lastHeardAt, state.watchedSince)

    const declareDown = (state: MemberState, reason: DownReason) =>
      Effect.suspend(() => {
        if (state.status === "down") return Effect.void
        return Effect.zipRight(
          Effect.logInfo(`node ${state.info.id} is down (${reason})`),
          Effect.sync(() => setStatus(state, "down", now(), reason))
        ).pipe(Effect.zipRight(dropClient(state)))
      })

    // A node leaving gracefully unregisters before its endpoint closes, so a refusal from a node
    // that is no longer listed is a leave, seen before the next discovery poll would see it.
    const refusedReason = (state: MemberState): Effect.Effect<DownReason> =>
      directory.list.pipe(
        Effect.map((listed) =>
          listed.some((info) => info.id === state.info.id) ? "connection-refused" : "left"
        ),
        Effect.orElseSucceed((): DownReason => "connection-refused")
      )

    const onPingFailure = (state: MemberState) =>
      Effect.suspend(() => {
        if (state.probing || state.status === "down") return Effect.void
        state.probing = true
        return transport.probe(state.info.address, config.probeTimeout).pipe(
          Effect.flatMap((result) =>
            result === "refused" && states.get(state.info.id) === state
              ? Effect.flatMap(refusedReason(state), (reason) => declareDown(state, reason))
              : Effect.void
          ),
          Effect.ensuring(Effect.sync(() => (state.probing = false)))
        )
      })

    const ping = (state: MemberState) =>
      Effect.gen(function* () {
        const sentAt = now()
        const client = yield* clientOf(state)
        yield* client.Ping({ from: self.id, sentAt }).pipe(
          Effect.timeout(config.heartbeatTimeout),
          Effect.matchCauseEffect({
            onSuccess: () =>
              Effect.sync(() => {
                const at = now()
                if (states.get(state.info.id) !== state) return
                state.lastHeardAt = at
                state.lastRttMs = at - sentAt
                setStatus(state, "up", at)
              }),
            onFailure: (cause) =>
              Cause.isFailType(cause) && cause.error._tag === "TimeoutException"
                ? Effect.void
                : onPingFailure(state)
          })
        )
      })

    /**
     * When this node lost its majority (undefined while it holds one). Without a majority, silence
     * evicts nobody, so every peer across a partition stays silent for as long as it lasts; when
     * the majority comes back (the first peers answer after a heal), that time must not count
     * against the others, or they would be evicted at once, before their first answer could
     * arrive. So each silence clock is paused while the majority is lost: it resumes with what it
     * had counted before the loss (a peer already silent then, such as a frozen one, stays as
     * close to eviction), rather than restarting from zero, which would let a majority that
     * flaps keep a frozen peer from ever being evicted.
     */
    let quorumLostAt: number | undefined
    const checkQuorum = (at: number): boolean => {
      const held = quorum()
      if (!held) {
        quorumLostAt ??= at
      } else if (quorumLostAt !== undefined) {
        const paused = at - quorumLostAt
        for (const other of states.values()) {
          if (other !== selfState && other.status !== "down") {
            other.watchedSince = Math.min(lastSign(other) + paused, at)
          }
        }
        quorumLostAt = undefined
      }
      return held
    }

    const evaluate = (state: MemberState) =>
      Effect.suspend(() => {
        if (state.status === "down") return Effect.void
        const at = now()
        const held = checkQuorum(at)
        const silentFor = at - lastSign(state)
        if (silentFor > Duration.toMillis(config.heartbeatTimeout) && held) {
          return declareDown(state, "heartbeat-timeout")
        }
        if (silentFor > Duration.toMillis(config.suspectAfter) && state.status === "up") {
          setStatus(state, "suspect", at)
        }
        return Effect.void
      })

    const heartbeat = (state: MemberState) =>
      Effect.gen(function* () {
        const pings = yield* FiberSet.make()
        while (true) {
          yield* FiberSet.run(pings, ping(state))
          yield* evaluate(state)
          yield* Effect.sleep(config.heartbeatInterval)
        }
      }).pipe(Effect.scoped)

    const watch = (info: NodeInfo) => {
      const state: MemberState = {
        info,
        status: "suspect",
        since: now(),
        lastHeardAt: 0,
        lastRttMs: 0,
        downReason: undefined,
        watchedSince: now(),
        probing: false,
        links: new Map()
      }
      states.set(info.id, state)
      return FiberMap.run(heartbeats, info.id, heartbeat(state))
    }

    const forget = (state: MemberState) =>
      Effect.gen(function* () {
        states.delete(state.info.id)
        if (state.status !== "down") setStatus(state, "down", now(), "left")
        yield* FiberMap.remove(heartbeats, state.info.id)
        yield* dropClient(state)
      })

    const discover = Effect.gen(function* () {
      const listed = yield* directory.list
      const seen = new Set<string>([self.id])
      for (const info of listed) {
        if (info.id === self.id) continue
        seen.add(info.id)
        const state = states.get(info.id)
        if (!state) {
          yield* watch(info)
        } else if (state.info.startedAt !== info.startedAt || !Equal.equals(state.info, info)) {
          // a new incarnation of the node: same id, restarted
          state.info = info
          state.watchedSince = now()
          yield* dropClient(state)
        }
      }
      for (const state of Array.from(states.values())) {
        if (!seen.has(state.info.id)) yield* forget(state)
      }
    })

    yield* endpoint.add(
      NodeRpcs,
      yield* NodeRpcs.toHandlersContext({
        Ping: ({ sentAt }) =>
          Effect.map(
            Clock.currentTimeMillis,
            // the fields are already typed values: skip the constructor's validation on the heartbeat path
            (receivedAt) => new Pong({ node: self.id, sentAt, receivedAt }, true)
          ),
        Info: () => Effect.succeed(self)
      })
    )
    yield* directory.register(self)
    yield* Effect.addFinalizer(() => Effect.ignore(directory.unregister(self.id)))
    yield* directory.register(self).pipe(
      Effect.catchAll((error) => Effect.logWarning("could not refresh the node directory entry", error)),
      Effect.schedule(Schedule.spaced(config.directoryRefreshInterval)),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )
    // the directory's message says what failed; its stack says nothing an operator can act on
    const discoverOrWarn = Effect.catchAll(discover, (error) =>
      Effect.logWarning(`node discovery failed: ${error.message}`)
    )
    yield* discoverOrWarn
    yield* discoverOrWarn.pipe(
      Effect.schedule(Schedule.spaced(config.discoveryInterval)),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )

    return Node.of({
      self,
      members: Effect.sync(() => Array.from(states.values(), toMember)),
      member: (id) =>
        Effect.suspend(() => {
          const state = states.get(id)
          return state ? Effect.succeed(toMember(state)) : Effect.fail(notFound(id))
        }),
      memberByRunner: (address) =>
        Effect.sync(() => {
          for (const state of states.values()) {
            if (Equal.equals(state.info.runnerAddress, address)) return toMember(state)
          }
          return undefined
        }),
      events: Effect.map(PubSub.subscribe(pubsub), Stream.fromQueue),
      client: (id) =>
        Effect.suspend(() => {
          const state = states.get(id)
          return state ? clientOf(state) : Effect.fail(notFound(id))
        }),
      clientFor: (group, options) => {
        const lane = options?.lane ?? defaultLane
        return (id) =>
          Effect.suspend(() => {
            const state = states.get(id)
            return state
              ? Effect.map(linkOf(state, lane), (link) => link.client(group))
              : Effect.fail(notFound(id))
          })
      },
      serve: (group, handlers) => endpoint.add(group, handlers as Context.Context<never>),
      hasQuorum: Effect.sync(quorum)
    })
  })

/**
 * The node layer: the `Node` service, serving `NodeRpcs` (and every group added with `serve` or
 * `layerServe`) on the node endpoint. Needs the endpoint's `RpcServer.Protocol` (from the platform
 * package), a `NodeTransport` and a `NodeDirectory`.
 */
export const layer = (options: {
  readonly id: NodeId
  readonly address: NodeAddress
  readonly runnerAddress: RunnerAddress
}): Layer.Layer<Node, NodeDirectoryError, NodeTransport | NodeDirectory | RpcServer.Protocol> =>
  Layer.scoped(Node, make(options)).pipe(
    Layer.tap((context) => {
      const node = Context.get(context, Node)
      return Effect.logDebug(`node ${node.self.id} serving on ${node.self.address}`)
    })
  )

/**
 * Serves `group` on this node's endpoint, with handlers from `group.toLayer(...)`:
 * ```ts
 * Node.layerServe(Counters).pipe(Layer.provide(Counters.toLayer({ Get: ... })))
 * ```
 * Peers call it with `node.clientFor(Counters)(nodeId)`. The raw equivalent is
 * `RpcServer.layer(group)` on an endpoint of your own: that path runs `RpcMiddleware` and spans,
 * which this fast path does not (groups with middleware are refused).
 */
export const layerServe = <Rpcs extends Rpc.Any>(
  group: RpcGroup.RpcGroup<Rpcs>
): Layer.Layer<never, never, Node | Rpc.ToHandler<Rpcs>> =>
  Layer.scopedDiscard(
    Effect.flatMap(Node, (node) =>
      Effect.flatMap(Effect.context<Rpc.ToHandler<Rpcs>>(), (handlers) => node.serve(group, handlers))
    )
  )
