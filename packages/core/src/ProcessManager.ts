/**
 * The seed's `Foundation.ProcessManager`: a smart facade for distributed process patterns, leaky
 * by design. It combines a few calls of `Supervisor` and `Registry` into one, logs the raw calls
 * it makes at debug level (`Logger.withMinimumLogLevel(LogLevel.Debug)` to see them), and says in
 * each doc comment what to call instead when you need more.
 *
 * What it does NOT do: hide `Supervisor` or `Registry` (both stay in context), re-implement
 * anything, or add measurable overhead: when debug logging is off, each call costs one check of the
 * fiber's minimum log level on top of the raw call (`npm run bench -- registry` measures it).
 *
 * ```ts
 * // facade
 * const ref = yield* ProcessManager.startSingleton(MyWorker, args, { name: "worker1" })
 * // what it does
 * const supervisor = yield* Supervisor.Supervisor
 * const ref = yield* supervisor.startSingleton(MyWorker, args, { name: "worker1", restart: "permanent" })
 * ```
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as LogLevel from "effect/LogLevel"
import { Registry } from "./Registry.js"
import {
  type InvalidArgs,
  type KindMismatch,
  NotFound,
  type ProcessRef,
  type ProcessSpec,
  refOf,
  type ReplicaResult,
  type StartError,
  type StartOptions,
  Supervisor,
  type UnknownProcessSpec
} from "./Supervisor.js"
import type { SupervisorStorageError } from "./SupervisorStorage.js"

const prefix = "Foundation.ProcessManager"

/**
 * Whether this fiber prints debug messages: one fiber-ref read and one comparison of ordinals (not
 * `LogLevel.greaterThanEqual`, whose dual signature and `Order` cost more than the lookup it guards).
 */
const debugOn = (fiber: Fiber.RuntimeFiber<unknown, unknown>) =>
  fiber.getFiberRef(FiberRef.currentMinimumLogLevel).ordinal <= LogLevel.Debug.ordinal

/** Runs `logs` before `effect` only when debug messages would be printed. */
const debugging = <A, E, R>(
  logs: () => Effect.Effect<void>,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) => (debugOn(fiber) ? Effect.zipRight(logs(), effect) : effect))

/**
 * Starts a globally unique process (a singleton) and returns its ref; if the name already runs,
 * returns the running instance's ref (the seed's `{:error, {:already_started, pid}}` → `{:ok, pid}`).
 *
 * What it actually does:
 * ```ts
 * const supervisor = yield* Supervisor.Supervisor
 * yield* supervisor.startSingleton(spec, args, { name: options?.name ?? spec.name, restart: options?.restart ?? "permanent" })
 * // which stores the child (SupervisorStorage.create), places it (rendezvous over the members up),
 * // acquires its epoch there (SupervisorStorage.acquire) and registers the name
 * // (Registry.register(name, { process: "singleton", spec, epoch })) before returning
 * ```
 * Use the facade for the common case: one named singleton, started from anywhere. Use
 * `Supervisor.startSingleton` directly for the same thing without the debug logs, and
 * `SupervisorStorage` + `Registry` for another placement or a custom start protocol.
 */
export const startSingleton = <A, I, S, R>(
  spec: ProcessSpec<A, I, S, R>,
  args: A,
  options?: StartOptions
): Effect.Effect<ProcessRef, StartError, Supervisor> =>
  Effect.flatMap(Supervisor, (supervisor) => {
    const name = options?.name ?? spec.name
    const restart = options?.restart ?? "permanent"
    return debugging(
      () =>
        Effect.logDebug(
          `${prefix}: starting singleton "${name}" (spec ${spec.name}, restart ${restart})`,
          `  Supervisor.startSingleton(${spec.name}, args, { name: "${name}", restart: "${restart}" })`
        ),
      supervisor.startSingleton(spec, args, { name, restart }).pipe(
        Effect.tap((ref) =>
          debugging(
            () =>
              Effect.logDebug(
                `${prefix}: "${name}" runs on ${ref.node} (epoch ${ref.epoch})`,
                `  registered as Registry.lookup("${ref.registryName}")`
              ),
            Effect.void
          )
        ),
        Effect.tapError((error) =>
          Effect.logError(
            `${prefix}: could not start singleton "${name}": ${error.message}`,
            "You can call Supervisor.startSingleton, or SupervisorStorage and Registry, directly for more control"
          )
        )
      )
    )
  })

/**
 * Looks a singleton up by name, in this node's registry view (no network): its ref, or `NotFound`.
 *
 * Equivalent raw call:
 * ```ts
 * const registry = yield* Registry.Registry
 * const entry = yield* registry.lookup(name)            // Option<Registry.Entry>
 * const ref = Supervisor.refOf(Option.getOrUndefined(entry))
 * ref?.kind === "singleton" ? ref : new Supervisor.NotFound({ name })
 * ```
 * Use `Registry.lookup` directly for the whole entry (metadata, registration time) or for names
 * that are not processes, and `Registry.watch` to follow a name as it moves.
 */
export const lookupSingleton = (name: string): Effect.Effect<ProcessRef, NotFound, Registry> =>
  // one primitive: the registry is read from the fiber's context rather than through a flatMap
  Effect.withFiberRuntime<ProcessRef, NotFound>((fiber) => {
    const entry = Context.unsafeGet(fiber.currentContext as Context.Context<Registry>, Registry).unsafeLookup(
      name
    )
    const ref = refOf(entry)
    const result =
      ref !== undefined && ref.kind === "singleton"
        ? Effect.succeed(ref)
        : Effect.fail(new NotFound({ name }))
    if (!debugOn(fiber)) return result
    return Effect.zipRight(
      Effect.logDebug(
        `${prefix}: looking up singleton "${name}": Registry.lookup("${name}")`,
        entry === undefined
          ? `  not found; you can also call Registry.lookup("${name}") or Registry.watch("${name}")`
          : ref === undefined
            ? `  "${name}" is registered by node ${entry.node} but not as a process`
            : `  found on ${ref.node} (epoch ${ref.epoch})`
      ),
      result
    )
  })

/**
 * Starts one instance per node (named `{name}@{node}`), on every live node and on nodes that join
 * later, and returns each node's result.
 *
 * What it actually does:
 * ```ts
 * const supervisor = yield* Supervisor.Supervisor
 * yield* supervisor.startReplicated(spec, args, { name })
 * // which stores the child (SupervisorStorage.create) and calls SupervisorEnsureReplica on every
 * // member seen up (Node.clientFor(Supervisor.SupervisorRpcs)), concurrently
 * ```
 * Unlike the seed (`:rpc.call` to `Node.list()`), nodes that join later get their replica too:
 * every node reconciles the stored children with what runs on it. Use
 * `Supervisor.startReplicated` directly for the same thing without the debug logs.
 */
export const startReplicated = <A, I, S, R>(
  spec: ProcessSpec<A, I, S, R>,
  args: A,
  options?: StartOptions
): Effect.Effect<
  ReadonlyArray<ReplicaResult>,
  UnknownProcessSpec | InvalidArgs | KindMismatch | SupervisorStorageError,
  Supervisor
> =>
  Effect.flatMap(Supervisor, (supervisor) => {
    const name = options?.name ?? spec.name
    return debugging(
      () =>
        Effect.logDebug(
          `${prefix}: starting replicated "${name}" (spec ${spec.name}) on every node`,
          `  Supervisor.startReplicated(${spec.name}, args, { name: "${name}" })`
        ),
      supervisor
        .startReplicated(spec, args, { ...options, name })
        .pipe(
          Effect.tap((results) =>
            debugging(
              () =>
                Effect.logDebug(
                  `${prefix}: replicated "${name}": ` +
                    results
                      .map(({ node, result }) =>
                        result._tag === "Right" ? `${node} ok` : `${node} failed (${result.left.reason})`
                      )
                      .join(", ")
                ),
              Effect.void
            )
          )
        )
    )
  })
