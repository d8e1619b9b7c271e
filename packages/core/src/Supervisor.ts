/**
 * Supervised processes across the cluster: the analog of `Horde.DynamicSupervisor` plus the seed's
 * `ProcessManager`. A process is a spec (a name, a Schema for its arguments, the effect to run)
 * declared on every node, as a module is deployed on every BEAM node.
 *
 * - `startSingleton(spec, args, { name, restart })` runs one instance in the cluster; from any node;
 *   if the name already runs, it returns the running instance's ref;
 * - `startReplicated(spec, args, { name })` runs one instance per node, named `{name}@{node}`,
 *   including on nodes that join later;
 * - `lookupSingleton`, `stop`, `whichChildren`, `countChildren`.
 *
 * Guarantees:
 * - **at most one instance** of a singleton at any moment: every start is a compare-and-set of the
 *   row's `epoch` in `SupervisorStorage`; a running instance holds a lease renewed by its node while
 *   that node sees a majority, and is stopped before the lease runs out; another node takes over
 *   only once the owner is certainly dead (its endpoint refused a connection, it left, or it came
 *   back as a new incarnation) or its lease expired. An instance can check its epoch with
 *   `context.fence` before a side effect that must not happen twice;
 * - **failover**: when the host dies, the singleton runs again on a survivor with the same
 *   arguments, and its name points at the new instance in every node's `Registry`;
 * - **restart policies**: `permanent` (always restarted), `transient` (restarted after a failure),
 *   `temporary` (never restarted, not even after its node dies), with exponential backoff;
 * - **graceful leave**: a node that stops hands each singleton to a successor at once, passing the
 *   state returned by the instance's `onHandoff` hook to the new instance (`context.handoff`).
 *
 * What it does underneath: `SupervisorStorage` (`create`, `acquire`, `renew`, ...) for the rows,
 * `Registry.register(name, { process, spec, epoch })` for the names, node RPC
 * (`Node.clientFor(SupervisorRpcs)`) to start, stop and hand over on a chosen node, and `Node.events`
 * to react to `NodeDown` at once. Placement is Foundation's own, not the engine's shards: a
 * rendezvous hash of the name over the members seen up, so a singleton never moves when a node
 * joins and moves at once (no assignment round) when its node dies. Drop down to the engine's
 * `Singleton.make` for a singleton that should follow shard ownership, or to `SupervisorStorage` and
 * `Registry` to build another placement.
 */
import type { RunnerStorage } from "@effect/cluster/RunnerStorage"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/supervisor.js"
import { type Node, NodeAddress, NodeId } from "./Node.js"
import type { AlreadyRegistered, Entry, Registry, RegistryStorageError } from "./Registry.js"
import * as internalSettings from "./internal/settings.js"
import {
  type ProcessKind,
  RestartPolicy,
  type SupervisorStorage,
  type SupervisorStorageError
} from "./SupervisorStorage.js"

export { ProcessKind, ProcessRow, RestartPolicy, SupervisorStorageError } from "./SupervisorStorage.js"

/** What a running instance knows about itself. */
export interface ProcessContext<S = unknown> {
  /** the process name (for a replica, the base name; see `registryName`) */
  readonly name: string
  /** the name it is registered under in the `Registry` */
  readonly registryName: string
  readonly node: NodeId
  /** this start's fencing epoch (singletons; a replica counts its local starts) */
  readonly epoch: number
  /** restarts of this child on this node so far */
  readonly restarts: number
  /**
   * Checks against storage that this instance is still the current one, and fails with
   * `StaleEpoch` (stopping it) if another start superseded it. Call it before a side effect that
   * must not happen twice; for an external system, also write `epoch` with the effect and refuse
   * lower epochs there.
   */
  readonly fence: Effect.Effect<void, StaleEpoch>
  /** the state the previous instance handed over when its node left gracefully */
  readonly handoff: Option.Option<S>
  /** how to produce the state to hand over if this node leaves while the instance runs */
  readonly onHandoff: (state: Effect.Effect<S>) => Effect.Effect<void>
}

/**
 * A process spec: a name unique among specs, the Schema of its arguments (they are stored and sent
 * encoded), the effect to run, and optionally the Schema of the state handed over on a graceful move.
 */
export interface ProcessSpec<A, I = A, S = unknown, R = never> {
  readonly name: string
  readonly args: Schema.Schema<A, I>
  readonly handoff: Schema.Schema<S, any> | undefined
  readonly run: (args: A, context: ProcessContext<S>) => Effect.Effect<void, unknown, R>
}

/** Any spec, for lists of specs. */
export type AnySpec = ProcessSpec<any, any, any, any>

/** The services the specs of a list need. */
export type SpecContext<Specs extends ReadonlyArray<AnySpec>> = Exclude<
  Specs[number] extends ProcessSpec<any, any, any, infer R> ? R : never,
  Scope.Scope
>

/**
 * Declares a process spec. The effect runs in a scope of its own (closed when the instance stops),
 * with the services of the layer that built the Supervisor. Returning ends the instance normally;
 * a failure or a defect ends it abnormally (see `RestartPolicy`).
 */
export const spec = <A, I, R, S = unknown, SI = unknown>(
  name: string,
  options: {
    readonly args: Schema.Schema<A, I>
    readonly handoff?: Schema.Schema<S, SI> | undefined
    readonly run: (args: A, context: ProcessContext<S>) => Effect.Effect<void, unknown, R>
  }
): ProcessSpec<A, I, S, R> => ({ name, args: options.args, handoff: options.handoff, run: options.run })

/** A running instance: where it runs and with which epoch. Built from its `Registry` entry. */
export class ProcessRef extends Schema.Class<ProcessRef>("@foundation/ProcessRef")({
  name: Schema.String,
  registryName: Schema.String,
  kind: Schema.Literal("singleton", "replicated"),
  spec: Schema.String,
  node: NodeId,
  address: NodeAddress,
  epoch: Schema.Number,
  startedAt: Schema.Number
}) {}

/**
 * The ref of a `Registry` entry that a supervised process registered (its metadata says so), or
 * `undefined` for any other entry: `Supervisor.refOf(Option.getOrUndefined(yield* registry.lookup(name)))`.
 */
export const refOf: (entry: Entry | undefined) => ProcessRef | undefined = (entry) => internal.refOf(entry)

/** The registry name of the replica of `name` on `node`: `{name}@{node}`. */
export const replicaName = (name: string, node: string): string => `${name}@${node}`

/** The spec is not declared in this node's Supervisor. `known` lists the specs that are. */
export class UnknownProcessSpec extends Schema.TaggedError<UnknownProcessSpec>()("UnknownProcessSpec", {
  spec: Schema.String,
  known: Schema.Array(Schema.String)
}) {
  get message(): string {
    return `Process spec "${this.spec}" is not declared on this node. Declared: [${this.known.join(", ")}]. Add it to Supervisor.layer([...]) on every node`
  }
}

/** The arguments do not match the spec's Schema. */
export class InvalidArgs extends Schema.TaggedError<InvalidArgs>()("InvalidArgs", {
  spec: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `Invalid arguments for process spec "${this.spec}": ${this.reason}`
  }
}

/** No running process has this name. */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { name: Schema.String }) {
  get message(): string {
    return `No process named "${this.name}" is running. Registry.lookup("${this.name}") shows the raw entry, if any`
  }
}

/** The name is used by a process of the other kind (singleton vs replicated). */
export class KindMismatch extends Schema.TaggedError<KindMismatch>()("KindMismatch", {
  name: Schema.String,
  existing: Schema.Literal("singleton", "replicated")
}) {
  get message(): string {
    return `"${this.name}" is already a ${this.existing} process; stop it first or use another name`
  }
}

/** A process could not be started on `node`. */
export class StartFailed extends Schema.TaggedError<StartFailed>()("StartFailed", {
  name: Schema.String,
  node: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `Could not start "${this.name}" on ${this.node}: ${this.reason}`
  }
}

/** The instance was superseded by a later start (its epoch is no longer the stored one). */
export class StaleEpoch extends Schema.TaggedError<StaleEpoch>()("StaleEpoch", {
  name: Schema.String,
  epoch: Schema.Number,
  current: Schema.optional(Schema.Number)
}) {
  get message(): string {
    return this.current === undefined
      ? `"${this.name}" (epoch ${this.epoch}) was stopped`
      : `"${this.name}" epoch ${this.epoch} is stale: epoch ${this.current} superseded it`
  }
}

/** Start options. `name` defaults to the spec's name, `restart` to `permanent`. */
export interface StartOptions {
  readonly name?: string | undefined
  readonly restart?: RestartPolicy | undefined
}

/** One node's answer to `startReplicated`. */
export interface ReplicaResult {
  readonly node: NodeId
  readonly result: Either.Either<ProcessRef, StartFailed>
}

/** A child as `whichChildren` reports it: its row, and the instances running now. */
export interface Child {
  readonly name: string
  readonly kind: ProcessKind
  readonly spec: string
  readonly restart: RestartPolicy
  readonly epoch: number
  readonly running: ReadonlyArray<ProcessRef>
}

/** Counts, as `countChildren` reports them (the analog of `DynamicSupervisor.count_children`). */
export interface ChildCounts {
  /** distinct specs among the children */
  readonly specs: number
  /** children (singletons and replicated processes) */
  readonly children: number
  readonly singletons: number
  readonly replicated: number
  /** running instances (a replicated process counts once per node) */
  readonly active: number
}

/** The group every node serves for the Supervisor (start, adopt, stop, one replica). */
export class SupervisorRpcs extends RpcGroup.make(
  Rpc.make("SupervisorStart", {
    payload: { name: Schema.String },
    success: ProcessRef,
    error: StartFailed
  }),
  Rpc.make("SupervisorAdopt", {
    payload: { name: Schema.String, epoch: Schema.Number, handoff: Schema.optional(Schema.Unknown) },
    success: ProcessRef,
    error: StartFailed
  }),
  Rpc.make("SupervisorStop", { payload: { name: Schema.String } }),
  Rpc.make("SupervisorEnsureReplica", {
    payload: { name: Schema.String },
    success: ProcessRef,
    error: StartFailed
  })
) {}

/** Tunables. */
export interface Settings {
  /** how long a singleton's owner may run it without renewing its lease (2 s) */
  readonly leaseTimeout: Duration.Duration
  /** how often every node compares the stored children with what runs (1 s); NodeDown triggers it at once */
  readonly reconcileInterval: Duration.Duration
  /** the first restart delay, doubled on every restart (100 ms) */
  readonly backoffInitial: Duration.Duration
  /** the longest restart delay (5 s); a child that ran this long starts again from `backoffInitial` */
  readonly backoffMax: Duration.Duration
  /** how long `startSingleton` waits for a process another call is starting (10 s) */
  readonly startTimeout: Duration.Duration
  /** the node RPC lane of the Supervisor's calls (`supervisor`) */
  readonly lane: string
}

/** The defaults: lease 2 s, reconcile 1 s, backoff 100 ms to 5 s, start timeout 10 s, lane `supervisor`. */
export const defaults: Settings = {
  leaseTimeout: Duration.seconds(2),
  reconcileInterval: Duration.seconds(1),
  backoffInitial: Duration.millis(100),
  backoffMax: Duration.seconds(5),
  startTimeout: Duration.seconds(10),
  lane: "supervisor"
}

/** Overrides of `defaults`; durations as `Duration.DurationInput` ("2 seconds", 2000, ...). */
export type SettingsInput = internalSettings.Input<Settings>

/** `defaults` with `input` applied. */
export const resolveSettings = (input?: SettingsInput): Settings =>
  internalSettings.withDefaults(defaults, input)

/** What `startSingleton` can fail with. */
export type StartError =
  | UnknownProcessSpec
  | InvalidArgs
  | KindMismatch
  | AlreadyRegistered
  | StartFailed
  | SupervisorStorageError
  | RegistryStorageError

/** The Supervisor service. */
export class Supervisor extends Context.Tag("@foundation/core/Supervisor")<
  Supervisor,
  {
    /**
     * Starts `spec` as a singleton named `options.name` (default: the spec's name) on the node the
     * placement picks, and returns its ref once the name is visible on every live node. If that
     * name already runs (or is being started), returns the running instance's ref.
     */
    readonly startSingleton: <A, I, S, R>(
      spec: ProcessSpec<A, I, S, R>,
      args: A,
      options?: StartOptions
    ) => Effect.Effect<ProcessRef, StartError>
    /** The running instance of a singleton, from this node's registry view (no network). */
    readonly lookupSingleton: (name: string) => Effect.Effect<ProcessRef, NotFound>
    /**
     * Starts one instance of `spec` on every live node (and on nodes that join later), each
     * registered as `{name}@{node}`; returns each node's result.
     */
    readonly startReplicated: <A, I, S, R>(
      spec: ProcessSpec<A, I, S, R>,
      args: A,
      options?: StartOptions
    ) => Effect.Effect<
      ReadonlyArray<ReplicaResult>,
      UnknownProcessSpec | InvalidArgs | KindMismatch | SupervisorStorageError
    >
    /** Stops a singleton or every replica of a replicated process; returns once their names are gone everywhere. */
    readonly stop: (name: string) => Effect.Effect<void, NotFound | SupervisorStorageError>
    /** Every child of the cluster, with the instances running now. */
    readonly whichChildren: Effect.Effect<ReadonlyArray<Child>, SupervisorStorageError>
    /** Counts of the cluster's children. */
    readonly countChildren: Effect.Effect<ChildCounts, SupervisorStorageError>
    /** The instances running on this node. */
    readonly local: Effect.Effect<ReadonlyArray<ProcessRef>>
  }
>() {}

/**
 * Builds this node's Supervisor for `specs` (declare the same specs on every node): serves
 * `SupervisorRpcs`, follows membership, renews its leases and reconciles the stored children with
 * what runs here. Closing its scope is a graceful leave: singletons are handed over at once.
 */
export const make = <const Specs extends ReadonlyArray<AnySpec>>(
  specs: Specs,
  settings?: SettingsInput
): Effect.Effect<
  Supervisor["Type"],
  SupervisorStorageError,
  Node | Registry | SupervisorStorage | RunnerStorage | Scope.Scope | SpecContext<Specs>
> => internal.make(specs, resolveSettings(settings))

/** The Supervisor as a layer, on the `Registry` and `SupervisorStorage` you provide. */
export const layer = <const Specs extends ReadonlyArray<AnySpec>>(
  specs: Specs,
  settings?: SettingsInput
): Layer.Layer<
  Supervisor,
  SupervisorStorageError,
  Node | Registry | SupervisorStorage | RunnerStorage | SpecContext<Specs>
> => Layer.scoped(Supervisor, make(specs, settings))
