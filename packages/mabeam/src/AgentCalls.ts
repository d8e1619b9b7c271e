/**
 * Asking many agents at once: one request, every agent of a list, concurrently, each answer awaited
 * up to a timeout. This is what every coordination run (`Auction`, `Consensus`, `Negotiation`) is
 * made of.
 *
 * Guarantees:
 * - `ask` never fails: an agent that does not answer in time, whose node is unreachable, which is not
 *   registered, has no handler for the request, fails, or answers something outside the protocol,
 *   is a `NoAnswer` with its reason and a readable detail;
 * - `ask` returns within its timeout: a remote node's handlers get the timeout minus a margin for the
 *   reply's trip (10 %, at most 50 ms), and the call to that node is cut at the timeout;
 * - answers come back in the order of the agents asked.
 *
 * What `layer` (built by `Mabeam.layer`) does underneath, per `ask`:
 * - it groups the agents by the node their entity runs on (`AgentRegistry`'s location, which the
 *   entity publishes when it starts);
 * - agents on this node are called in-process; agents on another live node get one node-RPC call per
 *   node (`Node.clientFor(AgentCallRpcs, { lane: "mabeam" })(node).MabeamAsk({ agents, request })`),
 *   which calls them in-process there;
 * - an agent whose location is unknown or stale (never started, its node down, its shard moved) is
 *   called through the engine, `AgentEntity.client(agent)[request._tag](...)`, which starts it on
 *   the node owning its shard. The node that receives a batch does the same for agents it no
 *   longer hosts.
 *
 * Why batch: an engine entity call costs the caller about 0.3 ms of CPU (ENGINE-NOTES §10), so a
 * sealed-bid auction among 1000 agents would spend 300 ms on the caller alone; one node-RPC call
 * per node costs about as much as one entity call. Drop down to `AgentEntity.client` to call one
 * agent with the engine's delivery semantics.
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { AgentHandlers, AgentId, ReplyOf, StatusReply } from "./Agent.js"
import { AgentReply, AgentRequest } from "./Agent.js"
import { Instance, type Job, runAll, type WireAnswer as InternalWireAnswer } from "./internal/instance.js"
import { AgentNotStarted, NoAnswerReason, UnknownAgent, UnknownAgents } from "./MabeamError.js"

/** One agent's answer on the wire (positional: the i-th answer is the i-th agent's). */
export const WireAnswer: Schema.Schema<InternalWireAnswer, any> = Schema.Union(
  Schema.TaggedStruct("Answered", { reply: AgentReply }),
  Schema.TaggedStruct("NoAnswer", { reason: NoAnswerReason, detail: Schema.String })
)

/**
 * The node-RPC group every node serves for MABEAM calls: `MabeamAsk` asks the listed agents, which
 * the receiving node hosts, one request, each answer awaited up to `timeoutMs`.
 */
export class AgentCallRpcs extends RpcGroup.make(
  Rpc.make("MabeamAsk", {
    payload: { agents: Schema.Array(Schema.String), request: AgentRequest, timeoutMs: Schema.Number },
    success: Schema.Array(WireAnswer)
  })
) {}

/** One agent's answer: its reply, or why there is none. */
export type Answer<R> =
  | { readonly _tag: "Answered"; readonly agent: AgentId; readonly reply: R }
  | {
      readonly _tag: "NoAnswer"
      readonly agent: AgentId
      readonly reason: NoAnswerReason
      readonly detail: string
    }

/** The timeout of one call to an agent when a run does not give one: 5 s, as the seed's `GenServer.call`. */
export const defaultTimeout: Duration.Duration = Duration.seconds(5)

/** The service that reaches agents. */
export class AgentCalls extends Context.Tag("@foundation/mabeam/AgentCalls")<
  AgentCalls,
  {
    /**
     * The agents of a run, once each, in their first order; fails with `UnknownAgents` (and asks
     * nobody) if one is not registered.
     */
    readonly resolve: (agents: ReadonlyArray<AgentId>) => Effect.Effect<ReadonlyArray<AgentId>, UnknownAgents>
    /** Asks every agent `request`; see the module's guarantees. */
    readonly ask: <R extends AgentRequest>(
      agents: ReadonlyArray<AgentId>,
      request: R,
      options?: { readonly timeout?: Duration.DurationInput | undefined }
    ) => Effect.Effect<ReadonlyArray<Answer<ReplyOf<R>>>>
    /**
     * Starts an agent where the engine places it, by asking its entity for its `Status` (raw call:
     * `AgentEntity.client(agent).Status()`), and returns that status.
     */
    readonly start: (
      agent: AgentId,
      options?: { readonly timeout?: Duration.DurationInput | undefined }
    ) => Effect.Effect<StatusReply, AgentNotStarted | UnknownAgent>
  }
>() {}

/** The answers of `agents`, from the answers on the wire in the same order. */
export const fromWire = <R>(
  agents: ReadonlyArray<AgentId>,
  answers: ReadonlyArray<InternalWireAnswer>
): Array<Answer<R>> =>
  answers.map((answer, index) =>
    answer._tag === "Answered"
      ? { _tag: "Answered", agent: agents[index], reply: answer.reply as R }
      : { _tag: "NoAnswer", agent: agents[index], reason: answer.reason, detail: answer.detail }
  )

/** The agents, once each, in their first order. */
export const distinct = (agents: ReadonlyArray<AgentId>): ReadonlyArray<AgentId> =>
  Array.from(new Set(agents))

/**
 * Agents in this process only, from their handlers, with the same rules as the cluster layer
 * (timeouts, reply checks, failures as `NoAnswer`). For unit tests of coordination logic and for
 * single-process programs; no entity, no node.
 */
export const layerLocal = (agents: Readonly<Record<AgentId, AgentHandlers>>): Layer.Layer<AgentCalls> =>
  Layer.sync(AgentCalls, () => {
    const instances = new Map(
      Object.entries(agents).map(([id, handlers]) => [id, new Instance(id, "local", "local", handlers, 0)])
    )
    const resolve = (list: ReadonlyArray<AgentId>) => {
      const unique = distinct(list)
      const unknown = unique.filter((agent) => !instances.has(agent))
      return unknown.length > 0 ? Effect.fail(new UnknownAgents({ agents: unknown })) : Effect.succeed(unique)
    }
    return AgentCalls.of({
      resolve,
      ask: <R extends AgentRequest>(
        list: ReadonlyArray<AgentId>,
        request: R,
        options?: { readonly timeout?: Duration.DurationInput | undefined }
      ) => {
        const timeoutMs = Duration.toMillis(options?.timeout ?? defaultTimeout)
        const jobs = list.map((agent): Job => {
          const instance = instances.get(agent)
          return instance
            ? { effect: instance.answer(request), instance }
            : {
                effect: Effect.succeed({
                  _tag: "NoAnswer",
                  reason: "unknown-agent",
                  detail: `agent ${agent} is not registered`
                })
              }
        })
        return Effect.map(runAll(jobs, timeoutMs), (answers) => fromWire<ReplyOf<R>>(list, answers))
      },
      start: (agent) => {
        const instance = instances.get(agent)
        if (!instance) return Effect.fail(new UnknownAgent({ agent }))
        return Effect.flatMap(instance.execute({ _tag: "Status" }), (answer) =>
          answer._tag === "Answered" && answer.reply._tag === "Status"
            ? Effect.succeed(answer.reply)
            : Effect.fail(
                new AgentNotStarted({
                  agent,
                  reason: answer._tag === "NoAnswer" ? answer.detail : "no status"
                })
              )
        )
      }
    })
  })
