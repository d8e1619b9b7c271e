import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type Member, Node, type NodeId } from "@foundation/core/Node"
import { type AgentModule, AgentSpec } from "../Agent.js"
import {
  type AgentInfo,
  AgentRegistry,
  AgentRegistryRpcs,
  type Change,
  type Health,
  type Query
} from "../AgentRegistry.js"
import {
  AgentAlreadyRegistered,
  AgentNotStarted,
  InvalidAgentSpec,
  UnknownAgent,
  UnknownModule
} from "../MabeamError.js"

type SpecChange = Extract<Change, { readonly _tag: "Spec" }>
/** A registration as this node holds it. */
export type SpecRecord = SpecChange
type LocationChange = Extract<Change, { readonly _tag: "Location" }>

export interface RegistrySettings {
  readonly replicationTimeout: Duration.Duration
  readonly resyncInterval: Duration.Duration
  readonly lane: string
}

/** The registry plus what the rest of MABEAM on this node needs from it. */
export interface RegistryCore {
  readonly service: AgentRegistry["Type"]
  /** the live registration of an agent */
  readonly spec: (agent: string) => SpecChange | undefined
  readonly location: (agent: string) => LocationChange | undefined
  /** records that this node runs `agent` (or stopped it), with its health; `wait`: until live members have it */
  readonly publishLocation: (
    agent: string,
    health: LocationChange["health"],
    reason: string | undefined,
    wait: boolean
  ) => Effect.Effect<void>
  /** publishes the loads of agents this node runs, without waiting */
  readonly publishLoads: (loads: ReadonlyArray<readonly [string, number]>) => Effect.Effect<void>
  /** called with the agent id whenever a registration changes (registered again, deregistered) */
  readonly onSpecChange: (listener: (agent: string) => void) => void
  /** the live registrations of agents last started on that node incarnation */
  readonly agentsOn: (node: string, incarnation: number) => ReadonlyArray<SpecChange>
}

interface Outgoing {
  readonly changes: ReadonlyArray<Change>
  readonly done: Deferred.Deferred<void> | undefined
}

const newer = (
  a: { readonly version: number; readonly writer: string },
  b: { readonly version: number; readonly writer: string } | undefined
) => b === undefined || a.version > b.version || (a.version === b.version && a.writer > b.writer)

const containsAll = (have: ReadonlyArray<string>, wanted: ReadonlyArray<string> | undefined) =>
  wanted === undefined || wanted.every((item) => have.includes(item))

const byId = (a: AgentInfo, b: AgentInfo) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

export const make = (
  modules: ReadonlyMap<string, AgentModule>,
  settings: RegistrySettings
): Effect.Effect<RegistryCore, never, Node | Scope.Scope> =>
  Effect.gen(function* () {
    const node = yield* Node
    const self = node.self
    const specs = new Map<string, SpecChange>()
    const locations = new Map<string, LocationChange>()
    const listeners: Array<(agent: string) => void> = []
    /** peers a push failed to reach: they get the whole table from the resync loop */
    const dirty = new Set<string>()
    // A hybrid logical clock: at least wall time, so that the writes of a restarted node (whose
    // counter starts again) still order after the writes of its previous life.
    let clock = 0
    const tick = () => (clock = Math.max(clock + 1, Date.now()))

    const apply = (change: Change) => {
      clock = Math.max(clock, change.version)
      if (change._tag === "Spec") {
        if (!newer(change, specs.get(change.spec.id))) return
        specs.set(change.spec.id, change)
        for (const listener of listeners) listener(change.spec.id)
      } else if (newer(change, locations.get(change.agent))) {
        locations.set(change.agent, change)
      }
    }

    const snapshot = (): Array<Change> => [...specs.values(), ...locations.values()]

    // --- replication ---

    const clientOf = node.clientFor(AgentRegistryRpcs, { lane: settings.lane })
    const push = (peer: string, changes: ReadonlyArray<Change>) =>
      clientOf(peer as NodeId).pipe(
        Effect.flatMap((client) => client.MabeamRegistryApply({ changes })),
        Effect.timeout(settings.replicationTimeout)
      )
    const pull = (peer: string) =>
      clientOf(peer as NodeId).pipe(
        Effect.flatMap((client) => client.MabeamRegistrySnapshot()),
        Effect.timeout(settings.replicationTimeout),
        Effect.map((changes) => changes.forEach(apply))
      )
    const livePeers = Effect.map(node.members, (members) =>
      members.filter((member) => member.info.id !== self.id && member.status === "up").map((m) => m.info.id)
    )

    const outbox = yield* Queue.unbounded<Outgoing>()
    yield* Effect.gen(function* () {
      const first = yield* Queue.take(outbox)
      const batch = [first, ...(yield* Queue.takeAll(outbox))]
      const changes = batch.flatMap((outgoing) => outgoing.changes)
      const peers = (yield* livePeers).filter((peer) => !dirty.has(peer))
      yield* Effect.forEach(
        peers,
        (peer) => push(peer, changes).pipe(Effect.catchAllCause(() => Effect.sync(() => dirty.add(peer)))),
        { concurrency: "unbounded", discard: true }
      )
      for (const outgoing of batch) if (outgoing.done) yield* Deferred.succeed(outgoing.done, undefined)
    }).pipe(Effect.forever, Effect.forkScoped)

    const replicate = (changes: ReadonlyArray<Change>, wait: boolean) =>
      Effect.gen(function* () {
        changes.forEach(apply)
        const done = wait ? yield* Deferred.make<void>() : undefined
        yield* Queue.offer(outbox, { changes, done })
        if (done) yield* Deferred.await(done)
      })

    const exchange = (peer: string) =>
      Effect.all([pull(peer), push(peer, snapshot())], { concurrency: 2, discard: true }).pipe(
        Effect.matchEffect({
          onFailure: () => Effect.sync(() => dirty.add(peer)),
          onSuccess: () => Effect.sync(() => dirty.delete(peer))
        })
      )

    yield* node.serve(
      AgentRegistryRpcs,
      yield* AgentRegistryRpcs.toHandlersContext({
        MabeamRegistryApply: ({ changes }) => Effect.sync(() => changes.forEach(apply)),
        MabeamRegistrySnapshot: () => Effect.sync(snapshot)
      })
    )

    const events = yield* node.events
    yield* events.pipe(
      Stream.runForEach((event) =>
        event._tag === "NodeUp"
          ? Effect.fork(exchange(event.node.id))
          : event._tag === "NodeDown"
            ? Effect.sync(() => dirty.delete(event.node.id))
            : Effect.void
      ),
      Effect.forkScoped
    )
    yield* Effect.forEach(yield* livePeers, exchange, { concurrency: "unbounded", discard: true }).pipe(
      Effect.forkScoped
    )
    yield* Effect.gen(function* () {
      const peers = yield* livePeers
      yield* Effect.forEach(
        peers.filter((peer) => dirty.has(peer)),
        exchange,
        { concurrency: "unbounded", discard: true }
      )
    }).pipe(Effect.schedule(Schedule.spaced(settings.resyncInterval)), Effect.forever, Effect.forkScoped)

    // --- the view ---

    const memberMap = Effect.map(
      node.members,
      (members) => new Map(members.map((m) => [m.info.id as string, m]))
    )

    /** Whether the agent's entity runs where its location says (that node incarnation is alive). */
    const runningOn = (agent: string, nodeId: string, members: ReadonlyMap<string, Member>) => {
      const location = locations.get(agent)
      const member = location && members.get(location.node)
      return (
        location?.node === nodeId &&
        location.health !== "stopped" &&
        member !== undefined &&
        member.status !== "down" &&
        member.info.startedAt === location.incarnation
      )
    }

    const infoOf = (record: SpecChange, members: ReadonlyMap<string, Member>): AgentInfo => {
      const location = locations.get(record.spec.id)
      let health: Health = "starting"
      let reason: string | undefined
      if (location) {
        const member = members.get(location.node)
        const alive = member && member.status !== "down" && member.info.startedAt === location.incarnation
        if (alive) {
          if (location.health === "stopped") {
            reason = `its shard moved from ${location.node}; it starts again on the new owner`
          } else {
            health = location.health
            reason = location.reason
          }
        } else {
          health = record.spec.restart === "permanent" ? "starting" : "unhealthy"
          reason =
            record.spec.restart === "permanent"
              ? `its node ${location.node} is down; it starts again on a survivor`
              : `its node ${location.node} is down (restart: temporary)`
        }
      }
      return {
        ...record.spec,
        node: location?.node,
        health,
        healthReason: reason,
        load: location?.load ?? 0,
        registeredAt: record.registeredAt,
        registeredBy: record.registeredBy
      }
    }

    const find = (query: Query) =>
      Effect.map(memberMap, (members) => {
        const healths = query.health === "any" ? undefined : new Set(query.health ?? ["healthy", "starting"])
        const found: Array<AgentInfo> = []
        for (const record of specs.values()) {
          if (record.deleted) continue
          if (!containsAll(record.spec.capabilities, query.capabilities)) continue
          if (!containsAll(record.spec.protocols, query.protocols)) continue
          if (query.node !== undefined && !runningOn(record.spec.id, query.node, members)) continue
          const info = infoOf(record, members)
          if (healths && !healths.has(info.health)) continue
          found.push(info)
        }
        return found.sort(byId)
      })

    const liveSpec = (agent: string) => {
      const record = specs.get(agent)
      return record && !record.deleted ? record : undefined
    }

    const register: AgentRegistry["Type"]["register"] = (registration) =>
      Effect.gen(function* () {
        const name = typeof registration.module === "string" ? registration.module : registration.module.name
        const module = modules.get(name)
        if (!module) return yield* new UnknownModule({ module: name, known: Array.from(modules.keys()) })
        const args =
          typeof registration.module === "string"
            ? Either.map(Schema.decodeUnknownEither(module.args)(registration.args), () => registration.args)
            : Schema.encodeUnknownEither(module.args)(registration.args)
        if (Either.isLeft(args)) {
          return yield* new InvalidAgentSpec({
            agent: registration.id,
            reason: `its arguments do not fit module ${name}: ${args.left.message}`
          })
        }
        const spec = Schema.validateEither(AgentSpec)({
          id: registration.id,
          module: name,
          args: args.right,
          capabilities: registration.capabilities ?? [],
          protocols: registration.protocols ?? [],
          resources: registration.resources ?? {},
          metadata: registration.metadata ?? {},
          strategy: registration.strategy ?? "singleton",
          restart: registration.restart ?? "permanent"
        })
        if (Either.isLeft(spec)) {
          return yield* new InvalidAgentSpec({ agent: registration.id, reason: spec.left.message })
        }
        const existing = liveSpec(registration.id)
        if (existing && !registration.replace) {
          return yield* new AgentAlreadyRegistered({ agent: registration.id, module: existing.spec.module })
        }
        const record: SpecChange = {
          _tag: "Spec",
          spec: spec.right,
          version: tick(),
          writer: self.id,
          deleted: false,
          registeredAt: Date.now(),
          registeredBy: self.id
        }
        yield* replicate([record], true)
        return infoOf(record, yield* memberMap)
      })

    const service = AgentRegistry.of({
      register,
      deregister: (id) =>
        Effect.suspend(() => {
          const existing = liveSpec(id)
          if (!existing) return Effect.succeed(false)
          return Effect.as(
            replicate([{ ...existing, deleted: true, version: tick(), writer: self.id }], true),
            true
          )
        }),
      lookup: (id) =>
        Effect.map(memberMap, (members) => {
          const record = liveSpec(id)
          return record ? Option.some(infoOf(record, members)) : Option.none()
        }),
      list: find({ health: "any" }),
      find,
      findByCapabilities: (capabilities, query) => find({ ...query, capabilities }),
      leastLoaded: (count, query) =>
        Effect.map(find({ ...query, health: ["healthy"] }), (found) =>
          found.sort((a, b) => a.load - b.load || byId(a, b)).slice(0, Math.max(0, count))
        ),
      byNode: (nodeId) => find({ node: nodeId, health: "any" }),
      setHealth: (id, health, reason) =>
        Effect.suspend((): Effect.Effect<void, UnknownAgent | AgentNotStarted> => {
          if (!liveSpec(id)) return Effect.fail(new UnknownAgent({ agent: id }))
          const location = locations.get(id)
          if (!location)
            return Effect.fail(new AgentNotStarted({ agent: id, reason: "it has not started yet" }))
          const { reason: _previous, ...rest } = location
          return replicate(
            [
              {
                ...rest,
                health,
                ...(reason === undefined ? {} : { reason }),
                version: tick(),
                writer: self.id
              }
            ],
            true
          )
        })
    })

    return {
      service,
      spec: liveSpec,
      location: (agent) => locations.get(agent),
      publishLocation: (agent, health, reason, wait) =>
        Effect.suspend(() => {
          const previous = locations.get(agent)
          const here = previous?.node === self.id && previous.incarnation === self.startedAt
          // a stop only speaks for this node: another node may have started the agent since
          if (health === "stopped" && !here) return Effect.void
          return replicate(
            [
              {
                _tag: "Location",
                agent,
                node: self.id,
                incarnation: self.startedAt,
                health,
                ...(reason === undefined ? {} : { reason }),
                load: here ? previous.load : 0,
                version: tick(),
                writer: self.id
              }
            ],
            wait
          )
        }),
      publishLoads: (loads) =>
        Effect.suspend(() => {
          const changes: Array<Change> = []
          for (const [agent, load] of loads) {
            const location = locations.get(agent)
            if (!location || location.node !== self.id || location.incarnation !== self.startedAt) continue
            if (location.load === load) continue
            changes.push({ ...location, load, version: tick(), writer: self.id })
          }
          return changes.length === 0 ? Effect.void : replicate(changes, false)
        }),
      onSpecChange: (listener) => void listeners.push(listener),
      agentsOn: (nodeId, incarnation) =>
        Array.from(specs.values()).filter((record) => {
          if (record.deleted) return false
          const location = locations.get(record.spec.id)
          return location?.node === nodeId && location.incarnation === incarnation
        })
    }
  })
