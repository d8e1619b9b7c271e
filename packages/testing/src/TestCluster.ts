/**
 * TestCluster: N Foundation nodes in one process, built from the real layers, with an in-memory
 * network and in-memory storage, and faults you can inject: crash, graceful stop, restart,
 * partition, slow links.
 *
 * Like the engine's `TestRunner`, nothing is mocked. Each node is `Foundation.layerNode(options,
 * parts)` with your application layer on top; only the parts differ from production:
 * - `RpcServer.Protocol` (node endpoint and runner), `Runners.RpcClientProtocol` and `NodeTransport`
 *   over an in-memory network (`RpcServer.Protocol.make` / `RpcClient.Protocol.make`);
 * - `RunnerStorage`: shard leases in memory (`layerRunnerStorage`), the model of
 *   `SqlRunnerStorage` with `shardLockDisableAdvisory: true`;
 * - `NodeDirectory.layerMemory` and one shared `MessageStorage.MemoryDriver`, so persisted messages
 *   work across nodes, as with one SQL database.
 *
 * Node ids are `node-1` .. `node-N`; node `node-k` hosts runner `node-k:1` (so a
 * `RunnerAddress`'s `host` is the node id) and its Foundation endpoint at `node-k:2`.
 *
 * Time: a cluster made under the live clock (`it.live`, `it.scopedLive`) runs in real time. Made
 * under a `TestClock` (`it.effect`, `it.scoped`), every engine and detector loop sleeps on that
 * clock, so nothing happens until it moves: wait with `advance`, `run`, `eventually` and
 * `awaitConverged`, which drive the `TestClock` (`TestClock.adjust`) in 50 ms steps and give the
 * woken fibers scheduler turns between steps. An effect passed to `on` that waits on the cluster
 * (an entity call through a failover) must be wrapped in `run` under a `TestClock`.
 *
 * Not modelled: storage is reachable from every node even across a partition (as a database on
 * its own network would be), and a partition drops messages without ever failing a connection
 * (no TCP keepalive), so a request sent across it waits until its caller's timeout.
 */
import * as MessageStorage from "@effect/cluster/MessageStorage"
import { Runner } from "@effect/cluster/Runner"
import { RunnerAddress } from "@effect/cluster/RunnerAddress"
import type { RunnerStorage } from "@effect/cluster/RunnerStorage"
import * as Runners from "@effect/cluster/Runners"
import { Sharding } from "@effect/cluster/Sharding"
import * as ShardId from "@effect/cluster/ShardId"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as Snowflake from "@effect/cluster/Snowflake"
import * as RpcServer from "@effect/rpc/RpcServer"
import * as FailureDetector from "@foundation/core/FailureDetector"
import * as Foundation from "@foundation/core/Foundation"
import * as Node from "@foundation/core/Node"
import * as NodeDirectory from "@foundation/core/NodeDirectory"
import type { NodeDirectoryError } from "@foundation/core/NodeError"
import * as NodeFault from "@foundation/core/NodeFault"
import { NodeTransport } from "@foundation/core/NodeTransport"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as HashRing from "effect/HashRing"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Network from "./internal/network.js"
import * as MemoryRunnerStorage from "./internal/runnerStorage.js"
import * as Timeline from "./internal/timeline.js"

// -----------------------------------------------------------------------------
// Errors
// -----------------------------------------------------------------------------

/** The node id is not part of this cluster. `nodes` lists the ids that are. */
export class UnknownNode extends Schema.TaggedError<UnknownNode>()("UnknownNode", {
  nodeId: Schema.String,
  nodes: Schema.Array(Schema.String)
}) {
  get message(): string {
    return `"${this.nodeId}" is not a node of this TestCluster. Nodes: [${this.nodes.join(", ")}]`
  }
}

/** The operation needs the node in another state (for example `on` a crashed node, `restart` a running one). */
export class InvalidNodeState extends Schema.TaggedError<InvalidNodeState>()("InvalidNodeState", {
  nodeId: Schema.String,
  operation: Schema.String,
  state: Schema.Literal("running", "crashed", "stopped")
}) {
  get message(): string {
    return `Cannot ${this.operation} ${this.nodeId}: it is ${this.state}`
  }
}

/** A node's layers failed to build on `restart` (the application layer or the node directory failed). */
export class NodeStartFailed extends Schema.TaggedError<NodeStartFailed>()("NodeStartFailed", {
  nodeId: Schema.String,
  cause: Schema.Defect
}) {
  get message(): string {
    return `Node ${this.nodeId} failed to start: ${String(this.cause)}`
  }
}

/** `run` or `eventually` gave up. `lastFailure` is the last failure seen (`eventually`), pretty-printed. */
export class TimedOut extends Schema.TaggedError<TimedOut>()("TimedOut", {
  timeoutMillis: Schema.Number,
  lastFailure: Schema.optional(Schema.String)
}) {
  get message(): string {
    return `Timed out after ${this.timeoutMillis} ms${this.lastFailure ? `; last failure:\n${this.lastFailure}` : ""}`
  }
}

/** The cluster did not converge in time. `problems` says what was still missing. */
export class NotConverged extends Schema.TaggedError<NotConverged>()("NotConverged", {
  timeoutMillis: Schema.Number,
  problems: Schema.Array(Schema.String)
}) {
  get message(): string {
    return `Cluster did not converge within ${this.timeoutMillis} ms:\n${this.problems.join("\n")}`
  }
}

// -----------------------------------------------------------------------------
// Options and handle
// -----------------------------------------------------------------------------

/** The state of one node of the cluster. */
export type NodeState = "running" | "crashed" | "stopped"

/** Detector overrides, as accepted by `FailureDetector.layerConfig`. */
export type DetectorOverrides = Partial<{
  readonly [K in keyof FailureDetector.Settings]: Duration.DurationInput
}>

/** How to build the cluster. */
export interface Options<ROut, E> {
  /** how many nodes (`node-1` .. `node-N`) */
  readonly nodes: number
  /** the application (entities, singletons, Foundation components), built on every node */
  readonly layer?: Layer.Layer<ROut, E, Foundation.NodeServices> | undefined
  /** overrides of `Foundation.shardingDefaults`, the same on every node */
  readonly sharding?: Partial<ShardingConfig.ShardingConfig["Type"]> | undefined
  /** overrides of `FailureDetector.defaults` */
  readonly detector?: DetectorOverrides | undefined
}

/** A running test cluster. Every operation taking a node id fails with `UnknownNode` for a bad id. */
export interface Cluster<ROut = never> {
  /** The node ids, `node-1` .. `node-N`. */
  readonly nodes: ReadonlyArray<Node.NodeId>
  /** Whether the cluster runs on a `TestClock` (see the module doc). */
  readonly virtualTime: boolean
  /** The nodes currently running. */
  readonly running: Effect.Effect<ReadonlyArray<Node.NodeId>>
  /** One node's state. */
  readonly state: (id: string) => Effect.Effect<NodeState, UnknownNode>
  /**
   * Runs an effect with that node's services (`Sharding`, `Node.Node`, your layer's outputs, ...):
   * `Effect.provide(effect, context)` with the context its layers were built into. The effect runs
   * on the caller's fiber.
   */
  readonly on: <A, E, R>(
    id: string,
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | UnknownNode | InvalidNodeState, Exclude<R, Foundation.NodeServices | ROut>>
  /**
   * Kills a node abruptly: cuts it from storage and the directory (`NodeFault`), refuses its
   * endpoints and resets its connections in the network, then closes its scope. Nothing it does
   * while unwinding reaches the others: they see a dead process (connection refused).
   */
  readonly crash: (id: string) => Effect.Effect<void, UnknownNode | InvalidNodeState>
  /**
   * Stops a node gracefully: `Scope.close` on its scope, so the engine's finalizers run
   * (`RunnerStorage.unregister`, `RunnerStorage.releaseAll`) and the node unregisters from the
   * directory; peers see it leave (`NodeDown`, reason `left`).
   */
  readonly stop: (id: string) => Effect.Effect<void, UnknownNode | InvalidNodeState>
  /**
   * Starts a crashed or stopped node again with the same id and addresses: its layers are built
   * again (`Layer.buildWithScope`), so it is a new incarnation (new `startedAt`, empty entity state).
   */
  readonly restart: (id: string) => Effect.Effect<void, UnknownNode | InvalidNodeState | NodeStartFailed>
  /**
   * Drops every message between the two groups, both ways, until `heal`: requests across it are
   * never answered and `NodeTransport.probe` times out. Storage stays reachable from both sides.
   */
  readonly partition: (
    left: ReadonlyArray<string>,
    right: ReadonlyArray<string>
  ) => Effect.Effect<void, UnknownNode>
  /** Delays every delivery from `from` to `to` (one direction, FIFO kept; probes wait the round trip); `0` removes it. */
  readonly delay: (
    from: string,
    to: string,
    duration: Duration.DurationInput
  ) => Effect.Effect<void, UnknownNode>
  /** Removes every partition and delay. */
  readonly heal: Effect.Effect<void>
  /** Which node holds each shard lease (`group:id` to node id), read from the shared `RunnerStorage`. */
  readonly shardOwners: Effect.Effect<ReadonlyMap<string, Node.NodeId>>
  /**
   * Waits until every running node sees every running node up, and every shard is held by the node
   * the engine's hash ring assigns it to among the running nodes (`Sharding.hasShardId` on each).
   */
  readonly awaitConverged: (options?: {
    readonly timeout?: Duration.DurationInput | undefined
  }) => Effect.Effect<void, NotConverged>
  /** Lets cluster time pass: `Clock.sleep` when live, `TestClock.adjust` in 50 ms steps when virtual. */
  readonly advance: (duration: Duration.DurationInput) => Effect.Effect<void>
  /** Runs an effect while cluster time passes (required under a `TestClock`); `TimedOut` after `timeout` (10 s). */
  readonly run: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    options?: { readonly timeout?: Duration.DurationInput | undefined }
  ) => Effect.Effect<A, E | TimedOut, R>
  /**
   * Retries an effect, failures and defects alike (so `expect` inside works), every `interval`
   * (20 ms) until it succeeds; `TimedOut` with the last failure after `timeout` (10 s).
   */
  readonly eventually: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    options?: {
      readonly timeout?: Duration.DurationInput | undefined
      readonly interval?: Duration.DurationInput | undefined
    }
  ) => Effect.Effect<A, TimedOut, R>
}

/** The cluster as a service, for `TestCluster.layer` and `@effect/vitest`'s `layer(...)`. */
export class TestCluster extends Context.Tag("@foundation/testing/TestCluster")<TestCluster, Cluster>() {}

/** The runner address of a node: host = node id, port 1. */
export const runnerAddress = (id: string): RunnerAddress => new RunnerAddress({ host: id, port: 1 })

/** The Foundation endpoint of a node: host = node id, port 2. */
export const nodeAddress = (id: string): Node.NodeAddress => new Node.NodeAddress({ host: id, port: 2 })

/** The tables of an in-memory `RunnerStorage`, shared by the nodes of one cluster. */
export type RunnerStore = MemoryRunnerStorage.RunnerStore

/** Creates empty `RunnerStorage` tables. */
export const makeRunnerStore = (): RunnerStore => MemoryRunnerStorage.makeStore()

/**
 * An in-memory `RunnerStorage` with per-runner shard leases, for runners in one process.
 *
 * It answers the engine's `RunnerStorage` calls the way `SqlRunnerStorage` does in lease mode
 * (`shardLockDisableAdvisory: true`): `acquire` takes a shard only if it is free, expired (older
 * than `ShardingConfig.shardLockExpiration`) or already this runner's; `refresh` renews the
 * runner's heartbeat and returns the shards it still holds; `getRunners` lists runners whose
 * heartbeat is younger than the expiration; `register` returns a machine id that is stable per
 * address. Time comes from the `Clock`, so leases expire under a `TestClock` too. Use it instead of
 * the engine's `RunnerStorage.layerMemory`, which grants every shard to every runner.
 */
export const layerRunnerStorage = (
  store: RunnerStore
): Layer.Layer<RunnerStorage, never, ShardingConfig.ShardingConfig> => MemoryRunnerStorage.layer(store)

// -----------------------------------------------------------------------------
// Implementation
// -----------------------------------------------------------------------------

interface Incarnation<ROut> {
  readonly host: Network.Host
  readonly severance: NodeFault.Severance
  readonly scope: Scope.CloseableScope
  readonly context: Context.Context<Foundation.NodeServices | ROut>
  readonly node: Node.Node["Type"]
  readonly sharding: Sharding["Type"]
}

interface Slot<ROut> {
  readonly id: Node.NodeId
  readonly options: Foundation.NodeOptions
  state: NodeState
  incarnation: Incarnation<ROut> | undefined
}

const defaultTimeout = Duration.seconds(10)
const defaultInterval = Duration.millis(20)
const maxProblems = 10

/**
 * Builds and starts an N-node cluster in the current scope (closing the scope stops every node).
 *
 * Underneath, per node: `Foundation.layerNode({ id, address, runnerAddress, sharding }, parts)`
 * with `options.layer` provided on top and `FailureDetector.layerConfig(options.detector)`, built
 * with `Layer.buildWithScope` into a scope of its own. Before the first node starts, every runner is
 * registered in the shared `RunnerStorage` (`RunnerStorage.register(runner, true)`, the call each
 * node's `Sharding` makes when it starts), so all nodes compute the final hash ring on their first
 * pass: no node grabs every shard only to hand most of them over a second later. Nodes start one
 * after the other, in id order. Call `awaitConverged` before asserting on placement.
 */
export const make = <ROut = never, E = never>(
  options: Options<ROut, E>
): Effect.Effect<Cluster<ROut>, E | NodeDirectoryError, Scope.Scope> =>
  Effect.gen(function* () {
    if (!Number.isInteger(options.nodes) || options.nodes < 1) {
      return yield* Effect.dieMessage(
        `TestCluster.make: nodes must be a positive integer, got ${options.nodes}`
      )
    }
    const clusterScope = yield* Effect.scope
    const timeline = Timeline.make(yield* Effect.clock)
    const network = Network.make()
    const runnerStore = MemoryRunnerStorage.makeStore()
    const directoryStore = NodeDirectory.makeMemoryStore()
    const messages = yield* Effect.provide(MessageStorage.MemoryDriver, MessageStorage.MemoryDriver.Default)
    // Without a layer, ROut is `never`: the empty layer provides exactly that.
    const app = options.layer ?? (Layer.empty as unknown as Layer.Layer<ROut, E, Foundation.NodeServices>)
    const detector = FailureDetector.layerConfig(options.detector ?? {})

    const slots = Array.from({ length: options.nodes }, (_, index): Slot<ROut> => {
      const id = Node.nodeId(`node-${index + 1}`)
      return {
        id,
        options: {
          id,
          address: nodeAddress(id),
          runnerAddress: runnerAddress(id),
          sharding: options.sharding
        },
        state: "stopped",
        incarnation: undefined
      }
    })
    const ids = slots.map((slot) => slot.id)
    const config: ShardingConfig.ShardingConfig["Type"] = {
      ...ShardingConfig.defaults,
      ...Foundation.shardingConfigFor(slots[0].options)
    }
    const configLayer = (slot: Slot<ROut>) => ShardingConfig.layer(Foundation.shardingConfigFor(slot.options))
    const expiration = Duration.toMillis(config.shardLockExpiration)
    const groups = Array.from(ShardingConfig.shardGroupConfig(config).assigned)
    const nodeByRunner = new Map(
      slots.map((slot) => [MemoryRunnerStorage.addressKey(slot.options.runnerAddress), slot.id])
    )

    const slotOf = (id: string) =>
      Effect.suspend(() => {
        const slot = slots.find((slot) => slot.id === id)
        return slot ? Effect.succeed(slot) : Effect.fail(new UnknownNode({ nodeId: id, nodes: ids }))
      })

    const runningSlot = (id: string, operation: string) =>
      Effect.flatMap(slotOf(id), (slot) =>
        slot.state === "running" && slot.incarnation
          ? Effect.succeed([slot, slot.incarnation] as const)
          : Effect.fail(new InvalidNodeState({ nodeId: slot.id, operation, state: slot.state }))
      )

    const partsFor = (
      slot: Slot<ROut>,
      host: Network.Host,
      severance: NodeFault.Severance
    ): Foundation.NodeParts => ({
      nodeServer: Layer.scoped(RpcServer.Protocol, network.serve(host, slot.options.address.toString())),
      runnerServer: Layer.scoped(
        RpcServer.Protocol,
        network.serve(host, MemoryRunnerStorage.addressKey(slot.options.runnerAddress))
      ),
      runnerClient: Layer.succeed(Runners.RpcClientProtocol, (address) =>
        network.connect(host, MemoryRunnerStorage.addressKey(address))
      ),
      transport: Layer.succeed(
        NodeTransport,
        NodeTransport.of({
          makeClientProtocol: (address) => network.connect(host, address.toString()),
          probe: (address, timeout) => network.probe(host, address.toString(), timeout)
        })
      ),
      directory: NodeFault.severableDirectory(severance).pipe(
        Layer.provide(NodeDirectory.layerMemory(directoryStore))
      ),
      runnerStorage: NodeFault.severableRunnerStorage(severance).pipe(
        Layer.provide(MemoryRunnerStorage.layer(runnerStore)),
        Layer.provide(configLayer(slot))
      ),
      messageStorage: Layer.effect(
        MessageStorage.MessageStorage,
        MessageStorage.makeEncoded(messages.encoded)
      ).pipe(Layer.provide(Snowflake.layerGenerator))
    })

    const start = (slot: Slot<ROut>) =>
      Effect.gen(function* () {
        const host = network.attach(slot.id)
        const severance = NodeFault.makeSeverance()
        const layer = app.pipe(
          Layer.provideMerge(Foundation.layerNode(slot.options, partsFor(slot, host, severance))),
          Layer.provide(detector)
        )
        const scope = yield* Scope.fork(clusterScope, ExecutionStrategy.sequential)
        const context = yield* Layer.buildWithScope(layer, scope).pipe(
          Effect.onError(() => Effect.zipRight(network.crash(host), Scope.close(scope, Exit.void)))
        )
        slot.incarnation = {
          host,
          severance,
          scope,
          context,
          node: Context.get(context, Node.Node),
          sharding: Context.get(context, Sharding)
        }
        slot.state = "running"
      })

    const preRegister = Effect.gen(function* () {
      const storage = yield* MemoryRunnerStorage.make(runnerStore)
      for (const slot of slots) {
        yield* storage.register(
          new Runner({ address: slot.options.runnerAddress, groups, weight: config.runnerShardWeight }),
          true
        )
      }
    }).pipe(Effect.provideService(ShardingConfig.ShardingConfig, config), Effect.orDie)

    yield* preRegister
    for (const slot of slots) yield* start(slot)

    const liveNodes = () =>
      slots.flatMap((slot) =>
        slot.state === "running" && slot.incarnation ? [{ id: slot.id, ...slot.incarnation }] : []
      )

    const problems = Effect.gen(function* () {
      const found: Array<string> = []
      const live = liveNodes()
      for (const observer of live) {
        const members = yield* observer.node.members
        for (const other of live) {
          if (other === observer) continue
          const member = members.find((member) => member.info.id === other.id)
          if (!member || member.status !== "up" || member.info.startedAt !== other.node.self.startedAt) {
            found.push(`${observer.id} sees ${other.id} ${member ? member.status : "nowhere"}`)
          }
        }
      }
      if (live.length > 0) {
        const ring = HashRing.make<RunnerAddress>()
        for (const { node } of live) {
          HashRing.add(ring, node.self.runnerAddress, { weight: config.runnerShardWeight })
        }
        for (const group of groups) {
          const assignment = HashRing.getShards(ring, config.shardsPerGroup) ?? []
          assignment.forEach((address, index) => {
            const shard = ShardId.make(group, index + 1)
            const holders = live.filter(({ sharding }) => sharding.hasShardId(shard)).map(({ id }) => id)
            if (holders.length !== 1 || holders[0] !== address.host) {
              found.push(`shard ${shard} belongs to ${address.host}, held by [${holders.join(", ")}]`)
            }
          })
        }
      }
      return found
    })

    const run: Cluster<ROut>["run"] = (effect, runOptions) => {
      const timeout = runOptions?.timeout ?? defaultTimeout
      return timeline.run(effect, timeout, () => new TimedOut({ timeoutMillis: Duration.toMillis(timeout) }))
    }

    const eventually: Cluster<ROut>["eventually"] = (effect, eventuallyOptions) =>
      Effect.suspend(() => {
        const timeout = eventuallyOptions?.timeout ?? defaultTimeout
        const interval = eventuallyOptions?.interval ?? defaultInterval
        let lastFailure: Cause.Cause<unknown> | undefined
        const attempt: Effect.Effect<
          Effect.Effect.Success<typeof effect>,
          never,
          Effect.Effect.Context<typeof effect>
        > = Effect.flatMap(Effect.exit(effect), (exit) => {
          if (Exit.isSuccess(exit)) return Effect.succeed(exit.value)
          lastFailure = exit.cause
          return Effect.zipRight(timeline.sleep(interval), attempt)
        })
        return timeline.run(
          attempt,
          timeout,
          () =>
            new TimedOut({
              timeoutMillis: Duration.toMillis(timeout),
              ...(lastFailure ? { lastFailure: Cause.pretty(lastFailure) } : {})
            })
        )
      })

    const cluster: Cluster<ROut> = {
      nodes: ids,
      virtualTime: timeline.virtual,
      running: Effect.sync(() => liveNodes().map(({ id }) => id)),
      state: (id) => Effect.map(slotOf(id), (slot) => slot.state),
      on: (id, effect) =>
        Effect.flatMap(runningSlot(id, "run an effect on"), ([, incarnation]) =>
          Effect.provide(effect, incarnation.context)
        ),
      crash: (id) =>
        Effect.flatMap(runningSlot(id, "crash"), ([slot, incarnation]) => {
          incarnation.severance.severed = true
          slot.state = "crashed"
          slot.incarnation = undefined
          return Effect.zipRight(network.crash(incarnation.host), Scope.close(incarnation.scope, Exit.void))
        }),
      stop: (id) =>
        Effect.flatMap(runningSlot(id, "stop"), ([slot, incarnation]) =>
          Effect.zipRight(
            Scope.close(incarnation.scope, Exit.void),
            Effect.sync(() => {
              incarnation.host.alive = false
              slot.state = "stopped"
              slot.incarnation = undefined
            })
          )
        ),
      restart: (id) =>
        Effect.flatMap(
          slotOf(id),
          (slot): Effect.Effect<void, InvalidNodeState | NodeStartFailed> =>
            slot.state === "running"
              ? Effect.fail(
                  new InvalidNodeState({ nodeId: slot.id, operation: "restart", state: slot.state })
                )
              : Effect.mapError(start(slot), (cause) => new NodeStartFailed({ nodeId: slot.id, cause }))
        ),
      partition: (left, right) =>
        Effect.zipRight(
          Effect.forEach([...left, ...right], slotOf, { discard: true }),
          Effect.sync(() => network.partition(left, right))
        ),
      delay: (from, to, duration) =>
        Effect.zipRight(
          Effect.zipRight(slotOf(from), slotOf(to)),
          Effect.sync(() => network.delay(from, to, Duration.toMillis(duration)))
        ),
      heal: Effect.sync(() => network.heal()),
      shardOwners: Effect.sync(() => {
        const now = timeline.now()
        const owners = new Map<string, Node.NodeId>()
        for (const [shard, lock] of runnerStore.locks) {
          const node = nodeByRunner.get(lock.address)
          if (node && lock.acquiredAt >= now - expiration) owners.set(shard, node)
        }
        return owners
      }),
      awaitConverged: (convergeOptions) =>
        Effect.suspend(() => {
          const timeout = convergeOptions?.timeout ?? defaultTimeout
          let last: ReadonlyArray<string> = []
          const check: Effect.Effect<void> = Effect.flatMap(problems, (found) => {
            last = found
            return found.length === 0 ? Effect.void : Effect.zipRight(timeline.sleep(defaultInterval), check)
          })
          return timeline.run(
            check,
            timeout,
            () =>
              new NotConverged({
                timeoutMillis: Duration.toMillis(timeout),
                problems:
                  last.length > maxProblems
                    ? [...last.slice(0, maxProblems), `... and ${last.length - maxProblems} more`]
                    : last
              })
          )
        }),
      advance: timeline.advance,
      run,
      eventually
    }
    return cluster
  })

/**
 * The cluster as a layer: `make(options)`, then `awaitConverged()`, so tests start on a settled
 * cluster. Use it with `@effect/vitest`'s `layer(TestCluster.layer(...), { excludeTestServices:
 * true })` for a suite that shares one live cluster; faults injected by one test are seen by the
 * next, so prefer `make` per test for crashes and partitions.
 */
export const layer = <ROut = never, E = never>(
  options: Options<ROut, E>
): Layer.Layer<TestCluster, E | NodeDirectoryError | NotConverged> =>
  Layer.scoped(
    TestCluster,
    Effect.tap(make(options), (cluster) => cluster.awaitConverged())
  )
