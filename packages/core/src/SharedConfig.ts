/**
 * Cluster-wide settings changed only with a majority: the seed's `Config.set_cluster_wide` (flow 3),
 * with the acknowledgements actually collected and counted (the seed's collect step returned a
 * fixed answer).
 *
 * `set(key, value)` is a two-phase change on the control lane (the connection Channels' `control`
 * channel uses, so it is never queued behind bulk data):
 * 1. **prepare**: `SharedConfigRpcs.Prepare` to every member not known down, carrying the key and a
 *    proposed version `(counter, node)` above every version this node has seen. A member accepts
 *    when the version is above everything it has committed or accepted for that key.
 * 2. **count**: as soon as a majority of the voting members accepted (this node included), the change
 *    is decided. Voters are the members not known dead: a member down because it stopped answering
 *    heartbeats still votes (it may be on the other side of a partition), one that refused
 *    connections or left does not (`Node.hasQuorum` counts the same way). Without a majority within
 *    `prepareTimeout` it fails with `NoQuorum`, and no node changed: the value only travels in phase 3.
 * 3. **commit**: `SharedConfigRpcs.Commit` with the value to every member not known down; each applies
 *    it if its version is higher than the one it holds. `set` returns once a majority applied it, or
 *    after `commitTimeout` (the change is decided; the members it did not reach get it by sync).
 *
 * Versions are monotonic per key on every node. Nodes converge with `SharedConfigRpcs.Sync` (every
 * entry both ways, the highest version wins) when a member comes up (after a restart or a healed
 * partition), every `repairInterval` with a member a commit did not reach, and every `syncInterval`.
 * State is in memory: a node that restarts starts empty and syncs.
 *
 * Drop down to `Node.clientFor(SharedConfigRpcs, { lane: "control" })` to drive the phases yourself,
 * or to an `@effect/cluster` entity with persisted messages for values that must survive a full
 * cluster restart.
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as Internal from "./internal/sharedConfig.js"
import type { Node, NodeId } from "./Node.js"

/** A typed setting: its name, its Schema (values cross nodes encoded with it) and its default. */
export interface Key<A, I = A> {
  readonly _tag: "SharedConfigKey"
  readonly name: string
  readonly schema: Schema.Schema<A, I>
  readonly default: A
}

/** Declares a setting: `SharedConfig.key("feature.checkout", Schema.Boolean, { default: false })`. */
export const key = <A, I>(
  name: string,
  schema: Schema.Schema<A, I>,
  options: { readonly default: A }
): Key<A, I> => ({
  _tag: "SharedConfigKey",
  name,
  schema,
  default: options.default
})

/**
 * A setting's value as this node holds it. `version` 0 is the default (never set); every change has
 * a higher version than the one before, on every node. `by` is the node whose `set` made the change.
 */
export interface Entry<A> {
  readonly key: string
  readonly value: A
  readonly version: number
  readonly by: NodeId | undefined
  /** when `by` decided it, epoch ms (0 for the default) */
  readonly at: number
}

/** A change this node applied: its own `set`, a commit from another node, or a sync. */
export interface Change<A> extends Entry<A> {
  /** the version this node held before */
  readonly previousVersion: number
}

/**
 * `set` did not get a majority: nothing changed on any node. The lists say who answered what;
 * retry when `Node.hasQuorum` is true again (for example after a partition heals).
 */
export class NoQuorum extends Schema.TaggedError<NoQuorum>()("NoQuorum", {
  key: Schema.String,
  /** members that accepted the proposal, this node included */
  accepted: Schema.Array(Schema.String),
  /** members that had seen a higher version (a concurrent `set`) */
  rejected: Schema.Array(Schema.String),
  /** members that did not answer within `prepareTimeout`, or are known down */
  unreachable: Schema.Array(Schema.String),
  voters: Schema.Number,
  required: Schema.Number
}) {
  get message(): string {
    return (
      `No majority to set ${JSON.stringify(this.key)}: ${this.accepted.length} of ${this.voters} voting members ` +
      `accepted (${this.required} needed); unreachable: ${this.unreachable.join(", ") || "none"}; ` +
      `rejected (saw a newer version): ${this.rejected.join(", ") || "none"}. No node changed. ` +
      `Retry when Node.hasQuorum is true.`
    )
  }
}

/** The value does not encode with its key's Schema. */
export class InvalidValue extends Schema.TaggedError<InvalidValue>()("InvalidValue", {
  key: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `Cannot set ${JSON.stringify(this.key)}: ${this.reason}`
  }
}

/** A committed entry as it crosses nodes: the value encoded with its key's Schema. */
export class StoredEntry extends Schema.Class<StoredEntry>("@foundation/SharedConfig/StoredEntry")({
  key: Schema.String,
  counter: Schema.Number,
  node: Schema.String,
  value: Schema.Unknown,
  at: Schema.Number
}) {}

/**
 * The node-to-node protocol of SharedConfig, served on every node running `SharedConfig.layer`
 * (called on the `control` lane):
 * - `Prepare`: phase 1; `accepted`, and the highest counter the member has seen for the key;
 * - `Commit`: phase 3; the member applies the entry if it is newer than its own;
 * - `Sync`: every entry the caller holds; the reply is every entry the callee holds (both merge).
 */
export class SharedConfigRpcs extends RpcGroup.make(
  Rpc.make("SharedConfig.Prepare", {
    payload: { key: Schema.String, counter: Schema.Number, node: Schema.String },
    success: Schema.Struct({ accepted: Schema.Boolean, counter: Schema.Number })
  }),
  Rpc.make("SharedConfig.Commit", { payload: StoredEntry }),
  Rpc.make("SharedConfig.Sync", {
    payload: { entries: Schema.Array(StoredEntry) },
    success: Schema.Struct({ entries: Schema.Array(StoredEntry) })
  })
) {}

/** How SharedConfig is tuned. */
export interface Settings {
  /** how long `set` waits for a majority to accept (default 1 s) */
  readonly prepareTimeout: Duration.Duration
  /** how long `set` waits for a majority to apply the commit (default 1 s; it succeeds either way) */
  readonly commitTimeout: Duration.Duration
  /** proposals tried when members saw a newer version, before `NoQuorum` (default 3) */
  readonly attempts: number
  /** how often every node syncs with every member (default 5 s) */
  readonly syncInterval: Duration.Duration
  /** how often a member a commit did not reach is synced, until it answers (default 500 ms) */
  readonly repairInterval: Duration.Duration
}

/** The default settings. */
export const defaults: Settings = {
  prepareTimeout: Duration.seconds(1),
  commitTimeout: Duration.seconds(1),
  attempts: 3,
  syncInterval: Duration.seconds(5),
  repairInterval: Duration.millis(500)
}

/** The SharedConfig service of one node. */
export class SharedConfig extends Context.Tag("@foundation/core/SharedConfig")<
  SharedConfig,
  {
    /**
     * Changes a setting on every node, if a majority of the voting members accepts (see the module
     * doc). Returns the entry it committed (a concurrent `set` with a higher version may replace it
     * right after); fails with `NoQuorum` (nothing changed anywhere) or `InvalidValue`.
     */
    readonly set: <A, I>(key: Key<A, I>, value: A) => Effect.Effect<Entry<A>, NoQuorum | InvalidValue>
    /** The value this node holds, or the key's default. A local read: no network. */
    readonly get: <A, I>(key: Key<A, I>) => Effect.Effect<A>
    /** The value with its version. */
    readonly entry: <A, I>(key: Key<A, I>) => Effect.Effect<Entry<A>>
    /** Every change this node applies from now on, with values as encoded (scoped subscription). */
    readonly changes: Effect.Effect<Stream.Stream<Change<unknown>>, never, Scope.Scope>
    /** The changes of one key, decoded with its Schema (scoped subscription). */
    readonly changesOf: <A, I>(key: Key<A, I>) => Effect.Effect<Stream.Stream<Change<A>>, never, Scope.Scope>
    /** Every entry this node holds, values as encoded. */
    readonly snapshot: Effect.Effect<ReadonlyArray<Entry<unknown>>>
  }
>() {}

/** Builds a node's SharedConfig and serves `SharedConfigRpcs` on its endpoint until the scope closes. */
export const make = (
  settings?: Partial<Settings>
): Effect.Effect<SharedConfig["Type"], never, Node | Scope.Scope> =>
  Internal.make({ ...defaults, ...settings })

/** The SharedConfig layer: one per node, on top of `Node.Node`. */
export const layer = (settings?: Partial<Settings>): Layer.Layer<SharedConfig, never, Node> =>
  Layer.scoped(SharedConfig, make(settings))

/** `SharedConfig.set` through the service in context. */
export const set = <A, I>(
  key: Key<A, I>,
  value: A
): Effect.Effect<Entry<A>, NoQuorum | InvalidValue, SharedConfig> =>
  Effect.flatMap(SharedConfig, (config) => config.set(key, value))

/** `SharedConfig.get` through the service in context. */
export const get = <A, I>(key: Key<A, I>): Effect.Effect<A, never, SharedConfig> =>
  Effect.flatMap(SharedConfig, (config) => config.get(key))

/** `SharedConfig.entry` through the service in context. */
export const entry = <A, I>(key: Key<A, I>): Effect.Effect<Entry<A>, never, SharedConfig> =>
  Effect.flatMap(SharedConfig, (config) => config.entry(key))

/** `SharedConfig.changesOf` through the service in context. */
export const changesOf = <A, I>(
  key: Key<A, I>
): Effect.Effect<Stream.Stream<Change<A>>, never, SharedConfig | Scope.Scope> =>
  Effect.flatMap(SharedConfig, (config) => config.changesOf(key))
