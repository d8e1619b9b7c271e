/**
 * A cluster-wide name registry, the analog of `Horde.Registry`: a name maps to one entry (the node
 * that registered it, its endpoint, metadata), registered by a scope and released with it.
 *
 * Guarantees:
 * - **one winner**: concurrent registrations of a name are decided by `RegistryStorage` (an
 *   insert-if-absent on a unique name); exactly one wins, the others fail with `AlreadyRegistered`
 *   carrying the winner's entry;
 * - **read-your-writes, cluster-wide**: `register` (and the release when its scope closes, and
 *   `updateMetadata`) returns only after every member this node sees up applied the change, so a
 *   `lookup` on any of them started after it returned sees it;
 * - **local lookups**: every node keeps the whole table in a `Map`; `lookup`, `select`, `match`,
 *   `count` and `keys` never leave the process;
 * - **no stale names**: when a node is declared down (`Node.events` `NodeDown`), every node drops its
 *   entries and its storage rows are deleted; a node that comes back after being declared down (a
 *   healed partition, a frozen process) claims its names again, if nobody took them meanwhile.
 *
 * What it does underneath:
 * - `register`: `RegistryStorage.claim` (one multi-row insert-if-absent per batch: concurrent calls
 *   of one node are coalesced), then `RegistryApply` to every live member over node RPC
 *   (`Node.clientFor(RegistryRpcs, { lane: "registry" })`), awaited up to `replicationTimeout`;
 * - a joining or restarting node reloads the table from `RegistryStorage.list` on first contact
 *   with each peer; so does a node that missed a push (pushes are numbered per sender) or that sees
 *   a member come back from down; a node told that a peer had declared it down (`RegistryReassert`)
 *   claims its names again.
 *
 * Drop down to `RegistryStorage` for the raw rows, or to `Node.clientFor(RegistryRpcs)` to feed a
 * node's view yourself.
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as internal from "./internal/registry.js"
import { Node, NodeAddress, NodeId } from "./Node.js"
import { RegistryStorage } from "./RegistryStorage.js"
import * as internalSettings from "./internal/settings.js"

/** Metadata attached to a name: a record of JSON values (it is stored as JSON and sent with msgpack). */
export const Metadata = Schema.Record({ key: Schema.String, value: Schema.Unknown })
/** @see Metadata */
export type Metadata = typeof Metadata.Type

/**
 * A registered name.
 * - `node`, `address`: the node that registered it and its Foundation endpoint
 *   (`Node.clientFor(group)(entry.node)` reaches it);
 * - `incarnation`: that node's `startedAt`, so entries of a restarted node's previous life are told apart;
 * - `claim`: a unique id of this registration (a later registration of the same name has another);
 * - `registeredAt`: epoch ms on the registering node.
 */
export class Entry extends Schema.Class<Entry>("@foundation/RegistryEntry")({
  name: Schema.String,
  node: NodeId,
  address: NodeAddress,
  incarnation: Schema.Number,
  claim: Schema.String,
  metadata: Metadata,
  registeredAt: Schema.Number
}) {}

/** The name is taken. `winner` is the registration that holds it. */
export class AlreadyRegistered extends Schema.TaggedError<AlreadyRegistered>()("AlreadyRegistered", {
  name: Schema.String,
  winner: Entry
}) {
  get message(): string {
    return `"${this.name}" is already registered by node ${this.winner.node} (claim ${this.winner.claim}). Look it up with Registry.lookup, or watch it with Registry.watch`
  }
}

/** This node holds no registration of the name (only the registering node can update or release it). */
export class NotRegistered extends Schema.TaggedError<NotRegistered>()("NotRegistered", {
  name: Schema.String,
  node: Schema.String,
  holder: Schema.optional(Schema.String)
}) {
  get message(): string {
    return this.holder
      ? `"${this.name}" is registered by node ${this.holder}, not by ${this.node}: only the registering node can change it`
      : `"${this.name}" is not registered by node ${this.node}`
  }
}

/** `RegistryStorage` failed. Raw equivalent: the `SqlClient` query on `${prefix}_registry`. */
export class RegistryStorageError extends Schema.TaggedError<RegistryStorageError>()("RegistryStorageError", {
  operation: Schema.String,
  cause: Schema.Defect
}) {
  get message(): string {
    return `Registry storage ${this.operation} failed: ${String(this.cause)}`
  }
}

/**
 * Entries registered or updated by the sender, column by column (entry `i` is `names[i]`,
 * `claims[i]`, ...). Every pushed entry belongs to the sender's own incarnation, so its node,
 * address and incarnation travel once per push rather than once per entry: the columns are arrays
 * of primitives, cheap to validate by Schema at the receiving node.
 */
export const PutColumns = Schema.Struct({
  names: Schema.Array(Schema.String),
  claims: Schema.Array(Schema.String),
  metadata: Schema.Array(Metadata),
  registeredAt: Schema.Array(Schema.Number)
})

/** Registrations (name and claim) the sender released. */
export const DropColumns = Schema.Struct({
  names: Schema.Array(Schema.String),
  claims: Schema.Array(Schema.String)
})

/**
 * The group every node serves for the registry:
 * - `RegistryApply` applies a batch of the sender's changes to the receiver's view, releases
 *   (`drop`) before registrations (`put`). `seq` numbers the pushes of one sender incarnation to
 *   one receiver, so a receiver that sees a gap (a push lost to a timeout) reloads the table from
 *   storage;
 * - `RegistryReassert` tells a node that the sender had declared it down (and deleted its names)
 *   and now sees it alive: the receiver claims its names again.
 */
export class RegistryRpcs extends RpcGroup.make(
  Rpc.make("RegistryApply", {
    payload: {
      from: NodeId,
      incarnation: Schema.Number,
      address: NodeAddress,
      seq: Schema.Number,
      put: PutColumns,
      drop: DropColumns
    }
  }),
  Rpc.make("RegistryReassert", { payload: { from: NodeId } })
) {}

/** Tunables of the registry. */
export interface Settings {
  /** how long `register` waits for a live member to apply a change before skipping it (2 s) */
  readonly replicationTimeout: Duration.Duration
  /** the most operations coalesced into one storage round and one push (2000) */
  readonly maxBatch: number
  /** the node RPC lane of the pushes, a connection apart from heartbeats (`registry`) */
  readonly lane: string
}

/** The defaults: replicationTimeout 2 s, maxBatch 2000, lane `registry`. */
export const defaults: Settings = {
  replicationTimeout: Duration.seconds(2),
  maxBatch: 2000,
  lane: "registry"
}

/** Overrides of `defaults`; durations as `Duration.DurationInput` ("2 seconds", 2000, ...). */
export type SettingsInput = internalSettings.Input<Settings>

/** `defaults` with `input` applied. */
export const resolveSettings = (input?: SettingsInput): Settings =>
  internalSettings.withDefaults(defaults, input)

/** The registry service. */
export class Registry extends Context.Tag("@foundation/core/Registry")<
  Registry,
  {
    /**
     * Registers `name` for the caller's scope: released (everywhere) when the scope closes or when
     * this node dies. Fails with `AlreadyRegistered` (carrying the winner) if the name is taken.
     * Returns once every live member can look it up.
     *
     * To register many names for one scope, provide the scope once, around the loop
     * (`Scope.extend(Effect.forEach(names, (n) => registry.register(n), { concurrency }), scope)`):
     * `Scope.extend` on every call costs each of the loop's fibers about 13 µs, more than the
     * registration itself.
     */
    readonly register: (
      name: string,
      metadata?: Metadata
    ) => Effect.Effect<Entry, AlreadyRegistered | RegistryStorageError, Scope.Scope>
    /** Releases this node's registration of `name` before its scope closes; does nothing if it holds none. */
    readonly unregister: (name: string) => Effect.Effect<void, RegistryStorageError>
    /** Replaces the metadata of a name this node registered; returns the new entry once replicated. */
    readonly updateMetadata: (
      name: string,
      metadata: Metadata
    ) => Effect.Effect<Entry, NotRegistered | RegistryStorageError>
    /** The entry of `name` in this node's view (no network). */
    readonly lookup: (name: string) => Effect.Effect<Option.Option<Entry>>
    /** The same, synchronously, for hot paths outside an Effect. */
    readonly unsafeLookup: (name: string) => Entry | undefined
    /** The entries satisfying `predicate`. */
    readonly select: (predicate: (entry: Entry) => boolean) => Effect.Effect<ReadonlyArray<Entry>>
    /** The entries whose metadata has every key of `pattern` with an equal value (deep equality of JSON). */
    readonly match: (pattern: Metadata) => Effect.Effect<ReadonlyArray<Entry>>
    /** How many names are registered. */
    readonly count: Effect.Effect<number>
    /** Every registered name. */
    readonly keys: Effect.Effect<ReadonlyArray<string>>
    /**
     * The entry of `name` now, then after every change (`None` while it is not registered),
     * as this node's view sees it.
     */
    readonly watch: (name: string) => Stream.Stream<Option.Option<Entry>>
  }
>() {}

/**
 * Builds the registry of this node: loads the table from `RegistryStorage`, serves `RegistryRpcs`,
 * and follows membership (`Node.events`).
 */
export const make = (
  settings?: SettingsInput
): Effect.Effect<Registry["Type"], RegistryStorageError, Node | RegistryStorage | Scope.Scope> =>
  internal.make(resolveSettings(settings))

/** The registry as a layer, on the `RegistryStorage` you provide (`layerMemory`, `layerSql`). */
export const layer = (
  settings?: SettingsInput
): Layer.Layer<Registry, RegistryStorageError, Node | RegistryStorage> =>
  Layer.scoped(Registry, make(settings))
