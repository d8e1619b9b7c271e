import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type Member, Node, type NodeId } from "../Node.js"
import type * as SharedConfig from "../SharedConfig.js"
import { InvalidValue, NoQuorum, SharedConfigRpcs, StoredEntry } from "../SharedConfig.js"

interface Version {
  readonly counter: number
  readonly node: string
}

/** Total order of versions: the counter, then the proposing node's id. */
const compare = (a: Version, b: Version): number =>
  a.counter !== b.counter ? a.counter - b.counter : a.node < b.node ? -1 : a.node > b.node ? 1 : 0

interface Held {
  readonly entry: StoredEntry
  /** the last decoding of `entry.value`, by the Schema that decoded it */
  decoded: { readonly schema: Schema.Schema<any, any>; readonly value: unknown } | undefined
}

/** Members that vote: every member not known dead (a heartbeat timeout may be a partition). */
const isVoter = (member: Member) => member.status !== "down" || member.downReason === "heartbeat-timeout"

export const make = (
  settings: SharedConfig.Settings
): Effect.Effect<SharedConfig.SharedConfig["Type"], never, Node | Scope.Scope> =>
  Effect.gen(function* () {
    const node = yield* Node
    const selfId: string = node.self.id
    const run = yield* FiberSet.makeRuntime<never>()
    const changes = yield* Effect.acquireRelease(
      PubSub.sliding<SharedConfig.Change<unknown>>(4096),
      PubSub.shutdown
    )
    const entries = new Map<string, Held>()
    const promised = new Map<string, Version>()

    const highest = (key: string): Version | undefined => {
      const committed = entries.get(key)?.entry
      const promise = promised.get(key)
      if (!committed) return promise
      if (!promise) return committed
      return compare(committed, promise) >= 0 ? committed : promise
    }

    /** The acceptor's rule: a proposal is accepted if it is above everything seen for its key. */
    const prepare = (key: string, version: Version) => {
      const top = highest(key)
      if (top === undefined || compare(version, top) > 0) {
        promised.set(key, version)
        return { accepted: true, counter: version.counter }
      }
      return { accepted: false, counter: top.counter }
    }

    /** Applies an entry if it is newer than the one held; publishes the change. */
    const apply = (entry: StoredEntry, decoded?: Held["decoded"]): boolean => {
      const held = entries.get(entry.key)
      if (held && compare(entry, held.entry) <= 0) return false
      entries.set(entry.key, { entry, decoded })
      changes.unsafeOffer({
        key: entry.key,
        value: entry.value,
        version: entry.counter,
        by: entry.node as NodeId,
        at: entry.at,
        previousVersion: held?.entry.counter ?? 0
      })
      return true
    }

    const all = () => Array.from(entries.values(), (held) => held.entry)

    const clientOf = (id: NodeId) => node.clientFor(SharedConfigRpcs, { lane: "control" })(id)

    /** Members a commit did not reach: synced every `repairInterval` until one succeeds. */
    const behind = new Set<NodeId>()

    const syncWith = (peer: NodeId) =>
      clientOf(peer).pipe(
        Effect.flatMap((client) => client.SharedConfig.Sync({ entries: all() })),
        Effect.timeout(settings.prepareTimeout),
        Effect.matchCause({
          onSuccess: ({ entries: theirs }) => {
            behind.delete(peer)
            theirs.forEach((entry) => apply(entry))
          },
          // a member without SharedConfig, or unreachable: the next sync repairs it
          onFailure: () => undefined
        })
      )

    const syncAll = Effect.flatMap(node.members, (members) =>
      Effect.forEach(
        members.filter((member) => member.info.id !== selfId && member.status !== "down"),
        (member) => syncWith(member.info.id),
        { concurrency: "unbounded", discard: true }
      )
    )

    yield* node.serve(
      SharedConfigRpcs,
      yield* SharedConfigRpcs.toHandlersContext({
        "SharedConfig.Prepare": ({ key, counter, node: proposer }) =>
          Effect.sync(() => prepare(key, { counter, node: proposer })),
        "SharedConfig.Commit": (entry) => Effect.sync(() => void apply(entry)),
        "SharedConfig.Sync": ({ entries: theirs }) =>
          Effect.sync(() => {
            theirs.forEach((entry) => apply(entry))
            return { entries: all() }
          })
      })
    )

    const events = yield* node.events
    yield* events.pipe(
      Stream.runForEach((event) =>
        event._tag === "NodeUp" && event.node.id !== selfId
          ? Effect.sync(() => run(syncWith(event.node.id)))
          : Effect.void
      ),
      Effect.interruptible,
      Effect.forkScoped
    )
    yield* syncAll.pipe(
      Effect.schedule(Schedule.spaced(settings.syncInterval)),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )
    run(syncAll)
    yield* Effect.suspend(() =>
      Effect.forEach(behind, syncWith, { concurrency: "unbounded", discard: true })
    ).pipe(Effect.delay(settings.repairInterval), Effect.forever, Effect.interruptible, Effect.forkScoped)

    /**
     * Phase 1 for one proposal: asks every reachable member, and completes as soon as a majority
     * accepted, every member answered, or `prepareTimeout` passed.
     */
    const propose = (key: string, version: Version, members: ReadonlyArray<Member>) =>
      Effect.gen(function* () {
        const voters = members.filter(isVoter)
        const required = Math.floor(voters.length / 2) + 1
        const targets = members.filter((member) => member.info.id !== selfId && member.status !== "down")
        const accepted: Array<string> = []
        const rejected: Array<string> = []
        let highestSeen = version.counter
        if (prepare(key, version).accepted) accepted.push(selfId)
        let answered = 0
        const done = yield* Deferred.make<void>()
        const check = () => {
          if (accepted.length >= required || answered === targets.length)
            Deferred.unsafeDone(done, Effect.void)
        }
        check()
        const asks = yield* Effect.forEach(
          targets,
          (member) =>
            clientOf(member.info.id).pipe(
              Effect.flatMap((client) =>
                client.SharedConfig.Prepare({ key, counter: version.counter, node: version.node })
              ),
              Effect.matchCause({
                onSuccess: (answer) => {
                  if (answer.accepted) accepted.push(member.info.id)
                  else rejected.push(member.info.id)
                  highestSeen = Math.max(highestSeen, answer.counter)
                },
                onFailure: () => undefined
              }),
              Effect.ensuring(
                Effect.sync(() => {
                  answered++
                  check()
                })
              ),
              Effect.forkScoped
            ),
          { concurrency: "unbounded" }
        )
        yield* Deferred.await(done).pipe(Effect.timeout(settings.prepareTimeout), Effect.ignore)
        const responded = new Set([...accepted, ...rejected])
        const outcome = {
          accepted: [...accepted],
          rejected: [...rejected],
          unreachable: voters.map((member) => member.info.id as string).filter((id) => !responded.has(id)),
          voters: voters.length,
          required,
          highestSeen
        }
        // answers still on their way do not matter any more
        yield* Effect.forEach(asks, (fiber) => fiber.interruptAsFork(fiber.id()), { discard: true })
        return outcome
      }).pipe(Effect.scoped)

    /** Phase 3: applies here, sends the entry to every reachable member, waits for a majority. */
    const commit = (
      entry: StoredEntry,
      decoded: Held["decoded"],
      members: ReadonlyArray<Member>,
      required: number
    ) =>
      Effect.gen(function* () {
        apply(entry, decoded)
        const targets = members.filter((member) => member.info.id !== selfId && member.status !== "down")
        let applied = 1
        let answered = 0
        const done = yield* Deferred.make<void>()
        const check = () => {
          if (applied >= required || answered === targets.length) Deferred.unsafeDone(done, Effect.void)
        }
        check()
        for (const member of targets) {
          run(
            clientOf(member.info.id).pipe(
              Effect.flatMap((client) => client.SharedConfig.Commit(entry)),
              Effect.timeout(settings.commitTimeout),
              Effect.matchCause({
                onSuccess: () => void applied++,
                onFailure: () => void behind.add(member.info.id)
              }),
              Effect.ensuring(
                Effect.sync(() => {
                  answered++
                  check()
                })
              )
            )
          )
        }
        yield* Deferred.await(done).pipe(Effect.timeout(settings.commitTimeout), Effect.ignore)
      })

    const entryOf = <A, I>(key: SharedConfig.Key<A, I>): Effect.Effect<SharedConfig.Entry<A>> =>
      Effect.suspend(() => {
        const held = entries.get(key.name)
        if (!held) {
          return Effect.succeed({ key: key.name, value: key.default, version: 0, by: undefined, at: 0 })
        }
        const entry = held.entry
        const result = (value: A): SharedConfig.Entry<A> => ({
          key: key.name,
          value,
          version: entry.counter,
          by: entry.node as NodeId,
          at: entry.at
        })
        if (held.decoded?.schema === key.schema) return Effect.succeed(result(held.decoded.value as A))
        const decoded = Schema.decodeUnknownEither(key.schema)(entry.value)
        if (Either.isLeft(decoded)) {
          return Effect.as(
            Effect.logWarning(
              `SharedConfig: the value of ${key.name} (version ${entry.counter}, set by ${entry.node}) does not decode with this key's Schema; using the default`,
              decoded.left.message
            ),
            result(key.default)
          )
        }
        held.decoded = { schema: key.schema, value: decoded.right }
        return Effect.succeed(result(decoded.right))
      })

    const set = <A, I>(key: SharedConfig.Key<A, I>, value: A) =>
      Effect.gen(function* () {
        const encoded = Schema.encodeEither(key.schema)(value)
        if (Either.isLeft(encoded)) {
          return yield* new InvalidValue({ key: key.name, reason: encoded.left.message })
        }
        let seen = 0
        for (let attempt = 1; ; attempt++) {
          const members = yield* node.members
          const counter = Math.max(highest(key.name)?.counter ?? 0, seen) + 1
          const version = { counter, node: selfId }
          const outcome = yield* propose(key.name, version, members)
          if (outcome.accepted.length >= outcome.required) {
            const entry = new StoredEntry({
              key: key.name,
              counter,
              node: selfId,
              value: encoded.right,
              at: yield* Clock.currentTimeMillis
            })
            yield* commit(entry, { schema: key.schema, value }, members, outcome.required)
            const committed: SharedConfig.Entry<A> = {
              key: key.name,
              value,
              version: counter,
              by: selfId as NodeId,
              at: entry.at
            }
            return committed
          }
          seen = outcome.highestSeen
          if (outcome.rejected.length === 0 || attempt >= settings.attempts) {
            return yield* new NoQuorum({
              key: key.name,
              accepted: outcome.accepted,
              rejected: outcome.rejected,
              unreachable: outcome.unreachable,
              voters: outcome.voters,
              required: outcome.required
            })
          }
          // a concurrent proposal: back off a little, at random, so the two do not keep colliding
          yield* Effect.sleep(Math.floor(Math.random() * 20) + 1)
        }
      })

    return {
      set,
      get: (key) => Effect.map(entryOf(key), (entry) => entry.value),
      entry: entryOf,
      changes: Effect.map(PubSub.subscribe(changes), Stream.fromQueue),
      changesOf: <A, I>(key: SharedConfig.Key<A, I>) =>
        Effect.map(PubSub.subscribe(changes), (queue) =>
          Stream.fromQueue(queue).pipe(
            Stream.filterMap((change): Option.Option<SharedConfig.Change<A>> => {
              if (change.key !== key.name) return Option.none()
              return Option.map(Schema.decodeUnknownOption(key.schema)(change.value), (value) => ({
                ...change,
                value
              }))
            })
          )
        ),
      snapshot: Effect.sync(() =>
        Array.from(entries.values(), ({ entry }) => ({
          key: entry.key,
          value: entry.value,
          version: entry.counter,
          by: entry.node as NodeId,
          at: entry.at
        }))
      )
    }
  })
