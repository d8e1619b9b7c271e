import type { Member, Node, NodeId } from "@foundation/core/Node"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { AgentRequest, ReplyOf } from "../Agent.js"
import { AgentCallRpcs, AgentCalls, defaultTimeout, distinct, fromWire } from "../AgentCalls.js"
import { UnknownAgents } from "../MabeamError.js"
import type { HostService } from "./host.js"
import { describeCause, noAnswer, timedOut, type WireAnswer } from "./instance.js"
import type { RegistryCore } from "./registry.js"

/** The share of a call's timeout kept for the reply's trip back from a remote node (at most 50 ms). */
const remoteBudget = (timeoutMs: number) => timeoutMs - Math.min(50, timeoutMs * 0.1)

const alive = (member: Member | undefined, incarnation: number) =>
  member !== undefined && member.status !== "down" && member.info.startedAt === incarnation

export const make = (options: {
  readonly node: Node["Type"]
  readonly registry: RegistryCore
  readonly host: HostService
  readonly lane: string
}): AgentCalls["Type"] => {
  const { host, node, registry } = options
  const self = node.self.id
  const clientOf = node.clientFor(AgentCallRpcs, { lane: options.lane })

  const remote = (peer: string, agents: ReadonlyArray<string>, request: AgentRequest, timeoutMs: number) =>
    clientOf(peer as NodeId).pipe(
      Effect.flatMap((client) => client.MabeamAsk({ agents, request, timeoutMs: remoteBudget(timeoutMs) })),
      Effect.timeoutTo({
        duration: timeoutMs,
        onTimeout: (): ReadonlyArray<WireAnswer> => agents.map(() => timedOut(timeoutMs)),
        onSuccess: (answers): ReadonlyArray<WireAnswer> => answers
      }),
      Effect.catchAllCause((cause) =>
        Effect.succeed(
          agents.map(() => noAnswer("unreachable", `node ${peer} did not answer: ${describeCause(cause)}`))
        )
      )
    )

  const ask = <R extends AgentRequest>(
    agents: ReadonlyArray<string>,
    request: R,
    askOptions?: { readonly timeout?: Duration.DurationInput | undefined }
  ) =>
    Effect.gen(function* () {
      const timeoutMs = Duration.toMillis(askOptions?.timeout ?? defaultTimeout)
      const members = new Map((yield* node.members).map((member) => [member.info.id as string, member]))
      const answers = new Array<WireAnswer>(agents.length)
      const groups = new Map<string, Array<number>>()
      const viaEngine: Array<number> = []
      agents.forEach((agent, index) => {
        if (!registry.spec(agent)) {
          answers[index] = noAnswer("unknown-agent", `agent ${agent} is not registered`)
          return
        }
        const location = registry.location(agent)
        if (location && alive(members.get(location.node), location.incarnation)) {
          const group = groups.get(location.node)
          if (group) group.push(index)
          else groups.set(location.node, [index])
        } else {
          viaEngine.push(index)
        }
      })
      const fill = (indexes: ReadonlyArray<number>) => (results: ReadonlyArray<WireAnswer>) => {
        indexes.forEach((index, position) => (answers[index] = results[position]))
      }
      const work: Array<Effect.Effect<void>> = []
      for (const [peer, indexes] of groups) {
        const ids = indexes.map((index) => agents[index])
        work.push(
          Effect.map(
            peer === self ? host.askLocal(ids, request, timeoutMs) : remote(peer, ids, request, timeoutMs),
            fill(indexes)
          )
        )
      }
      for (const index of viaEngine) {
        work.push(
          Effect.map(host.engineAsk(agents[index], request, timeoutMs), (answer) => {
            answers[index] = answer
          })
        )
      }
      yield* Effect.all(work, { concurrency: "unbounded", discard: true })
      return fromWire<ReplyOf<R>>(agents, answers)
    })

  return AgentCalls.of({
    resolve: (agents) =>
      Effect.suspend(() => {
        const unique = distinct(agents)
        const unknown = unique.filter((agent) => !registry.spec(agent))
        return unknown.length > 0
          ? Effect.fail(new UnknownAgents({ agents: unknown }))
          : Effect.succeed(unique)
      }),
    ask,
    start: (agent, startOptions) =>
      host.start(agent, Duration.toMillis(startOptions?.timeout ?? Duration.seconds(10)))
  })
}
