import { RunnerStorage } from "@effect/cluster/RunnerStorage"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberHandle from "effect/FiberHandle"
import * as Hash from "effect/Hash"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Member, NodeId } from "../Node.js"
import { Node } from "../Node.js"
import { AlreadyRegistered, type Entry, Registry } from "../Registry.js"
import type {
  AnySpec,
  Child as ChildInfo,
  ProcessContext,
  ReplicaResult,
  Settings,
  SpecContext,
  Supervisor
} from "../Supervisor.js"
import {
  InvalidArgs,
  KindMismatch,
  NotFound,
  ProcessRef,
  replicaName,
  StaleEpoch,
  StartFailed,
  SupervisorRpcs,
  UnknownProcessSpec
} from "../Supervisor.js"
import {
  type ProcessKind,
  ProcessRow,
  type RestartPolicy,
  SupervisorStorage,
  type SupervisorStorageError
} from "../SupervisorStorage.js"

/** A child running (or starting) on this node. */
interface LocalChild {
  readonly name: string
  readonly kind: ProcessKind
  readonly registryName: string
  readonly spec: AnySpec
  readonly args: unknown
  readonly restart: RestartPolicy
  readonly createdAt: number
  readonly handoff: Option.Option<unknown>
  readonly ready: Deferred.Deferred<ProcessRef, StartFailed>
  epoch: number
  /** when this node last acquired the epoch: a renewal that started earlier cannot know it */
  acquiredAt: number
  ref: ProcessRef | undefined
  fiber: Fiber.RuntimeFiber<void> | undefined
  /** set when the child is stopped from outside (stop, stale epoch, lease lost, leaving) */
  stopping: boolean
  handoffState: Effect.Effect<unknown> | undefined
}

/** The metadata a process registers its name with. */
interface ProcessMetadata {
  readonly process: ProcessKind
  readonly name: string
  readonly spec: string
  readonly epoch: number
  readonly startedAt: number
}

const isProcessMetadata = (metadata: Entry["metadata"]): boolean =>
  (metadata.process === "singleton" || metadata.process === "replicated") && typeof metadata.spec === "string"

/** refs already built, per entry (entries are immutable) */
const refs = new WeakMap<Entry, ProcessRef | null>()

/** The ref of a registry entry that a process registered, if it is one. */
export const refOf = (entry: Entry | undefined): ProcessRef | undefined => {
  if (!entry) return undefined
  const cached = refs.get(entry)
  if (cached !== undefined) return cached ?? undefined
  const ref = buildRef(entry)
  refs.set(entry, ref ?? null)
  return ref
}

const buildRef = (entry: Entry): ProcessRef | undefined => {
  if (!isProcessMetadata(entry.metadata)) return undefined
  const metadata = entry.metadata as unknown as ProcessMetadata
  return new ProcessRef(
    {
      name: metadata.name,
      registryName: entry.name,
      kind: metadata.process,
      spec: metadata.spec,
      node: entry.node,
      address: entry.address,
      epoch: metadata.epoch,
      startedAt: metadata.startedAt
    },
    true
  )
}

/** Rendezvous hashing: the candidate with the highest score for `name` hosts it. */
const rendezvous = (name: string, candidates: ReadonlyArray<string>): string | undefined => {
  let best: string | undefined
  let bestScore = -Infinity
  for (const candidate of candidates) {
    const score = Hash.string(`${candidate}\u0000${name}`)
    if (score > bestScore || (score === bestScore && best !== undefined && candidate < best)) {
      best = candidate
      bestScore = score
    }
  }
  return best
}

const replicaKey = (row: ProcessRow) => `${row.name}#${row.createdAt}`

/** The registry name under which a node's Supervisor announces the specs it declares. */
export const supervisorName = (node: string) => `@supervisor/${node}`

export const make = <const Specs extends ReadonlyArray<AnySpec>>(
  specs: Specs,
  settings: Settings
): Effect.Effect<
  Supervisor["Type"],
  SupervisorStorageError,
  Node | Registry | SupervisorStorage | RunnerStorage | Scope.Scope | SpecContext<Specs>
> =>
  Effect.gen(function* () {
    const node = yield* Node
    const registry = yield* Registry
    const storage = yield* SupervisorStorage
    const runnerStorage = yield* RunnerStorage
    const context = yield* Effect.context<SpecContext<Specs>>()
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const self = node.self
    const layerScope = yield* Effect.scope
    // children live in a scope of their own, closed first when this node leaves (see the last finalizer)
    const childrenScope = yield* Scope.fork(layerScope, ExecutionStrategy.parallel)

    const specsByName = new Map<string, AnySpec>(specs.map((spec) => [spec.name, spec]))
    const known = Array.from(specsByName.keys())
    const leaseMs = Duration.toMillis(settings.leaseTimeout)
    // the owner stops this long before its lease ends, and others wait this long after it ends
    const marginMs = Math.min(250, leaseMs / 4)
    const orphanGraceMs = Duration.toMillis(settings.reconcileInterval)

    const children = new Map<string, LocalChild>()
    /** replicated processes whose replica here ended for good (temporary, or transient that succeeded) */
    const finished = new Set<string>()
    /** since when a stored singleton has been without a live owner, as this node sees it */
    const orphanedSince = new Map<string, number>()
    const lock = yield* Effect.makeSemaphore(1)
    let leaving = false
    let lastRenewed = Number.NEGATIVE_INFINITY
    const reconciles = yield* Queue.sliding<void>(1)
    const requestReconcile = () => void reconciles.unsafeOffer(undefined)
    const deadline = yield* FiberHandle.make<void, never>()

    const failStart = (name: string, reason: string) => new StartFailed({ name, node: self.id, reason })
    const client = (id: string) => node.clientFor(SupervisorRpcs, { lane: settings.lane })(id as NodeId)

    const leaseValid = () => now() < lastRenewed + leaseMs - marginMs
    const canHost = Effect.map(node.hasQuorum, (quorum) => quorum && !leaving && leaseValid())
    /**
     * Which members can host a spec: each Supervisor registers `@supervisor/{node}` with the specs it
     * declares, so a node without a Supervisor (a client, an observer) or without that spec (a
     * rolling upgrade) is never chosen.
     */
    const declares = (id: string, spec: string) => {
      if (id === self.id) return specsByName.has(spec)
      const specs = registry.unsafeLookup(supervisorName(id))?.metadata.specs
      return Array.isArray(specs) && specs.includes(spec)
    }
    /** the members seen up that may host `spec`, this node included when it can host */
    const hosts = (members: ReadonlyArray<Member>, spec: string, hosting: boolean) =>
      members
        .filter(
          (member) =>
            member.status === "up" &&
            (member.info.id !== self.id || hosting) &&
            declares(member.info.id, spec)
        )
        .map((member) => member.info.id as string)
    const placements = (spec: string) =>
      Effect.gen(function* () {
        return hosts(yield* node.members, spec, yield* canHost)
      })

    // --- instances ---

    const fence = (child: LocalChild, epoch: number): Effect.Effect<void, StaleEpoch> =>
      storage.get(child.name).pipe(
        Effect.orElseSucceed(() => undefined),
        Effect.flatMap((row) => {
          if (row === undefined) return Effect.void
          const current = Option.getOrUndefined(row)
          if (child.kind === "replicated") {
            return current === undefined
              ? Effect.fail(new StaleEpoch({ name: child.name, epoch }))
              : Effect.void
          }
          if (
            current !== undefined &&
            current.epoch === epoch &&
            current.owner === self.id &&
            current.incarnation === self.startedAt
          ) {
            return Effect.void
          }
          child.stopping = true
          return Effect.fail(
            new StaleEpoch({ name: child.name, epoch, ...(current ? { current: current.epoch } : {}) })
          )
        })
      )

    const metadataOf = (child: LocalChild): ProcessMetadata => ({
      process: child.kind,
      name: child.name,
      spec: child.spec.name,
      epoch: child.epoch,
      startedAt: now()
    })

    /**
     * Registers the child's name for the child's scope. A holder left by the previous instance
     * (its node's NodeDown not yet processed by the registry, or its release still in flight) goes
     * away shortly: retry while this node holds the epoch.
     */
    const registerName = (child: LocalChild) =>
      Effect.suspend(() => registry.register(child.registryName, { ...metadataOf(child) })).pipe(
        Effect.tapError((error) =>
          error._tag === "AlreadyRegistered" &&
          error.winner.node === self.id &&
          refOf(error.winner) === undefined
            ? Effect.logWarning(
                `"${child.registryName}" is registered by something else on this node; waiting`
              )
            : Effect.void
        ),
        Effect.retry(
          Schedule.exponential(Duration.millis(10), 1.5).pipe(
            Schedule.union(Schedule.spaced(Duration.millis(500))),
            Schedule.whileInput(() => !child.stopping)
          )
        )
      )

    const runChild = (child: LocalChild): Effect.Effect<void> =>
      Effect.gen(function* () {
        const entry = yield* registerName(child).pipe(
          Effect.mapError((error) => failStart(child.name, `could not register its name: ${error.message}`))
        )
        child.ref = refOf(entry)
        yield* Deferred.succeed(child.ready, child.ref!)
        let restarts = 0
        let delay = Duration.toMillis(settings.backoffInitial)
        while (true) {
          const startedAt = now()
          const epoch = child.epoch
          const processContext: ProcessContext<unknown> = {
            name: child.name,
            registryName: child.registryName,
            node: self.id,
            epoch,
            restarts,
            fence: fence(child, epoch),
            handoff: restarts === 0 ? child.handoff : Option.none(),
            onHandoff: (state) => Effect.sync(() => void (child.handoffState = state))
          }
          const exit = yield* Effect.exit(
            Effect.scoped(child.spec.run(child.args, processContext)).pipe(
              Effect.provide(context)
            ) as Effect.Effect<void, unknown>
          )
          child.handoffState = undefined
          if (child.stopping) return
          const failed = Exit.isFailure(exit)
          if (failed)
            yield* Effect.logWarning(`process "${child.registryName}" (epoch ${epoch}) failed`, exit.cause)
          const restart = child.restart === "permanent" || (child.restart === "transient" && failed)
          if (!restart) {
            if (child.kind === "singleton") yield* Effect.ignore(storage.remove(child.name, child.epoch))
            else finished.add(`${child.name}#${child.createdAt}`)
            return
          }
          if (now() - startedAt >= Duration.toMillis(settings.backoffMax)) {
            delay = Duration.toMillis(settings.backoffInitial)
          }
          yield* Effect.sleep(Duration.millis(delay))
          delay = Math.min(delay * 2, Duration.toMillis(settings.backoffMax))
          if (child.stopping) return
          if (child.kind === "singleton") {
            const acquired = yield* storage
              .acquire(child.name, child.epoch, {
                node: self.id,
                incarnation: self.startedAt,
                leaseExpires: now() + leaseMs
              })
              .pipe(Effect.orElseSucceed(() => Option.none<ProcessRow>()))
            if (Option.isNone(acquired)) {
              yield* Effect.logInfo(
                `process "${child.name}" was taken over before its restart; not restarting here`
              )
              return
            }
            child.epoch = acquired.value.epoch
            // stamped once the write is done: a renewal that started before it cannot have seen it
            child.acquiredAt = now()
          } else {
            child.epoch++
          }
          restarts++
          const updated = yield* Effect.either(
            registry.updateMetadata(child.registryName, { ...metadataOf(child) })
          )
          if (Either.isRight(updated)) child.ref = refOf(updated.right)
        }
      }).pipe(
        Effect.catchAll((error) => Deferred.fail(child.ready, error)),
        Effect.scoped,
        Effect.ensuring(
          Effect.suspend(() => {
            if (children.get(child.name) === child) children.delete(child.name)
            return Deferred.fail(child.ready, failStart(child.name, "stopped before it was registered"))
          })
        ),
        Effect.asVoid
      )

    const stopChild = (child: LocalChild) =>
      Effect.suspend(() => {
        child.stopping = true
        return child.fiber ? Fiber.interrupt(child.fiber) : Effect.void
      }).pipe(Effect.asVoid)

    const decodeArgs = (spec: AnySpec, row: ProcessRow) =>
      Effect.try(() => JSON.parse(row.args) as unknown).pipe(
        Effect.flatMap(Schema.decodeUnknown(spec.args)),
        Effect.mapError((error) =>
          failStart(
            row.name,
            `its stored arguments do not decode with spec "${spec.name}": ${ParseResult.isParseError(error) ? error.message : String(error)}`
          )
        )
      )

    /**
     * Whether this node may take `row` over: nobody owns it, its owner is certainly dead (refused,
     * left, or a later incarnation runs), or its lease ran out.
     */
    const takeable = (row: ProcessRow, members: ReadonlyMap<string, Member>, at: number) => {
      if (row.owner === null) return true
      if (row.owner === self.id) return row.incarnation !== self.startedAt || !children.has(row.name)
      const member = members.get(row.owner)
      if (member) {
        if (member.info.startedAt > (row.incarnation ?? 0)) return true
        if (member.status === "down" && member.downReason !== "heartbeat-timeout") return true
      }
      return at > row.leaseExpires + marginMs
    }

    /** Starts the stored process `name` here (acquiring its epoch), or returns the child already here. */
    const startLocal = (
      name: string,
      adopt?: { readonly epoch: number; readonly handoff: unknown }
    ): Effect.Effect<LocalChild, StartFailed> =>
      lock
        .withPermits(1)(
          Effect.gen(function* () {
            const existing = children.get(name)
            if (existing && !existing.stopping) return existing
            if (leaving) return yield* failStart(name, "this node is leaving")
            const stored = yield* storage.get(name)
            if (Option.isNone(stored)) return yield* failStart(name, "it is not a stored process (stopped?)")
            const row = stored.value
            const spec = specsByName.get(row.spec)
            if (!spec) return yield* failStart(name, `spec "${row.spec}" is not declared here`)
            const args = yield* decodeArgs(spec, row)
            let epoch = 1
            let handoff = Option.none<unknown>()
            if (row.kind === "singleton") {
              if (adopt) {
                if (
                  row.owner !== self.id ||
                  row.incarnation !== self.startedAt ||
                  row.epoch !== adopt.epoch
                ) {
                  return yield* failStart(name, `the handed-over epoch ${adopt.epoch} is no longer current`)
                }
                epoch = row.epoch
                if (adopt.handoff !== undefined && spec.handoff) {
                  handoff = Option.getRight(Schema.decodeUnknownEither(spec.handoff)(adopt.handoff))
                }
              } else {
                const members = new Map(
                  (yield* node.members).map((member) => [member.info.id as string, member])
                )
                if (!takeable(row, members, now())) {
                  return yield* failStart(name, `it runs on ${row.owner} (epoch ${row.epoch})`)
                }
                const acquired = yield* storage.acquire(name, row.epoch, {
                  node: self.id,
                  incarnation: self.startedAt,
                  leaseExpires: now() + leaseMs
                })
                if (Option.isNone(acquired)) return yield* failStart(name, "another node started it first")
                epoch = acquired.value.epoch
              }
            } else if (finished.has(replicaKey(row))) {
              return yield* failStart(
                name,
                `its replica on ${self.id} ended and its policy is ${row.restart}`
              )
            }
            const child: LocalChild = {
              name,
              kind: row.kind,
              registryName: row.kind === "singleton" ? name : replicaName(name, self.id),
              spec,
              args,
              restart: row.restart,
              createdAt: row.createdAt,
              handoff,
              ready: Deferred.unsafeMake(Option.getOrThrow(Fiber.getCurrentFiber()).id()),
              epoch,
              // stamped once the acquire is done: a renewal that started before it cannot have seen it
              acquiredAt: now(),
              ref: undefined,
              fiber: undefined,
              stopping: false,
              handoffState: undefined
            }
            children.set(name, child)
            orphanedSince.delete(name)
            child.fiber = yield* Effect.forkIn(runChild(child), childrenScope)
            return child
          })
        )
        .pipe(
          Effect.catchTag("SupervisorStorageError", (error) => Effect.fail(failStart(name, error.message)))
        )

    const startAndAwait = (name: string, adopt?: { readonly epoch: number; readonly handoff: unknown }) =>
      startLocal(name, adopt).pipe(
        Effect.flatMap((child) => Deferred.await(child.ready)),
        Effect.timeoutFail({
          duration: settings.startTimeout,
          onTimeout: () => failStart(name, `not registered after ${Duration.format(settings.startTimeout)}`)
        })
      )

    const awaitRef = (name: string) =>
      registry.watch(name).pipe(
        Stream.filterMap((entry) => Option.flatMap(entry, (entry) => Option.fromNullable(refOf(entry)))),
        Stream.runHead,
        Effect.flatMap(
          Option.match({ onNone: () => Effect.fail(failStart(name, "no ref")), onSome: Effect.succeed })
        ),
        Effect.timeoutFail({
          duration: settings.startTimeout,
          onTimeout: () =>
            failStart(
              name,
              `it was being started elsewhere and is not running after ${Duration.format(settings.startTimeout)}`
            )
        })
      )

    // --- leases ---

    const suspendSingletons = Effect.suspend(() => {
      const singletons = Array.from(children.values()).filter((child) => child.kind === "singleton")
      if (singletons.length === 0) return Effect.void
      return Effect.zipRight(
        Effect.logWarning(
          `lease not renewed in time (no majority, or storage unreachable): stopping ${singletons.length} singleton(s) on ${self.id}`
        ),
        Effect.forEach(singletons, stopChild, { concurrency: "unbounded", discard: true })
      )
    })

    const renew = Effect.gen(function* () {
      if (!(yield* node.hasQuorum)) return
      const startedAt = now()
      const owned = yield* storage.renew(self.id, self.startedAt, startedAt + leaseMs)
      lastRenewed = startedAt
      yield* FiberHandle.run(
        deadline,
        Effect.sleep(Duration.millis(Math.max(0, startedAt + leaseMs - marginMs - now()))).pipe(
          Effect.zipRight(suspendSingletons)
        )
      )
      const epochs = new Map(owned.map((row) => [row.name, row.epoch]))
      for (const child of children.values()) {
        if (child.kind !== "singleton" || child.stopping || child.acquiredAt >= startedAt) continue
        if (epochs.get(child.name) !== child.epoch) {
          yield* Effect.logWarning(
            `process "${child.name}" (epoch ${child.epoch}) was taken over elsewhere; stopping it here`
          )
          yield* Effect.forkIn(stopChild(child), childrenScope)
        }
      }
    })

    // --- reconciliation ---

    const reconcile = Effect.gen(function* () {
      const rows = yield* storage.list
      const memberList = yield* node.members
      const members = new Map(memberList.map((member) => [member.info.id as string, member]))
      const hosting = yield* canHost
      const at = now()
      const present = new Set<string>()
      for (const row of rows) {
        present.add(row.name)
        const running = children.get(row.name)
        if (running && !running.stopping) continue
        if (row.kind === "replicated") {
          if (!leaving && !finished.has(replicaKey(row))) yield* Effect.ignore(startLocal(row.name))
          continue
        }
        if (!takeable(row, members, at)) {
          orphanedSince.delete(row.name)
          continue
        }
        if (row.restart === "temporary" && row.owner !== null && row.owner !== self.id) {
          // a temporary process is never restarted, not even after its node died
          yield* Effect.ignore(storage.remove(row.name, row.epoch))
          continue
        }
        if (!hosting) continue
        const mine = row.owner === self.id && row.incarnation === self.startedAt
        const since = orphanedSince.get(row.name) ?? at
        orphanedSince.set(row.name, since)
        if (
          mine ||
          rendezvous(row.name, hosts(memberList, row.spec, hosting)) === self.id ||
          at - since > orphanGraceMs
        ) {
          yield* Effect.ignore(startLocal(row.name))
        }
      }
      for (const name of orphanedSince.keys()) if (!present.has(name)) orphanedSince.delete(name)
      for (const child of Array.from(children.values())) {
        if (!present.has(child.name) && !child.stopping) yield* Effect.forkIn(stopChild(child), childrenScope)
      }
    })

    // --- graceful leave ---

    /** Successors in the order the placement prefers them for `name`. */
    const preference = (name: string, members: ReadonlyArray<Member>) => {
      const left = [...members]
      const ordered: Array<Member> = []
      while (left.length > 0) {
        const next = rendezvous(
          name,
          left.map((member) => member.info.id)
        )
        const index = left.findIndex((member) => member.info.id === next)
        ordered.push(left[index])
        left.splice(index, 1)
      }
      return ordered
    }

    /**
     * Graceful leave of one child: the handoff state is read, the instance stops (its name is
     * released everywhere), then the row moves to a successor (a compare-and-set on the epoch) which
     * adopts it with that state. A successor that does not answer gets the row released again and
     * the next one is tried; with none left, the row stays unowned and the others' reconciliation
     * starts it.
     */
    const handOver = (child: LocalChild, successors: ReadonlyArray<Member>) =>
      Effect.gen(function* () {
        let handoff: unknown = undefined
        if (child.handoffState && child.spec.handoff) {
          const state = yield* child.handoffState.pipe(Effect.timeout("1 second"), Effect.option)
          if (Option.isSome(state)) {
            handoff = Option.getOrUndefined(
              Either.getRight(Schema.encodeUnknownEither(child.spec.handoff)(state.value))
            )
          }
        }
        let epoch = child.epoch
        yield* stopChild(child)
        if (child.kind !== "singleton") return
        if (child.restart === "temporary") return yield* Effect.ignore(storage.remove(child.name, epoch))
        for (const successor of preference(child.name, successors)) {
          const moved = yield* storage.acquire(child.name, epoch, {
            node: successor.info.id,
            incarnation: successor.info.startedAt,
            leaseExpires: now() + leaseMs
          })
          if (Option.isNone(moved)) return
          epoch = moved.value.epoch
          const adopted = yield* client(successor.info.id).pipe(
            Effect.flatMap((peer) => peer.SupervisorAdopt({ name: child.name, epoch, handoff })),
            Effect.timeout(settings.startTimeout),
            Effect.either
          )
          if (Either.isRight(adopted)) {
            return yield* Effect.logInfo(
              `handed "${child.name}" over to ${adopted.right.node} (epoch ${epoch})`
            )
          }
          yield* storage.release(child.name, epoch)
        }
        yield* storage.release(child.name, epoch)
      }).pipe(
        Effect.catchAllCause((cause) =>
          Effect.logWarning(`could not hand "${child.name}" over; another node will take it`, cause)
        )
      )

    // --- serving and loops ---

    // a previous incarnation's announcement goes away with its NodeDown: retry until it does
    // (in a scope of its own: a finalizer added to the layer's scope later would run before leaving)
    const announcement = yield* Scope.fork(layerScope, ExecutionStrategy.sequential)
    yield* registry
      .register(supervisorName(self.id), { supervisor: self.id, specs: known })
      .pipe(
        Effect.retry(Schedule.spaced(Duration.millis(100))),
        Effect.ignore,
        Scope.extend(announcement),
        Effect.forkScoped
      )
    yield* node.serve(
      SupervisorRpcs,
      yield* SupervisorRpcs.toHandlersContext({
        SupervisorStart: ({ name }) => startAndAwait(name),
        SupervisorAdopt: ({ epoch, handoff, name }) => startAndAwait(name, { epoch, handoff }),
        SupervisorStop: ({ name }) =>
          Effect.suspend(() => {
            const child = children.get(name)
            return child ? stopChild(child) : Effect.void
          }),
        SupervisorEnsureReplica: ({ name }) => startAndAwait(name)
      })
    )

    const events = yield* node.events
    yield* events.pipe(
      Stream.runForEach((event) =>
        Effect.sync(() => {
          if (event._tag !== "NodeSuspect") requestReconcile()
        })
      ),
      Effect.forkScoped
    )
    yield* renew.pipe(Effect.catchAll((error) => Effect.logWarning("lease renewal failed", error)))
    yield* renew.pipe(
      Effect.catchAll((error) => Effect.logWarning("lease renewal failed", error)),
      Effect.schedule(Schedule.spaced(Duration.millis(Math.max(10, leaseMs / 4)))),
      Effect.forever,
      Effect.forkScoped
    )
    yield* reconcile.pipe(Effect.catchAll((error) => Effect.logWarning("reconciliation failed", error)))
    yield* Queue.take(reconciles).pipe(
      Effect.zipRight(reconcile),
      Effect.catchAll((error) => Effect.logWarning("reconciliation failed", error)),
      Effect.forever,
      Effect.forkScoped
    )
    yield* Effect.sync(requestReconcile).pipe(
      Effect.schedule(Schedule.spaced(settings.reconcileInterval)),
      Effect.forever,
      Effect.forkScoped
    )

    // --- the API ---

    const validate = (
      spec: AnySpec,
      args: unknown
    ): Effect.Effect<string, UnknownProcessSpec | InvalidArgs> =>
      Effect.gen(function* () {
        if (!specsByName.has(spec.name)) return yield* new UnknownProcessSpec({ spec: spec.name, known })
        const encoded = yield* Schema.encodeUnknown(spec.args)(args).pipe(
          Effect.mapError((error) => new InvalidArgs({ spec: spec.name, reason: error.message }))
        )
        return JSON.stringify(encoded)
      })

    const newRow = (name: string, kind: ProcessKind, spec: string, args: string, restart: RestartPolicy) =>
      new ProcessRow({
        name,
        kind,
        spec,
        args,
        restart,
        epoch: 0,
        owner: null,
        incarnation: null,
        leaseExpires: 0,
        createdAt: now()
      })

    const lookupSingleton = (name: string) =>
      Effect.suspend(() => {
        const ref = refOf(registry.unsafeLookup(name))
        return ref && ref.kind === "singleton" ? Effect.succeed(ref) : Effect.fail(new NotFound({ name }))
      })

    const supervisor: Supervisor["Type"] = {
      startSingleton: (spec, args, options) =>
        Effect.gen(function* () {
          const name = options?.name ?? spec.name
          const encoded = yield* validate(spec, args)
          const entry = registry.unsafeLookup(name)
          if (entry) {
            const ref = refOf(entry)
            if (ref?.kind === "singleton") return ref
            if (ref) return yield* new KindMismatch({ name, existing: ref.kind })
            return yield* new AlreadyRegistered({ name, winner: entry })
          }
          const prior = yield* storage.create(
            newRow(name, "singleton", spec.name, encoded, options?.restart ?? "permanent")
          )
          if (Option.isSome(prior)) {
            if (prior.value.kind !== "singleton")
              return yield* new KindMismatch({ name, existing: prior.value.kind })
            return yield* awaitRef(name)
          }
          const target = rendezvous(name, yield* placements(spec.name))
          if (target === undefined) return yield* failStart(name, "no node can host it (no majority seen)")
          if (target === self.id) return yield* startAndAwait(name)
          return yield* client(target).pipe(
            Effect.flatMap((peer) => peer.SupervisorStart({ name })),
            Effect.timeout(settings.startTimeout),
            Effect.catchAll(() => startAndAwait(name).pipe(Effect.orElse(() => awaitRef(name))))
          )
        }),
      lookupSingleton,
      startReplicated: (spec, args, options) =>
        Effect.gen(function* () {
          const name = options?.name ?? spec.name
          const encoded = yield* validate(spec, args)
          const prior = yield* storage.create(
            newRow(name, "replicated", spec.name, encoded, options?.restart ?? "permanent")
          )
          if (Option.isSome(prior) && prior.value.kind !== "replicated") {
            return yield* new KindMismatch({ name, existing: prior.value.kind })
          }
          const members = (yield* node.members).filter(
            (member) => member.status === "up" || member.info.id === self.id
          )
          return yield* Effect.forEach(
            members,
            (member): Effect.Effect<ReplicaResult> => {
              const start =
                member.info.id === self.id
                  ? startAndAwait(name)
                  : client(member.info.id).pipe(
                      Effect.flatMap((peer) => peer.SupervisorEnsureReplica({ name })),
                      Effect.timeout(settings.startTimeout),
                      Effect.catchAll((error) =>
                        error._tag === "StartFailed"
                          ? Effect.fail(error)
                          : Effect.fail(
                              new StartFailed({ name, node: member.info.id, reason: String(error) })
                            )
                      )
                    )
              return Effect.map(Effect.either(start), (result) => ({ node: member.info.id, result }))
            },
            { concurrency: "unbounded" }
          )
        }),
      stop: (name) =>
        Effect.gen(function* () {
          const stored = yield* storage.get(name)
          if (Option.isNone(stored)) return yield* new NotFound({ name })
          const row = stored.value
          yield* storage.remove(name)
          const holders = new Set<string>()
          if (row.kind === "singleton") {
            if (row.owner) holders.add(row.owner)
            const entry = registry.unsafeLookup(name)
            if (entry) holders.add(entry.node)
          } else {
            for (const member of yield* node.members)
              if (member.status !== "down") holders.add(member.info.id)
          }
          yield* Effect.forEach(
            holders,
            (holder) => {
              if (holder === self.id) {
                const child = children.get(name)
                return child ? stopChild(child) : Effect.void
              }
              return client(holder).pipe(
                Effect.flatMap((peer) => peer.SupervisorStop({ name })),
                Effect.timeout(settings.startTimeout),
                Effect.ignore
              )
            },
            { concurrency: "unbounded", discard: true }
          )
        }),
      whichChildren: Effect.gen(function* () {
        const rows = yield* storage.list
        const entries = yield* registry.select((entry) => isProcessMetadata(entry.metadata))
        const refs = entries.flatMap((entry) => {
          const ref = refOf(entry)
          return ref ? [ref] : []
        })
        return rows.map(
          (row): ChildInfo => ({
            name: row.name,
            kind: row.kind,
            spec: row.spec,
            restart: row.restart,
            epoch: row.epoch,
            running: refs.filter((ref) => ref.name === row.name && ref.kind === row.kind)
          })
        )
      }),
      countChildren: Effect.gen(function* () {
        const rows = yield* storage.list
        const entries = yield* registry.select((entry) => isProcessMetadata(entry.metadata))
        const names = new Set(rows.map((row) => row.name))
        return {
          specs: new Set(rows.map((row) => row.spec)).size,
          children: rows.length,
          singletons: rows.filter((row) => row.kind === "singleton").length,
          replicated: rows.filter((row) => row.kind === "replicated").length,
          active: entries.filter((entry) => names.has(refOf(entry)!.name)).length
        }
      }),
      local: Effect.sync(() =>
        Array.from(children.values()).flatMap((child) => (child.ref && !child.stopping ? [child.ref] : []))
      )
    }
    /**
     * Leaving: registered last, so it runs first when the scope closes, before any loop stops.
     * Singletons are handed over; then every child still here stops. A node cut off from the
     * cluster's storage is crashing, not leaving: its children just stop, at once, as they would
     * with the process, and the survivors take over.
     */
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        leaving = true
        yield* FiberHandle.clear(deadline)
        if (Exit.isSuccess(yield* Effect.exit(runnerStorage.getRunners))) {
          const successors = (yield* node.members).filter(
            (member) => member.status === "up" && member.info.id !== self.id
          )
          yield* Effect.forEach(
            Array.from(children.values()),
            (child) =>
              handOver(
                child,
                successors.filter((member) => declares(member.info.id, child.spec.name))
              ),
            { concurrency: "unbounded", discard: true }
          )
        }
        yield* Scope.close(childrenScope, Exit.void)
      })
    )

    return supervisor
  })
