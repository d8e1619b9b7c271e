/**
 * The agent registry: every agent's registration (module, arguments, capabilities, protocols,
 * resources, metadata, restart policy), where it runs, its health and its load, replicated to every
 * node, so that queries (`find`, `leastLoaded`, `byNode`, `lookup`) read a local `Map`.
 *
 * Guarantees:
 * - **read-your-writes, cluster-wide**: `register`, `deregister` and `setHealth` return once every
 *   member this node sees up has applied the change (each awaited up to `replicationTimeout`);
 * - **convergence**: a node that comes up, or comes back (a healed partition, a restart), exchanges
 *   the whole table with each node it sees up; a push that failed is retried as a whole-table push.
 *   Concurrent writes of one agent are ordered by a Lamport clock (last writer wins), registration
 *   and location separately, so an agent's start never undoes a re-registration;
 * - **failures are visible**: an agent whose node is down (or restarted since it started there) is
 *   `starting` (restart `permanent`: it is being started on a survivor) or `unhealthy` (restart
 *   `temporary`), with the reason, on every node as soon as that node sees the node down;
 * - **load**: each node publishes the load of the agents it runs (their `status` handler's `load`,
 *   else their requests in flight) every `loadInterval`, when it changed.
 *
 * What it does underneath: node RPC (`Node.clientFor(AgentRegistryRpcs, { lane: "mabeam" })`):
 * `MabeamRegistryApply` pushes changes, coalesced per batch, `MabeamRegistrySnapshot` pulls a
 * node's table; `Node.events` drives the exchanges and the failure view. It keeps no storage: the
 * registrations live as long as one node holding them does (agents are in-memory entities, too).
 *
 * Why not `Registry` (core): a `Registry` name belongs to a scope on the node that registered it and
 * disappears with that node; an agent's registration must outlive its node (it is restarted
 * elsewhere or shown unhealthy) and is updated from any node. Use `Registry` for process names and
 * uniqueness guarantees (one winner per name); concurrent `register` calls of one agent id here are
 * resolved by last writer wins.
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { AgentId, AgentModule, RestartPolicy, Strategy } from "./Agent.js"
import { AgentSpec } from "./Agent.js"
import type {
  AgentAlreadyRegistered,
  AgentNotStarted,
  InvalidAgentSpec,
  UnknownAgent,
  UnknownModule
} from "./MabeamError.js"

/**
 * An agent's health:
 * - `healthy`: its entity runs on a live node;
 * - `starting`: registered and not started yet, or being started again after its node died or its
 *   shard moved;
 * - `unhealthy`: its node died and its restart policy is `temporary`, its module failed to build it,
 *   or `setHealth` said so.
 */
export const Health = Schema.Literal("healthy", "starting", "unhealthy")
/** @see Health */
export type Health = typeof Health.Type

/** An agent as this node's view sees it. */
export interface AgentInfo {
  readonly id: AgentId
  readonly module: string
  /** the arguments, encoded with the module's Schema */
  readonly args: unknown
  readonly capabilities: ReadonlyArray<string>
  readonly protocols: ReadonlyArray<string>
  readonly resources: Readonly<Record<string, number>>
  readonly metadata: Readonly<Record<string, unknown>>
  readonly strategy: Strategy
  readonly restart: RestartPolicy
  /** the node its entity last started on, if it started */
  readonly node: string | undefined
  readonly health: Health
  readonly healthReason: string | undefined
  /** the last load its node published (0 before any) */
  readonly load: number
  readonly registeredAt: number
  readonly registeredBy: string
}

/** A registration as replicated: the spec, its Lamport version and writer, and a tombstone flag. */
export const SpecRecord = Schema.Struct({
  spec: AgentSpec,
  version: Schema.Number,
  writer: Schema.String,
  deleted: Schema.Boolean,
  registeredAt: Schema.Number,
  registeredBy: Schema.String
})
/** @see SpecRecord */
export type SpecRecord = typeof SpecRecord.Type

/**
 * Where an agent runs, as replicated: the node and incarnation, the health and load reported there.
 * `stopped`: it stopped there because its shard moved to another node, where it starts again.
 */
export const LocationRecord = Schema.Struct({
  agent: Schema.String,
  node: Schema.String,
  incarnation: Schema.Number,
  health: Schema.Literal("healthy", "unhealthy", "stopped"),
  reason: Schema.optional(Schema.String),
  load: Schema.Number,
  version: Schema.Number,
  writer: Schema.String
})
/** @see LocationRecord */
export type LocationRecord = typeof LocationRecord.Type

/** A replicated change. */
export const Change = Schema.Union(
  Schema.TaggedStruct("Spec", SpecRecord.fields),
  Schema.TaggedStruct("Location", LocationRecord.fields)
)
/** @see Change */
export type Change = typeof Change.Type

/**
 * The group every node serves for the registry: `MabeamRegistryApply` applies changes to the
 * receiver's view (newer versions win); `MabeamRegistrySnapshot` returns the receiver's table.
 */
export class AgentRegistryRpcs extends RpcGroup.make(
  Rpc.make("MabeamRegistryApply", { payload: { changes: Schema.Array(Change) } }),
  Rpc.make("MabeamRegistrySnapshot", { success: Schema.Array(Change) })
) {}

/** A registration request. `module` is a declared module (or its name, with `args` already encoded). */
export interface Registration<A = unknown> {
  readonly id: AgentId
  readonly module: AgentModule<A> | string
  readonly args: A
  readonly capabilities?: ReadonlyArray<string> | undefined
  readonly protocols?: ReadonlyArray<string> | undefined
  readonly resources?: Readonly<Record<string, number>> | undefined
  readonly metadata?: Readonly<Record<string, unknown>> | undefined
  /** default `singleton` */
  readonly strategy?: Strategy | undefined
  /** default `permanent` */
  readonly restart?: RestartPolicy | undefined
  /** update an existing registration instead of failing with `AgentAlreadyRegistered` */
  readonly replace?: boolean | undefined
}

/** A query. Every given field must match; results are sorted by agent id. */
export interface Query {
  /** the agent has ALL of these */
  readonly capabilities?: ReadonlyArray<string> | undefined
  /** the agent speaks ALL of these */
  readonly protocols?: ReadonlyArray<string> | undefined
  /** its entity runs on this node now (not: last ran on a node that died or gave its shard away) */
  readonly node?: string | undefined
  /** which health states to include (default: `healthy` and `starting`) */
  readonly health?: ReadonlyArray<Health> | "any" | undefined
}

/** The registry service. */
export class AgentRegistry extends Context.Tag("@foundation/mabeam/AgentRegistry")<
  AgentRegistry,
  {
    /**
     * Registers an agent (it starts on its first call, or with `AgentCalls.start`). Fails if its
     * module is not declared on this node, its arguments do not fit the module's Schema, or it is
     * already registered (unless `replace`). Returns once every live member has it.
     */
    readonly register: <A>(
      registration: Registration<A>
    ) => Effect.Effect<AgentInfo, UnknownModule | InvalidAgentSpec | AgentAlreadyRegistered>
    /** Removes an agent everywhere; its running instance stops answering. False if it was not registered. */
    readonly deregister: (id: AgentId) => Effect.Effect<boolean>
    readonly lookup: (id: AgentId) => Effect.Effect<Option.Option<AgentInfo>>
    /** Every registered agent, sorted by id. */
    readonly list: Effect.Effect<ReadonlyArray<AgentInfo>>
    readonly find: (query: Query) => Effect.Effect<ReadonlyArray<AgentInfo>>
    /** The agents with ALL the capabilities (healthy or starting, unless `health` says otherwise). */
    readonly findByCapabilities: (
      capabilities: ReadonlyArray<string>,
      query?: Omit<Query, "capabilities">
    ) => Effect.Effect<ReadonlyArray<AgentInfo>>
    /** The `count` healthy agents of the query with the lowest load (ties by id). */
    readonly leastLoaded: (
      count: number,
      query?: Omit<Query, "health">
    ) => Effect.Effect<ReadonlyArray<AgentInfo>>
    /** The agents whose entity runs on `node` (any health). */
    readonly byNode: (node: string) => Effect.Effect<ReadonlyArray<AgentInfo>>
    /** Marks a started agent healthy or unhealthy (with a reason), everywhere. */
    readonly setHealth: (
      id: AgentId,
      health: "healthy" | "unhealthy",
      reason?: string
    ) => Effect.Effect<void, UnknownAgent | AgentNotStarted>
  }
>() {}
