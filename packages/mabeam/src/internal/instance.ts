import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import { identity } from "effect/Function"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import type { AgentHandlers, AgentRequest, AgentReply, Replies, StatusReply } from "../Agent.js"
import { replySchemas } from "../Agent.js"
import type { NoAnswerReason } from "../MabeamError.js"

/** One answer as it travels back from a node: positional, the agent is implied by the request. */
export type WireAnswer =
  | { readonly _tag: "Answered"; readonly reply: AgentReply }
  | { readonly _tag: "NoAnswer"; readonly reason: NoAnswerReason; readonly detail: string }

export const answered = (reply: AgentReply): WireAnswer => ({ _tag: "Answered", reply })
export const noAnswer = (reason: NoAnswerReason, detail: string): WireAnswer => ({
  _tag: "NoAnswer",
  reason,
  detail
})

export const timedOut = (timeoutMs: number) =>
  noAnswer("timeout", `no answer within ${Math.round(timeoutMs)} ms`)

const validators: Record<keyof Replies, (u: unknown) => Either.Either<AgentReply, Error>> = {
  Bid: Schema.validateEither(replySchemas.Bid),
  Vote: Schema.validateEither(replySchemas.Vote),
  Offer: Schema.validateEither(replySchemas.Offer),
  Respond: Schema.validateEither(replySchemas.Respond),
  Status: Schema.validateEither(replySchemas.Status)
}

const protocolOf: Record<AgentRequest["_tag"], string> = {
  Bid: "bid",
  Vote: "vote",
  Offer: "offer",
  Respond: "respond",
  Status: "status"
}

/** A short, one-line description of why a handler failed. */
export const describeCause = (cause: Cause.Cause<unknown>): string => {
  if (Cause.isInterruptedOnly(cause)) return "interrupted"
  const error = Cause.squash(cause)
  if (error instanceof Error) return error.message || error.name
  if (typeof error === "object" && error !== null && "_tag" in error) return String(error._tag)
  return String(error)
}

/**
 * A running agent: its handlers, the requests it is serving, and how to answer one request. Both
 * paths to an agent (the engine's entity call and MABEAM's per-node batch) run here, so they share
 * one instance and one state.
 */
export class Instance {
  inFlight = 0

  constructor(
    readonly agent: string,
    readonly node: string,
    readonly module: string,
    readonly handlers: AgentHandlers,
    /** the registration version it was built from; a newer registration rebuilds it */
    readonly version: number
  ) {}

  private status(): Effect.Effect<StatusReply, unknown> {
    const base = { _tag: "Status" as const, agent: this.agent, node: this.node, module: this.module }
    const status = this.handlers.status
    if (!status) return Effect.sync(() => ({ ...base, load: this.inFlight, inFlight: this.inFlight }))
    return Effect.map(status, (report) => ({
      ...base,
      load: typeof report.load === "number" ? report.load : this.inFlight,
      inFlight: this.inFlight,
      ...(report.detail === undefined ? {} : { detail: report.detail })
    }))
  }

  private handlerOf(request: AgentRequest): (() => Effect.Effect<unknown, unknown>) | undefined {
    const handlers = this.handlers
    switch (request._tag) {
      case "Bid":
        return handlers.bid && (() => handlers.bid!(request))
      case "Vote":
        return handlers.vote && (() => handlers.vote!(request))
      case "Offer":
        return handlers.offer && (() => handlers.offer!(request))
      case "Respond":
        return handlers.respond && (() => handlers.respond!(request))
      case "Status":
        return () => this.status()
    }
  }

  /**
   * Answers one request: runs the handler (its failures and defects become `failed`) and checks the
   * reply against the protocol's Schema (`invalid-reply` with the parse error otherwise). It does
   * not count the request in `inFlight`: `execute` and `runAll` do.
   */
  answer(request: AgentRequest): Effect.Effect<WireAnswer> {
    const handler = this.handlerOf(request)
    if (!handler) {
      return Effect.succeed(
        noAnswer("not-supported", `agent ${this.agent} has no ${protocolOf[request._tag]} handler`)
      )
    }
    const validate = validators[request._tag]
    return Effect.matchCause(Effect.suspend(handler), {
      onFailure: (cause): WireAnswer => noAnswer("failed", describeCause(cause)),
      onSuccess: (reply: unknown): WireAnswer =>
        Either.match(validate(reply), {
          onLeft: (error) => noAnswer("invalid-reply", error.message),
          onRight: (valid) => answered(valid)
        })
    })
  }

  /** `answer`, counted in `inFlight`, and, given a timeout, cut after it (`timeout`). */
  execute(request: AgentRequest, timeoutMs?: number): Effect.Effect<WireAnswer> {
    const run = Effect.suspend(() => {
      this.inFlight++
      return Effect.ensuring(
        this.answer(request),
        Effect.sync(() => this.inFlight--)
      )
    })
    return timeoutMs === undefined
      ? run
      : Effect.timeoutTo(run, {
          duration: Math.max(0, timeoutMs),
          onTimeout: () => timedOut(timeoutMs),
          onSuccess: identity
        })
  }
}

/** One answer to produce, and the instance it counts against (if any). */
export interface Job {
  readonly effect: Effect.Effect<WireAnswer>
  readonly instance?: Instance | undefined
}

const settle = (exit: Exit.Exit<WireAnswer>): WireAnswer =>
  Exit.isSuccess(exit) ? exit.value : noAnswer("failed", describeCause(exit.cause))

/**
 * Produces every job's answer, at most `timeoutMs` after the call. Why not `Effect.forEach` with
 * unbounded concurrency and a timeout per job: that forks two fibers and a timer per agent, about
 * 0.1 to 0.3 ms each, which is the whole budget of a 1000-agent auction. Here each job starts in a
 * fiber that runs synchronously as far as it can (`Runtime.runFork` starts immediately); most
 * handlers finish there. Only the jobs that suspend are awaited, together, under one timer; those
 * still running at the deadline are answered `timeout` and interrupted.
 */
export const runAll = (jobs: ReadonlyArray<Job>, timeoutMs: number): Effect.Effect<Array<WireAnswer>> =>
  Effect.flatMap(Effect.runtime<never>(), (runtime) => {
    const startedAt = Date.now()
    const fork = Runtime.runFork(runtime)
    const results = new Array<WireAnswer>(jobs.length)
    const pending: Array<number> = []
    const fibers: Array<Fiber.RuntimeFiber<WireAnswer>> = []
    jobs.forEach((job, index) => {
      const instance = job.instance
      if (instance) instance.inFlight++
      const fiber = fork(job.effect)
      const exit = fiber.unsafePoll()
      if (exit) {
        if (instance) instance.inFlight--
        results[index] = settle(exit)
        return
      }
      if (instance) fiber.addObserver(() => instance.inFlight--)
      pending.push(index)
      fibers.push(fiber)
    })
    if (fibers.length === 0) return Effect.succeed(results)
    return Fiber.awaitAll(fibers).pipe(
      Effect.timeoutOption(Math.max(0, timeoutMs - (Date.now() - startedAt))),
      Effect.map(() => {
        pending.forEach((index, position) => {
          const exit = fibers[position].unsafePoll()
          results[index] = exit ? settle(exit) : timedOut(timeoutMs)
        })
        return results
      }),
      Effect.ensuring(
        Effect.sync(() => {
          for (const fiber of fibers) if (!fiber.unsafePoll()) fiber.unsafeInterruptAsFork(FiberId.none)
        })
      )
    )
  })
