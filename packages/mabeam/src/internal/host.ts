import type { Node } from "@foundation/core/Node"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import { identity } from "effect/Function"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { AgentContext, AgentModule, AgentReply, AgentRequest, StatusReply } from "../Agent.js"
import { AgentEntity } from "../Agent.js"
import {
  type AgentError,
  AgentFailed,
  AgentNotStarted,
  ProtocolNotSupported,
  UnknownAgent,
  UnknownModule
} from "../MabeamError.js"
import {
  answered,
  describeCause,
  Instance,
  type Job,
  noAnswer,
  runAll,
  timedOut,
  type WireAnswer
} from "./instance.js"
import type { RegistryCore, SpecRecord } from "./registry.js"

/** The engine's client factory for agents: `AgentEntity.client`. */
export type EntityClients = Effect.Effect.Success<typeof AgentEntity.client>

interface Broken {
  readonly _tag: "Broken"
  readonly answer: WireAnswer
}
type Built = Instance | Broken

interface Slot {
  readonly built: Built
  readonly scope: Scope.CloseableScope | undefined
  readonly version: number
}

/** The agents this node runs, and the ways to reach agents from here. */
export interface HostService {
  /** called from the entity's build: this node now runs `agent` (until the scope closes) */
  readonly activate: (agent: string) => Effect.Effect<void, never, Scope.Scope>
  /** the entity's handler: one request to an agent this node runs */
  readonly call: (agent: string, request: AgentRequest) => Effect.Effect<AgentReply, AgentError>
  /** one request to agents this node runs, in-process; the others through the engine */
  readonly askLocal: (
    agents: ReadonlyArray<string>,
    request: AgentRequest,
    timeoutMs: number
  ) => Effect.Effect<Array<WireAnswer>>
  /** one request to one agent through the engine (`AgentEntity.client`) */
  readonly engineAsk: (agent: string, request: AgentRequest, timeoutMs: number) => Effect.Effect<WireAnswer>
  /** starts an agent through the engine by asking its `Status` */
  readonly start: (
    agent: string,
    timeoutMs: number
  ) => Effect.Effect<StatusReply, AgentNotStarted | UnknownAgent>
  /** this node is shutting down: its entities stop without announcing or moving anything */
  readonly stop: Effect.Effect<void>
}

export class Host extends Context.Tag("@foundation/mabeam/internal/Host")<Host, HostService>() {}

const protocolOf = (request: AgentRequest) => request._tag.toLowerCase()

const engineCall = (
  client: ReturnType<EntityClients>,
  request: AgentRequest
): Effect.Effect<AgentReply, { readonly _tag: string; readonly message: string }> => {
  switch (request._tag) {
    case "Bid": {
      const { _tag, ...payload } = request
      return client.Bid(payload)
    }
    case "Vote": {
      const { _tag, ...payload } = request
      return client.Vote(payload)
    }
    case "Offer": {
      const { _tag, ...payload } = request
      return client.Offer(payload)
    }
    case "Respond": {
      const { _tag, ...payload } = request
      return client.Respond(payload)
    }
    case "Status":
      return client.Status()
  }
}

const answerOfError = (error: { readonly _tag: string; readonly message: string }): WireAnswer => {
  switch (error._tag) {
    case "UnknownAgent":
      return noAnswer("unknown-agent", error.message)
    case "ProtocolNotSupported":
      return noAnswer("not-supported", error.message)
    case "AgentFailed":
      return noAnswer((error as AgentFailed).reason, (error as AgentFailed).detail)
    default:
      return noAnswer("unreachable", `${error._tag}: ${error.message}`)
  }
}

export const make = (options: {
  readonly node: Node["Type"]
  readonly registry: RegistryCore
  readonly modules: ReadonlyMap<string, AgentModule>
  readonly clients: EntityClients
  readonly loadInterval: Duration.Duration
  readonly restartTimeout: Duration.Duration
}): Effect.Effect<HostService, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { clients, modules, node, registry } = options
    const self = node.self
    const hostScope = yield* Effect.scope
    const active = new Set<string>()
    let stopping = false
    const slots = new Map<string, Slot>()
    const building = new Map<
      string,
      { readonly version: number; readonly deferred: Deferred.Deferred<Built> }
    >()

    const broken = (answer: WireAnswer): Broken => ({ _tag: "Broken", answer })
    const notRegistered = (agent: string) =>
      broken(noAnswer("unknown-agent", new UnknownAgent({ agent }).message))

    const drop = (agent: string) =>
      Effect.suspend(() => {
        const slot = slots.get(agent)
        slots.delete(agent)
        return slot?.scope ? Scope.close(slot.scope, Exit.void) : Effect.void
      })

    const build = (agent: string, record: SpecRecord): Effect.Effect<Slot> =>
      Effect.gen(function* () {
        const version = record.version
        const module = modules.get(record.spec.module)
        if (!module) {
          const error = new UnknownModule({ module: record.spec.module, known: Array.from(modules.keys()) })
          return { built: broken(noAnswer("failed", error.message)), scope: undefined, version }
        }
        const args = Schema.decodeUnknownEither(module.args)(record.spec.args)
        if (args._tag === "Left") {
          const detail = `its arguments do not fit module ${module.name}: ${args.left.message}`
          return { built: broken(noAnswer("failed", detail)), scope: undefined, version }
        }
        const context: AgentContext = {
          agentId: agent,
          node: self.id,
          module: module.name,
          capabilities: record.spec.capabilities,
          metadata: record.spec.metadata
        }
        const scope = yield* Scope.make()
        const exit = yield* Effect.exit(Scope.extend(module.make(args.right, context), scope))
        if (Exit.isFailure(exit)) {
          yield* Scope.close(scope, Exit.void)
          const detail = `module ${module.name} failed to build it: ${describeCause(exit.cause)}`
          return { built: broken(noAnswer("failed", detail)), scope: undefined, version }
        }
        return { built: new Instance(agent, self.id, module.name, exit.value, version), scope, version }
      })

    /** The agent's instance if it is built from its current registration, without waiting. */
    const current = (agent: string): Built | undefined => {
      const record = registry.spec(agent)
      const slot = slots.get(agent)
      return record && slot && slot.version === record.version ? slot.built : undefined
    }

    /** The agent's instance, built from its current registration (once, however many ask at once). */
    const ensure = (agent: string): Effect.Effect<Built> =>
      Effect.suspend(() => {
        const record = registry.spec(agent)
        if (!record) return Effect.as(drop(agent), notRegistered(agent))
        const slot = slots.get(agent)
        if (slot && slot.version === record.version) return Effect.succeed(slot.built)
        const pending = building.get(agent)
        if (pending && pending.version === record.version) return Deferred.await(pending.deferred)
        const deferred = Deferred.unsafeMake<Built>(FiberId.none)
        building.set(agent, { version: record.version, deferred })
        // built in a fiber of the host, so that a caller giving up does not leave the others waiting
        const install = Effect.gen(function* () {
          const built = yield* build(agent, record)
          if (building.get(agent)?.deferred === deferred) building.delete(agent)
          if (!active.has(agent)) {
            if (built.scope) yield* Scope.close(built.scope, Exit.void)
            return broken(noAnswer("unreachable", `agent ${agent} no longer runs on ${self.id}`))
          }
          yield* drop(agent)
          slots.set(agent, built)
          // where it runs, and whether it could be built, for every node's registry
          if (built.built instanceof Instance)
            yield* registry.publishLocation(agent, "healthy", undefined, true)
          else if (built.built.answer._tag === "NoAnswer") {
            yield* registry.publishLocation(agent, "unhealthy", built.built.answer.detail, true)
          }
          return built.built
        }).pipe(
          Effect.catchAllCause((cause) => Effect.succeed(broken(noAnswer("failed", describeCause(cause))))),
          Effect.flatMap((built) => Deferred.succeed(deferred, built))
        )
        return Effect.zipRight(Effect.forkIn(install, hostScope), Deferred.await(deferred))
      })

    registry.onSpecChange((agent) => {
      if (active.has(agent)) Effect.runFork(Effect.forkIn(ensure(agent), hostScope))
    })

    const answerOf = (built: Built, request: AgentRequest, timeoutMs?: number) =>
      built instanceof Instance ? built.execute(request, timeoutMs) : Effect.succeed(built.answer)

    const engineAsk = (agent: string, request: AgentRequest, timeoutMs: number): Effect.Effect<WireAnswer> =>
      Effect.suspend(() => engineCall(clients(agent), request)).pipe(
        Effect.map(answered),
        Effect.catchAll((error) => Effect.succeed(answerOfError(error))),
        Effect.timeoutTo({
          duration: Math.max(0, timeoutMs),
          onTimeout: () => timedOut(timeoutMs),
          onSuccess: identity
        }),
        Effect.catchAllCause((cause) => Effect.succeed(noAnswer("unreachable", describeCause(cause))))
      )

    const start = (agent: string, timeoutMs: number) =>
      Effect.suspend((): Effect.Effect<StatusReply, AgentNotStarted | UnknownAgent> => {
        if (!registry.spec(agent)) return Effect.fail(new UnknownAgent({ agent }))
        return clients(agent)
          .Status()
          .pipe(
            Effect.timeoutFail({
              duration: timeoutMs,
              onTimeout: () => new AgentNotStarted({ agent, reason: `no status within ${timeoutMs} ms` })
            }),
            Effect.catchAllCause((cause) => {
              const failure = Cause.failureOption(cause)
              return Effect.fail(
                failure._tag === "Some" && failure.value._tag === "AgentNotStarted"
                  ? failure.value
                  : new AgentNotStarted({ agent, reason: describeCause(cause) })
              )
            })
          )
      })

    // Restart per spec: when a node dies, the first live node by id starts its `permanent` agents
    // through the engine, which places each on the survivor now owning its shard.
    const events = yield* node.events
    yield* events.pipe(
      Stream.runForEach((event) => {
        if (event._tag !== "NodeDown") return Effect.void
        return Effect.gen(function* () {
          const up = (yield* node.members)
            .filter((member) => member.status === "up")
            .map((member) => member.info.id as string)
            .sort()
          if (up[0] !== self.id) return
          const agents = registry
            .agentsOn(event.node.id, event.node.startedAt)
            .filter((record) => record.spec.restart === "permanent")
            .map((record) => record.spec.id)
          if (agents.length === 0) return
          yield* Effect.logInfo(`restarting ${agents.length} agents of ${event.node.id} on the survivors`)
          yield* Effect.forEach(
            agents,
            (agent) =>
              start(agent, Duration.toMillis(options.restartTimeout)).pipe(
                Effect.catchAll((error) =>
                  Effect.logWarning(`agent ${agent} did not restart: ${error.message}`)
                )
              ),
            { concurrency: 32, discard: true }
          )
        }).pipe(Effect.forkIn(hostScope))
      }),
      Effect.forkScoped
    )

    // Loads, for `AgentRegistry.leastLoaded`: every agent's `Status`, at most `loadInterval` apart.
    yield* Effect.gen(function* () {
      const running = Array.from(slots).flatMap(([agent, slot]) =>
        slot.built instanceof Instance ? [[agent, slot.built] as const] : []
      )
      const answers = yield* runAll(
        running.map(([, instance]) => ({ effect: instance.answer({ _tag: "Status" }) })),
        Duration.toMillis(options.loadInterval)
      )
      yield* registry.publishLoads(
        answers.flatMap((answer, index) =>
          answer._tag === "Answered" && answer.reply._tag === "Status"
            ? [[running[index][0], answer.reply.load] as const]
            : []
        )
      )
    }).pipe(Effect.schedule(Schedule.spaced(options.loadInterval)), Effect.forever, Effect.forkScoped)

    return {
      activate: (agent) =>
        Effect.gen(function* () {
          active.add(agent)
          // The entity stops when its shard moves (a node joined) or this node shuts down. A moved
          // `permanent` agent is started on its new owner at once, from a fiber of the host; on
          // shutdown (`stopping`) nothing is sent, as the survivors restart it on NodeDown.
          yield* Effect.addFinalizer(() =>
            Effect.suspend(() => {
              active.delete(agent)
              if (stopping) return drop(agent)
              const record = registry.spec(agent)
              return drop(agent).pipe(
                Effect.zipRight(registry.publishLocation(agent, "stopped", undefined, false)),
                Effect.zipRight(
                  record?.spec.restart === "permanent"
                    ? Effect.forkIn(
                        Effect.ignore(start(agent, Duration.toMillis(options.restartTimeout))),
                        hostScope
                      )
                    : Effect.void
                )
              )
            })
          )
          yield* ensure(agent)
        }),
      call: (agent, request) =>
        Effect.flatMap(ensure(agent), (built) =>
          Effect.flatMap(answerOf(built, request), (answer): Effect.Effect<AgentReply, AgentError> => {
            if (answer._tag === "Answered") return Effect.succeed(answer.reply)
            switch (answer.reason) {
              case "unknown-agent":
                return Effect.fail(new UnknownAgent({ agent }))
              case "not-supported":
                return Effect.fail(new ProtocolNotSupported({ agent, protocol: protocolOf(request) }))
              case "invalid-reply":
                return Effect.fail(new AgentFailed({ agent, reason: "invalid-reply", detail: answer.detail }))
              default:
                return Effect.fail(new AgentFailed({ agent, reason: "failed", detail: answer.detail }))
            }
          })
        ),
      askLocal: (agents, request, timeoutMs) =>
        runAll(
          agents.map((agent): Job => {
            if (!active.has(agent)) return { effect: engineAsk(agent, request, timeoutMs) }
            const ready = current(agent)
            if (ready instanceof Instance) return { effect: ready.answer(request), instance: ready }
            if (ready) return { effect: Effect.succeed(ready.answer) }
            return { effect: Effect.flatMap(ensure(agent), (built) => answerOf(built, request)) }
          }),
          timeoutMs
        ),
      engineAsk,
      start,
      stop: Effect.sync(() => {
        stopping = true
      })
    }
  })
