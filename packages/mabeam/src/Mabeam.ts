/**
 * MABEAM on a Foundation node: the layer that runs agents, and the seed's facade
 * (`Foundation.MABEAM.ProcessManager`): `startCoordinationAgent`, `coordinateResourceAllocation`,
 * `coordinateConsensus`.
 *
 * Each facade function is a few calls, shown in its comment; call them yourself for more control:
 * ```ts
 * // Mabeam.coordinateResourceAllocation(agents, resources) is:
 * const variable = OrchestrationVariable.make({
 *   id: "resource_allocation", type: "auction", agents,
 *   coordinate: (agents) => Auction.sealedBid({ agents, resources, paymentRule: "second-price" }),
 *   constraints: { maxDuration: "30 seconds" }
 * })
 * yield* variables.register(variable)
 * yield* variables.run(variable)
 * ```
 */
import * as Entity from "@effect/cluster/Entity"
import type { Sharding } from "@effect/cluster/Sharding"
import { Node } from "@foundation/core/Node"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { AgentEntity, type AgentModule, type AgentReply, type RestartPolicy, type Strategy } from "./Agent.js"
import { AgentCallRpcs, AgentCalls } from "./AgentCalls.js"
import { type AgentInfo, AgentRegistry } from "./AgentRegistry.js"
import * as Auction from "./Auction.js"
import * as Consensus from "./Consensus.js"
import * as CallsInternal from "./internal/calls.js"
import * as HostInternal from "./internal/host.js"
import * as RegistryInternal from "./internal/registry.js"
import type {
  AgentAlreadyRegistered,
  AgentError,
  AgentNotStarted,
  InvalidAgentSpec,
  UnknownAgent,
  UnknownModule
} from "./MabeamError.js"
import * as OrchestrationVariable from "./OrchestrationVariable.js"

/** The tunables of the layer. */
export interface Settings {
  /** how long a registry change waits for each live member (2 s) */
  readonly replicationTimeout: Duration.Duration
  /** how often whole-table pushes to members a push missed are retried (1 s) */
  readonly resyncInterval: Duration.Duration
  /** how often each node publishes the loads of its agents (1 s) */
  readonly loadInterval: Duration.Duration
  /** how long the start of a dead node's agent on a survivor may take (30 s) */
  readonly restartTimeout: Duration.Duration
  /** the node-RPC lane of MABEAM's calls and replication, a connection apart from heartbeats (`mabeam`) */
  readonly lane: string
}

/** The defaults. */
export const defaults: Settings = {
  replicationTimeout: Duration.seconds(2),
  resyncInterval: Duration.seconds(1),
  loadInterval: Duration.seconds(1),
  restartTimeout: Duration.seconds(30),
  lane: "mabeam"
}

/** What `layer` takes: the modules (the same on every node) and overrides of `defaults`. */
export interface LayerOptions {
  readonly modules: ReadonlyArray<AgentModule>
  readonly replicationTimeout?: Duration.DurationInput | undefined
  readonly resyncInterval?: Duration.DurationInput | undefined
  readonly loadInterval?: Duration.DurationInput | undefined
  readonly restartTimeout?: Duration.DurationInput | undefined
  readonly lane?: string | undefined
  /** runs kept per orchestration variable (100) */
  readonly historyLimit?: number | undefined
}

/** The services MABEAM provides on a node. */
export type Services = AgentRegistry | AgentCalls | OrchestrationVariable.OrchestrationVariables

/**
 * MABEAM on this node; provide it on every node, over `Foundation.layerNode` (or in
 * `TestCluster.make({ layer })`). What it builds:
 * - `AgentEntity.toLayer(...)` (concurrency unbounded, `maxIdleTime` infinite): the engine places
 *   agents on nodes; an agent's entity builds its module's handlers when it starts and publishes its
 *   location;
 * - the `AgentRegistry` (replicated over `Node.clientFor(AgentRegistryRpcs)`), `AgentCalls`
 *   (serving `AgentCallRpcs` for batches from other nodes), `OrchestrationVariables`;
 * - on `NodeDown`, the first live node by id starts the dead node's `permanent` agents again.
 */
export const layer = (options: LayerOptions): Layer.Layer<Services, never, Sharding | Node> => {
  const settings: Settings = {
    replicationTimeout: Duration.decode(options.replicationTimeout ?? defaults.replicationTimeout),
    resyncInterval: Duration.decode(options.resyncInterval ?? defaults.resyncInterval),
    loadInterval: Duration.decode(options.loadInterval ?? defaults.loadInterval),
    restartTimeout: Duration.decode(options.restartTimeout ?? defaults.restartTimeout),
    lane: options.lane ?? defaults.lane
  }
  const core = Layer.scopedContext(
    Effect.gen(function* () {
      const node = yield* Node
      const modules = new Map<string, AgentModule>()
      for (const module of options.modules) {
        if (modules.has(module.name)) {
          return yield* Effect.dieMessage(
            `Two agent modules are named "${module.name}": module names must be unique`
          )
        }
        modules.set(module.name, module)
      }
      const registry = yield* RegistryInternal.make(modules, settings)
      const host = yield* HostInternal.make({
        node,
        registry,
        modules,
        clients: yield* AgentEntity.client,
        loadInterval: settings.loadInterval,
        restartTimeout: settings.restartTimeout
      })
      const calls = CallsInternal.make({ node, registry, host, lane: settings.lane })
      yield* node.serve(
        AgentCallRpcs,
        yield* AgentCallRpcs.toHandlersContext({
          MabeamAsk: ({ agents, request, timeoutMs }) => host.askLocal(agents, request, timeoutMs)
        })
      )
      return Context.make(AgentRegistry, registry.service).pipe(
        Context.add(AgentCalls, calls),
        Context.add(HostInternal.Host, host)
      )
    })
  )
  const entity = AgentEntity.toLayer(
    Effect.gen(function* () {
      const host = yield* HostInternal.Host
      const agent = (yield* Entity.CurrentAddress).entityId
      yield* host.activate(agent)
      const call = <A extends AgentReply>(request: Parameters<typeof host.call>[1]) =>
        host.call(agent, request) as Effect.Effect<A, AgentError>
      return AgentEntity.of({
        Bid: ({ payload }) => call({ _tag: "Bid", ...payload }),
        Vote: ({ payload }) => call({ _tag: "Vote", ...payload }),
        Offer: ({ payload }) => call({ _tag: "Offer", ...payload }),
        Respond: ({ payload }) => call({ _tag: "Respond", ...payload }),
        Status: () => call({ _tag: "Status" })
      })
    }),
    { concurrency: "unbounded", maxIdleTime: Duration.infinity }
  )
  const all = Layer.mergeAll(
    entity,
    OrchestrationVariable.layer({ historyLimit: options.historyLimit })
  ).pipe(Layer.provideMerge(core))
  return Layer.scopedContext(
    Effect.gen(function* () {
      const context = yield* Layer.build(all)
      // runs before the layers above are torn down: the entities then stop quietly
      yield* Effect.addFinalizer(() => Context.get(context, HostInternal.Host).stop)
      return Context.pick(AgentRegistry, AgentCalls, OrchestrationVariable.OrchestrationVariables)(context)
    })
  )
}

// -----------------------------------------------------------------------------
// The seed's facade
// -----------------------------------------------------------------------------

/** What `startCoordinationAgent` takes besides the module and its arguments. */
export interface StartOptions {
  /** the agent id (default: the module's name, as in the seed) */
  readonly name?: string | undefined
  readonly capabilities?: ReadonlyArray<string> | undefined
  readonly protocols?: ReadonlyArray<string> | undefined
  /** default `singleton` */
  readonly strategy?: Strategy | undefined
  readonly resources?: Readonly<Record<string, number>> | undefined
  readonly metadata?: Readonly<Record<string, unknown>> | undefined
  /** default `permanent` */
  readonly restart?: RestartPolicy | undefined
  /** how long the agent may take to start (default 10 s) */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * Registers an agent and starts it (the seed's `start_coordination_agent`). It is:
 * ```ts
 * yield* registry.register({ id: name ?? module.name, module, args, capabilities, protocols, strategy, resources })
 * yield* calls.start(id)          // AgentEntity.client(id).Status(): the engine starts it where its shard lives
 * return yield* registry.lookup(id)
 * ```
 * The returned info says which node it runs on. Drop down to `AgentRegistry.register` to register
 * without starting (it then starts on its first call).
 */
export const startCoordinationAgent = <A>(
  module: AgentModule<A>,
  args: A,
  options?: StartOptions
): Effect.Effect<
  AgentInfo,
  UnknownModule | InvalidAgentSpec | AgentAlreadyRegistered | AgentNotStarted | UnknownAgent,
  AgentRegistry | AgentCalls
> =>
  Effect.gen(function* () {
    const registry = yield* AgentRegistry
    const calls = yield* AgentCalls
    const id = options?.name ?? module.name
    const registered = yield* registry.register({
      id,
      module,
      args,
      capabilities: options?.capabilities,
      protocols: options?.protocols,
      strategy: options?.strategy,
      resources: options?.resources,
      metadata: options?.metadata,
      restart: options?.restart
    })
    yield* calls.start(id, { timeout: options?.timeout })
    return Option.getOrElse(yield* registry.lookup(id), () => registered)
  })

/**
 * Allocates `resources` to one of `agents` by a second-price sealed-bid auction, kept as the
 * orchestration variable `resource_allocation` (the seed's `coordinate_resource_allocation`). It is:
 * ```ts
 * const variable = OrchestrationVariable.make({
 *   id: "resource_allocation", type: "auction", agents,
 *   coordinate: (agents) => Auction.sealedBid({ agents, resources, paymentRule: "second-price", timeout: "5 seconds" }),
 *   constraints: { maxDuration: "30 seconds" }
 * })
 * yield* variables.register(variable)
 * return yield* variables.run(variable)
 * ```
 * Drop down to `Auction.run` for another auction type, a reserve, or no history.
 */
export const coordinateResourceAllocation = (
  agents: ReadonlyArray<string>,
  resources: unknown,
  options?: {
    readonly timeout?: Duration.DurationInput | undefined
    readonly reserve?: number | undefined
  }
): Effect.Effect<
  Auction.AuctionResult,
  Auction.AuctionError | OrchestrationVariable.ConstraintViolated | OrchestrationVariable.UnknownVariable,
  OrchestrationVariable.OrchestrationVariables | AgentCalls
> =>
  Effect.gen(function* () {
    const variables = yield* OrchestrationVariable.OrchestrationVariables
    const variable = OrchestrationVariable.make({
      id: "resource_allocation",
      type: "auction",
      agents,
      coordinate: (bidders) =>
        Auction.sealedBid({
          agents: bidders,
          resources,
          paymentRule: "second-price",
          reserve: options?.reserve,
          timeout: options?.timeout ?? "5 seconds"
        }),
      constraints: { maxDuration: "30 seconds" }
    })
    yield* variables.register(variable)
    return yield* variables.run(variable)
  })

/**
 * A majority vote on `proposal` in which every agent must cast a ballot (the seed's
 * `coordinate_consensus`: `consensus_type: :majority, timeout: 15_000, required_votes: length(agents)`).
 * It is `Consensus.run({ agents, proposal, rule: Consensus.majority, quorum: 1, timeout: "15 seconds" })`;
 * drop down to it for another rule or a lower quorum.
 */
export const coordinateConsensus = (
  agents: ReadonlyArray<string>,
  proposal: unknown
): Effect.Effect<Consensus.ConsensusResult, Consensus.ConsensusError, AgentCalls> =>
  Consensus.run({ agents, proposal, rule: Consensus.majority, quorum: 1, timeout: "15 seconds" })
