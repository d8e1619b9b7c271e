import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberMap from "effect/FiberMap"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { MembershipEvent, NodeInfo } from "../Node.js"
import { Node } from "../Node.js"
import type { Metadata, Registry, Settings } from "../Registry.js"
import { AlreadyRegistered, Entry, NotRegistered, RegistryRpcs, RegistryStorageError } from "../Registry.js"
import { RegistryStorage } from "../RegistryStorage.js"

/** How often pushes that failed are retried (as an empty push, so the receiver sees the gap). */
const pokeInterval = Duration.millis(500)
/** How often entries of nodes no longer in the membership view are looked for. */
const sweepInterval = Duration.seconds(10)
/** The most scheduler turns the writer waits for a batch to fill (see `gather`). */
const gatherTurns = 8
/** A pause before a reload, so that a burst of triggers (a node joining sees every peer) costs one. */
const reloadDebounce = Duration.millis(20)

/** Resumes the caller waiting on an operation (an `Effect.async` callback). */
type Done<A, E> = (exit: Exit.Exit<A, E>) => void

type Op =
  | {
      readonly _tag: "Claim"
      readonly entry: Entry
      readonly done: Done<Entry, AlreadyRegistered | RegistryStorageError>
    }
  | {
      readonly _tag: "Release"
      readonly entry: Entry
      readonly done: Done<void, RegistryStorageError>
    }
  | {
      readonly _tag: "Update"
      readonly entry: Entry
      readonly done: Done<Entry, NotRegistered | RegistryStorageError>
    }
  /** claim this node's names again: it may have been declared down while it was alive */
  | { readonly _tag: "Reassert" }
  /** send an empty push to these peers (first contact, or after a failed push) */
  | { readonly _tag: "Poke"; readonly peers: ReadonlyArray<string> }

/** A change of the view: an entry added or replaced, or a registration (by claim) removed. */
type Change =
  | { readonly _tag: "Put"; readonly entry: Entry }
  | { readonly _tag: "Drop"; readonly name: string; readonly claim: string }

type Recorded = Change | { readonly _tag: "DropNode"; readonly node: string; readonly incarnation: number }

const sameEntry = (a: Option.Option<Entry>, b: Option.Option<Entry>) =>
  Option.isNone(a)
    ? Option.isNone(b)
    : Option.isSome(b) &&
      a.value.claim === b.value.claim &&
      (a.value.metadata === b.value.metadata ||
        JSON.stringify(a.value.metadata) === JSON.stringify(b.value.metadata))

const matches = (value: unknown, pattern: unknown): boolean => {
  if (value === pattern) return true
  if (typeof pattern !== "object" || pattern === null || typeof value !== "object" || value === null)
    return false
  if (Array.isArray(pattern)) {
    return (
      Array.isArray(value) &&
      value.length === pattern.length &&
      pattern.every((item, index) => matches(value[index], item))
    )
  }
  return Object.entries(pattern).every(([key, item]) =>
    matches((value as Record<string, unknown>)[key], item)
  )
}

const peerKey = (info: NodeInfo) => `${info.id}@${info.startedAt}`

export const make = (
  settings: Settings
): Effect.Effect<Registry["Type"], RegistryStorageError, Node | RegistryStorage | Scope.Scope> =>
  Effect.gen(function* () {
    const node = yield* Node
    const storage = yield* RegistryStorage
    const self = node.self

    /** the replicated view: name -> entry */
    const view = new Map<string, Entry>()
    /** the registrations this node holds */
    const own = new Map<string, Entry>()
    /** node id -> the latest incarnation declared down */
    const dead = new Map<string, number>()
    /** node id -> the latest incarnation seen */
    const incarnations = new Map<string, number>([[self.id, self.startedAt]])
    const watchers = new Map<string, Set<Queue.Queue<Option.Option<Entry>>>>()
    /** changes applied while a reload reads storage, replayed on top of what it read */
    let recording: Array<Recorded> | undefined = []
    /** pushes sent, per receiver incarnation; pushes received, per sender incarnation */
    const sent = new Map<string, number>()
    const received = new Map<string, number>()
    /** the last membership event seen for each member incarnation */
    const statuses = new Map<string, "up" | "suspect" | "down">()
    /** receivers (by incarnation key) that may have missed a push */
    const dirty = new Map<string, string>()
    let claims = 0

    const ops = yield* Queue.unbounded<Op>()
    const reloads = yield* Queue.sliding<void>(1)
    const requestReload = () => void reloads.unsafeOffer(undefined)

    // --- the local view ---

    const stale = (entry: Entry): boolean => {
      const down = dead.get(entry.node)
      if (down !== undefined && entry.incarnation <= down) return true
      if (entry.node === self.id) return entry.incarnation !== self.startedAt
      return (incarnations.get(entry.node) ?? 0) > entry.incarnation
    }

    const notify = (name: string) => {
      const queues = watchers.get(name)
      if (!queues) return
      const value = Option.fromNullable(view.get(name))
      for (const queue of queues) queue.unsafeOffer(value)
    }

    const applyOne = (change: Recorded) => {
      switch (change._tag) {
        case "Put": {
          if (stale(change.entry)) return
          view.set(change.entry.name, change.entry)
          return notify(change.entry.name)
        }
        case "Drop": {
          if (view.get(change.name)?.claim !== change.claim) return
          view.delete(change.name)
          return notify(change.name)
        }
        case "DropNode": {
          for (const [name, entry] of view) {
            if (entry.node === change.node && entry.incarnation <= change.incarnation) {
              view.delete(name)
              notify(name)
            }
          }
        }
      }
    }

    const apply = (change: Recorded) => {
      applyOne(change)
      if (recording) recording.push(change)
    }

    /** Replaces the view with storage's rows, plus every change applied while they were read. */
    const reload = Effect.gen(function* () {
      recording ??= []
      const rows = yield* storage.list.pipe(Effect.onError(() => Effect.sync(() => (recording = undefined))))
      const replay = recording!
      recording = undefined
      const previous = new Map<string, Option.Option<Entry>>()
      for (const name of watchers.keys()) previous.set(name, Option.fromNullable(view.get(name)))
      view.clear()
      for (const row of rows) if (!stale(row)) view.set(row.name, row)
      for (const entry of own.values()) view.set(entry.name, entry)
      const silent = new Map(watchers)
      watchers.clear()
      for (const change of replay) applyOne(change)
      for (const [name, queues] of silent) watchers.set(name, queues)
      for (const [name, before] of previous) {
        if (!sameEntry(before, Option.fromNullable(view.get(name)))) notify(name)
      }
    })

    // --- pushes ---

    /** This node's changes as the columns of a push (drops first, as `RegistryApply` applies them). */
    const columns = (changes: ReadonlyArray<Change>): Batch => {
      const put = {
        names: [] as Array<string>,
        claims: [] as Array<string>,
        metadata: [] as Array<Metadata>,
        registeredAt: [] as Array<number>
      }
      const drop = { names: [] as Array<string>, claims: [] as Array<string> }
      for (const change of changes) {
        if (change._tag === "Drop") {
          drop.names.push(change.name)
          drop.claims.push(change.claim)
        } else {
          put.names.push(change.entry.name)
          put.claims.push(change.entry.claim)
          put.metadata.push(change.entry.metadata)
          put.registeredAt.push(change.entry.registeredAt)
        }
      }
      return { put, drop }
    }

    const push = (info: NodeInfo, batch: Batch) =>
      Effect.suspend(() => {
        const key = peerKey(info)
        const seq = (sent.get(key) ?? 0) + 1
        sent.set(key, seq)
        return node
          .clientFor(RegistryRpcs, { lane: settings.lane })(info.id)
          .pipe(
            Effect.flatMap((client) =>
              client.RegistryApply({
                from: self.id,
                incarnation: self.startedAt,
                address: self.address,
                seq,
                put: batch.put,
                drop: batch.drop
              })
            ),
            Effect.timeout(settings.replicationTimeout),
            Effect.matchCause({
              onSuccess: () => void dirty.delete(key),
              onFailure: () => void dirty.set(key, info.id)
            })
          )
      })

    /**
     * One sender fiber per peer incarnation: its pushes leave one after the other, in batch order,
     * so the receiver sees consecutive sequence numbers unless a push really was lost.
     */
    const senders = yield* FiberMap.make<string>()
    const outboxes = new Map<string, Queue.Queue<Outgoing>>()
    const outbox = (info: NodeInfo) =>
      Effect.gen(function* () {
        const key = peerKey(info)
        const existing = outboxes.get(key)
        if (existing) return existing
        const queue = yield* Queue.unbounded<Outgoing>()
        outboxes.set(key, queue)
        yield* FiberMap.run(
          senders,
          key,
          Queue.take(queue).pipe(
            Effect.flatMap(({ batch, done }) =>
              Effect.zipRight(push(info, batch), Deferred.succeed(done, undefined))
            ),
            Effect.forever
          )
        )
        return queue
      })
    const dropOutbox = (info: NodeInfo) =>
      Effect.suspend(() => {
        const key = peerKey(info)
        const queue = outboxes.get(key)
        outboxes.delete(key)
        dirty.delete(key)
        return Effect.zipRight(FiberMap.remove(senders, key), queue ? Queue.shutdown(queue) : Effect.void)
      })

    /**
     * Queues `changes` for every member not known to be down (and an empty push for `poked` ones),
     * and returns the wait for the acks of the members seen up, each up to `replicationTimeout`:
     * answering callers after that wait is the read-your-writes guarantee. Suspect members (silent
     * for a while, or not yet heard from) get the push, in order, without being waited for.
     */
    const replicate = (changes: ReadonlyArray<Change>, poked: ReadonlySet<string>) =>
      Effect.gen(function* () {
        const members = yield* node.members
        const batch = columns(changes)
        const awaited: Array<Effect.Effect<void>> = []
        for (const member of members) {
          if (member.info.id === self.id || member.status === "down") continue
          if (changes.length === 0 && !poked.has(member.info.id)) continue
          const done = yield* Deferred.make<void>()
          yield* Queue.offer(yield* outbox(member.info), { batch, done })
          if (member.status === "up") {
            awaited.push(Effect.ignore(Effect.timeout(Deferred.await(done), settings.replicationTimeout)))
          }
        }
        return Effect.all(awaited, { concurrency: "unbounded", discard: true })
      })

    const receive = (payload: ApplyPayload) => {
      const key = `${payload.from}@${payload.incarnation}`
      const last = received.get(key)
      // pushes of one sender arrive in order; one older than the last seen cannot be trusted
      if (last !== undefined && payload.seq <= last) return requestReload()
      received.set(key, payload.seq)
      // first contact, or a push lost on the way: what was missed is only in storage
      if (last === undefined || payload.seq > last + 1) requestReload()
      const { drop, put } = payload
      if (drop.claims.length !== drop.names.length) return
      for (let i = 0; i < drop.names.length; i++)
        apply({ _tag: "Drop", name: drop.names[i], claim: drop.claims[i] })
      const count = put.names.length
      if (put.claims.length !== count || put.metadata.length !== count || put.registeredAt.length !== count)
        return
      for (let i = 0; i < count; i++) {
        apply({
          _tag: "Put",
          entry: new Entry(
            {
              name: put.names[i],
              node: payload.from as Entry["node"],
              address: payload.address,
              incarnation: payload.incarnation,
              claim: put.claims[i],
              metadata: put.metadata[i],
              registeredAt: put.registeredAt[i]
            },
            true
          )
        })
      }
    }

    // --- the writer: one storage round and one push per batch ---

    const fail = <E>(done: Done<any, E>, error: E) => done(Exit.fail(error))

    /** A batch whose storage round is done: what to push, and whom to answer once it is pushed. */
    interface Stored {
      readonly changes: ReadonlyArray<Change>
      readonly poked: ReadonlySet<string>
      readonly completions: ReadonlyArray<() => void>
    }

    /** The storage round of a batch; the view is updated at once, callers are answered after the push. */
    const storeBatch = (batch: ReadonlyArray<Op>): Effect.Effect<Stored> =>
      Effect.gen(function* () {
        const changes: Array<Change> = []
        const completions: Array<() => void> = []
        const poked = new Set<string>()
        const releases: Array<Extract<Op, { _tag: "Release" }>> = []
        const updates: Array<Extract<Op, { _tag: "Update" }>> = []
        const claimOps: Array<Extract<Op, { _tag: "Claim" }>> = []
        let reassert = false
        for (const op of batch) {
          if (op._tag === "Release") releases.push(op)
          else if (op._tag === "Update") updates.push(op)
          else if (op._tag === "Claim") claimOps.push(op)
          else if (op._tag === "Reassert") reassert = true
          else for (const peer of op.peers) poked.add(peer)
        }

        if (releases.length > 0) {
          const exit = yield* Effect.exit(
            storage
              .release(releases.map((op) => ({ name: op.entry.name, claim: op.entry.claim })))
              .pipe(Effect.retry({ times: 3, schedule: Schedule.spaced(100) }))
          )
          for (const op of releases) {
            if (Exit.isFailure(exit)) {
              completions.push(() => op.done(Exit.failCause(exit.cause)))
              continue
            }
            if (own.get(op.entry.name)?.claim === op.entry.claim) own.delete(op.entry.name)
            const change: Change = { _tag: "Drop", name: op.entry.name, claim: op.entry.claim }
            apply(change)
            changes.push(change)
            completions.push(() => op.done(Exit.void))
          }
        }

        if (updates.length > 0) {
          const exit = yield* Effect.exit(storage.update(updates.map((op) => op.entry)))
          updates.forEach((op, index) => {
            if (Exit.isFailure(exit)) {
              completions.push(() => op.done(Exit.failCause(exit.cause)))
              return
            }
            if (!exit.value[index] || own.get(op.entry.name)?.claim !== op.entry.claim) {
              completions.push(() => fail(op.done, new NotRegistered({ name: op.entry.name, node: self.id })))
              return
            }
            own.set(op.entry.name, op.entry)
            const change: Change = { _tag: "Put", entry: op.entry }
            apply(change)
            changes.push(change)
            completions.push(() => op.done(Exit.succeed(op.entry)))
          })
        }

        if (claimOps.length > 0) {
          // one claim per name goes to storage; later claims of the same name in this batch lose to it
          const first = new Map<string, Extract<Op, { _tag: "Claim" }>>()
          const followers: Array<Extract<Op, { _tag: "Claim" }>> = []
          for (const op of claimOps) {
            if (first.has(op.entry.name)) followers.push(op)
            else first.set(op.entry.name, op)
          }
          const leaders = Array.from(first.values())
          const exit = yield* Effect.exit(claimWithTakeover(leaders.map((op) => op.entry)))
          const winners = new Map<string, Entry>()
          leaders.forEach((op, index) => {
            if (Exit.isFailure(exit)) {
              completions.push(() => op.done(Exit.failCause(exit.cause)))
              return
            }
            const holder = exit.value[index]
            if (holder !== undefined && holder.claim !== op.entry.claim) {
              winners.set(op.entry.name, holder)
              completions.push(() =>
                fail(op.done, new AlreadyRegistered({ name: op.entry.name, winner: holder }))
              )
              return
            }
            winners.set(op.entry.name, op.entry)
            own.set(op.entry.name, op.entry)
            const change: Change = { _tag: "Put", entry: op.entry }
            apply(change)
            changes.push(change)
            completions.push(() => op.done(Exit.succeed(op.entry)))
          })
          for (const op of followers) {
            const winner = winners.get(op.entry.name)
            completions.push(() =>
              Exit.isFailure(exit)
                ? op.done(Exit.failCause(exit.cause))
                : fail(op.done, new AlreadyRegistered({ name: op.entry.name, winner: winner! }))
            )
          }
        }

        if (reassert && own.size > 0) {
          const mine = Array.from(own.values())
          const exit = yield* Effect.exit(storage.claim(mine))
          if (Exit.isSuccess(exit)) {
            mine.forEach((entry, index) => {
              const holder = exit.value[index]
              if (holder !== undefined && holder.claim !== entry.claim) {
                own.delete(entry.name)
                completions.push(() => {
                  Effect.runFork(
                    Effect.logWarning(
                      `registration of "${entry.name}" was lost while node ${self.id} was declared down; node ${holder.node} holds it now`
                    )
                  )
                })
                apply({ _tag: "Drop", name: entry.name, claim: entry.claim })
                apply({ _tag: "Put", entry: holder })
                return
              }
              const change: Change = { _tag: "Put", entry }
              apply(change)
              changes.push(change)
            })
          } else {
            yield* Effect.logWarning("could not claim this node's names again", exit.cause)
          }
        }

        return { changes, poked, completions }
      })

    /** Claims, then takes over names whose holder is known to be dead (its NodeDown cleanup may lag). */
    const claimWithTakeover = (entries: ReadonlyArray<Entry>) =>
      Effect.gen(function* () {
        const results = [...(yield* storage.claim(entries))]
        const retry: Array<number> = []
        results.forEach((holder, index) => {
          if (holder !== undefined && holder.claim !== entries[index].claim && stale(holder))
            retry.push(index)
        })
        if (retry.length === 0) return results
        yield* storage.release(
          retry.map((index) => ({ name: results[index]!.name, claim: results[index]!.claim }))
        )
        const again = yield* storage.claim(retry.map((index) => entries[index]))
        retry.forEach((index, i) => (results[index] = again[i]))
        return results
      })

    /**
     * Takes the pending operations (up to `maxBatch`) for one storage round. Callers answered
     * together submit their next operations one by one as they resume, so the first of them would
     * wake the writer alone and go to storage in a batch of one, with the rest waiting behind it:
     * the writer yields while the queue still grows (a few scheduler turns, no timer) and takes
     * what arrived meanwhile.
     */
    const gather = Effect.gen(function* () {
      const batch = Array.from(yield* Queue.takeBetween(ops, 1, settings.maxBatch))
      let size = -1
      for (let turn = 0; turn < gatherTurns && batch.length < settings.maxBatch; turn++) {
        const pending = yield* Queue.size(ops)
        if (pending === size) break
        size = pending
        yield* Effect.yieldNow()
      }
      if (batch.length < settings.maxBatch) {
        batch.push(...(yield* Queue.takeUpTo(ops, settings.maxBatch - batch.length)))
      }
      return batch
    })

    /**
     * Two stages: the writer does a batch's storage round while the replicator hands the previous
     * batch to the peers' outboxes. Pushes leave in batch order (one outbox fiber per peer), so
     * their sequence numbers arrive in order; the replicator does not wait for a batch's acks
     * before handing over the next one, so a slow peer's round trip overlaps the next storage
     * round. A batch's callers are answered once its acks are in (or timed out).
     */
    const stored = yield* Queue.bounded<Stored>(1)
    const writer = Effect.gen(function* () {
      while (true) {
        const batch = yield* gather
        const result = yield* storeBatch(batch).pipe(
          Effect.catchAllCause((cause) =>
            Effect.as(
              Effect.zipRight(
                Effect.logError("registry writer failed a batch", cause),
                Effect.sync(() => {
                  for (const op of batch) {
                    if ("done" in op) (op.done as Done<unknown, unknown>)(Exit.die(Cause.squash(cause)))
                  }
                })
              ),
              undefined
            )
          )
        )
        if (result) yield* Queue.offer(stored, result)
      }
    })
    const replicator = Effect.gen(function* () {
      while (true) {
        const { changes, completions, poked } = yield* Queue.take(stored)
        const acked = yield* replicate(changes, poked).pipe(
          Effect.catchAllCause((cause) =>
            Effect.as(Effect.logError("registry replication failed a batch", cause), Effect.void)
          )
        )
        yield* Effect.fork(
          Effect.zipRight(
            acked,
            Effect.sync(() => {
              for (const complete of completions) complete()
            })
          )
        )
      }
    })

    /** Queues an operation; the caller waits on one `Effect.async`, resumed by the writer. */
    const submit = <A, E>(make: (done: Done<A, E>) => Op): Effect.Effect<A, E> =>
      Effect.async<A, E>((resume) => {
        ops.unsafeOffer(make((exit) => resume(exit)))
      })

    // --- membership ---

    const onEvent = (event: MembershipEvent) =>
      Effect.suspend(() => {
        const info = event.node
        if (info.id === self.id) return Effect.void
        if ((incarnations.get(info.id) ?? 0) < info.startedAt) incarnations.set(info.id, info.startedAt)
        switch (event._tag) {
          case "NodeDown": {
            statuses.set(peerKey(info), "down")
            dead.set(info.id, Math.max(dead.get(info.id) ?? 0, info.startedAt))
            apply({ _tag: "DropNode", node: info.id, incarnation: info.startedAt })
            return Effect.zipRight(dropOutbox(info), storage.releaseNode(info.id, info.startedAt)).pipe(
              Effect.retry({ times: 5, schedule: Schedule.spaced(100) }),
              Effect.catchAll((error) => Effect.logWarning(`could not delete the names of ${info.id}`, error))
            )
          }
          case "NodeUp": {
            const before = statuses.get(peerKey(info))
            statuses.set(peerKey(info), "up")
            const resurrected = (dead.get(info.id) ?? -1) >= info.startedAt
            if (resurrected) dead.delete(info.id)
            apply({ _tag: "DropNode", node: info.id, incarnation: info.startedAt - 1 })
            // back from suspect: pushes went on both ways, in order, and gaps were repaired
            if (before === "suspect" && !resurrected) return Effect.void
            // a new member, or one back from down: an empty push makes it reload on first contact
            // (it may have missed what was registered before it saw us); we reload too, since we
            // ignored its pushes while it was down, and if we had declared it down we deleted its
            // names: it must claim them again
            if (before === "down" || resurrected) requestReload()
            return Queue.offer(ops, { _tag: "Poke", peers: [info.id] }).pipe(
              Effect.zipRight(
                resurrected
                  ? node
                      .clientFor(RegistryRpcs, { lane: settings.lane })(info.id)
                      .pipe(
                        Effect.flatMap((client) => client.RegistryReassert({ from: self.id })),
                        Effect.timeout(settings.replicationTimeout),
                        Effect.retry({ times: 3, schedule: Schedule.spaced(pokeInterval) }),
                        Effect.catchAllCause((cause) =>
                          Effect.logWarning(`could not ask ${info.id} to claim its names again`, cause)
                        ),
                        Effect.forkScoped,
                        Effect.asVoid
                      )
                  : Effect.void
              )
            )
          }
          case "NodeSuspect":
            return Effect.sync(() => void statuses.set(peerKey(info), "suspect"))
        }
      })

    const sweep = Effect.gen(function* () {
      const members = new Set((yield* node.members).map((member) => member.info.id as string))
      const gone = new Map<string, number>()
      for (const entry of view.values()) {
        if (!members.has(entry.node))
          gone.set(entry.node, Math.max(gone.get(entry.node) ?? 0, entry.incarnation))
      }
      return gone
    })

    // --- start ---

    const events = yield* node.events
    yield* events.pipe(Stream.runForEach(onEvent), Effect.forkScoped)
    yield* node.serve(
      RegistryRpcs,
      yield* RegistryRpcs.toHandlersContext({
        RegistryApply: (payload) => Effect.sync(() => receive(payload)),
        RegistryReassert: () =>
          Effect.zipRight(Queue.offer(ops, { _tag: "Reassert" }), Effect.sync(requestReload))
      })
    )
    // names left behind by an earlier incarnation of this node
    yield* storage.releaseNode(self.id, self.startedAt - 1)
    for (const member of yield* node.members) {
      if ((incarnations.get(member.info.id) ?? 0) < member.info.startedAt) {
        incarnations.set(member.info.id, member.info.startedAt)
      }
    }
    yield* reload

    yield* Effect.forkScoped(writer)
    yield* Effect.forkScoped(replicator)
    yield* Queue.take(reloads).pipe(
      Effect.zipRight(Effect.sleep(reloadDebounce)),
      Effect.zipRight(
        reload.pipe(
          Effect.catchAll((error) => {
            requestReload()
            return Effect.zipRight(
              Effect.logWarning("registry reload failed; retrying", error),
              Effect.sleep(pokeInterval)
            )
          })
        )
      ),
      Effect.forever,
      Effect.forkScoped
    )
    yield* Effect.suspend(() =>
      dirty.size === 0
        ? Effect.void
        : Queue.offer(ops, { _tag: "Poke", peers: Array.from(new Set(dirty.values())) })
    ).pipe(Effect.schedule(Schedule.spaced(pokeInterval)), Effect.forever, Effect.forkScoped)
    // entries of nodes that left the membership view (a node that never came back after an outage)
    let suspects = new Map<string, number>()
    yield* sweep.pipe(
      Effect.flatMap((gone) =>
        Effect.forEach(
          Array.from(gone).filter(([id]) => suspects.has(id)),
          ([id, incarnation]) =>
            Effect.zipRight(
              Effect.sync(() => apply({ _tag: "DropNode", node: id, incarnation })),
              Effect.ignore(storage.releaseNode(id as Entry["node"], incarnation))
            ),
          { discard: true }
        ).pipe(Effect.zipRight(Effect.sync(() => (suspects = gone))))
      ),
      Effect.schedule(Schedule.spaced(sweepInterval)),
      Effect.forever,
      Effect.forkScoped
    )

    const newEntry = (name: string, metadata: Metadata) =>
      new Entry(
        {
          name,
          node: self.id,
          address: self.address,
          incarnation: self.startedAt,
          claim: `${self.id}/${self.startedAt}/${++claims}`,
          metadata,
          registeredAt: Date.now()
        },
        true
      )

    const release = (entry: Entry) =>
      Effect.suspend(() =>
        own.get(entry.name)?.claim === entry.claim
          ? submit<void, RegistryStorageError>((done) => ({ _tag: "Release", entry, done }))
          : Effect.void
      )

    const registry: Registry["Type"] = {
      // `Effect.acquireRelease`, without capturing the caller's fiber refs for the release: that
      // copy, and the diff it causes when the caller's fiber is joined, cost about 8 µs per call
      // with 1000 calls in flight (see docs/registry.md)
      register: (name, metadata = {}) =>
        Effect.uninterruptible(
          Effect.flatMap(
            Effect.suspend(() => {
              const holder = view.get(name)
              if (holder !== undefined && !stale(holder)) {
                return Effect.fail(new AlreadyRegistered({ name, winner: holder }))
              }
              return submit<Entry, AlreadyRegistered | RegistryStorageError>((done) => ({
                _tag: "Claim",
                entry: newEntry(name, metadata),
                done
              }))
            }),
            (entry) =>
              Effect.as(
                Effect.flatMap(Effect.scope, (scope) =>
                  Scope.addFinalizer(
                    scope,
                    release(entry).pipe(
                      Effect.catchAll((error) =>
                        Effect.logWarning(`could not release "${entry.name}"`, error)
                      )
                    )
                  )
                ),
                entry
              )
          )
        ),
      unregister: (name) => Effect.suspend(() => (own.has(name) ? release(own.get(name)!) : Effect.void)),
      updateMetadata: (name, metadata) =>
        Effect.suspend(() => {
          const current = own.get(name)
          if (!current) {
            const holder = view.get(name)
            return Effect.fail(
              new NotRegistered({ name, node: self.id, ...(holder ? { holder: holder.node } : {}) })
            )
          }
          const entry = new Entry({ ...current, metadata }, true)
          return submit<Entry, NotRegistered | RegistryStorageError>((done) => ({
            _tag: "Update",
            entry,
            done
          }))
        }),
      lookup: (name) => Effect.sync(() => Option.fromNullable(view.get(name))),
      unsafeLookup: (name) => view.get(name),
      select: (predicate) => Effect.sync(() => Array.from(view.values()).filter(predicate)),
      match: (pattern) =>
        Effect.sync(() => Array.from(view.values()).filter((entry) => matches(entry.metadata, pattern))),
      count: Effect.sync(() => view.size),
      keys: Effect.sync(() => Array.from(view.keys())),
      watch: (name) =>
        Stream.unwrapScoped(
          Effect.gen(function* () {
            const queue = yield* Effect.acquireRelease(Queue.unbounded<Option.Option<Entry>>(), (queue) =>
              Effect.zipRight(
                Effect.sync(() => {
                  const queues = watchers.get(name)
                  queues?.delete(queue)
                  if (queues?.size === 0) watchers.delete(name)
                }),
                Queue.shutdown(queue)
              )
            )
            let queues = watchers.get(name)
            if (!queues) watchers.set(name, (queues = new Set()))
            queues.add(queue)
            queue.unsafeOffer(Option.fromNullable(view.get(name)))
            return Stream.fromQueue(queue).pipe(Stream.changesWith(sameEntry))
          })
        )
    }
    return registry
  })

type Batch = Pick<ApplyPayload, "put" | "drop">

interface Outgoing {
  readonly batch: Batch
  readonly done: Deferred.Deferred<void>
}

interface ApplyPayload {
  readonly from: string
  readonly incarnation: number
  readonly address: Entry["address"]
  readonly seq: number
  readonly put: {
    readonly names: ReadonlyArray<string>
    readonly claims: ReadonlyArray<string>
    readonly metadata: ReadonlyArray<Metadata>
    readonly registeredAt: ReadonlyArray<number>
  }
  readonly drop: { readonly names: ReadonlyArray<string>; readonly claims: ReadonlyArray<string> }
}
