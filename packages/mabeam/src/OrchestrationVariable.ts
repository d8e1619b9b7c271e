/**
 * Orchestration variables: a value decided by agents. A variable names its agents, the coordination
 * that decides it (an auction, a vote, a negotiation, any Effect) and the constraints the decision
 * must satisfy; each run decides it again and is kept in its history (the seed's
 * `MABEAM.Core.register_orchestration_variable`).
 *
 * Guarantees:
 * - `register` checks that every agent is registered (`UnknownAgents` otherwise); registering an id
 *   again replaces the variable's definition and keeps its history and value;
 * - `run` applies the constraints: a run longer than `maxDuration` is interrupted and fails with
 *   `ConstraintViolated` (`maxDuration`); a value that breaks a rule fails with `ConstraintViolated`
 *   naming the rule, and does not become the variable's value;
 * - every run, successful or not, is appended to the history with its duration and outcome; the
 *   history keeps the last `historyLimit` runs (default 100).
 *
 * Variables live in the memory of the node that registers them (they hold functions, which do not
 * travel); the runs themselves reach agents anywhere through `AgentCalls`. Drop down to calling the
 * coordination Effect yourself when you need no history or constraints.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { AgentId } from "./Agent.js"
import { AgentCalls } from "./AgentCalls.js"
import { describeCause } from "./internal/instance.js"
import type { UnknownAgents } from "./MabeamError.js"

/** A named condition on a variable's value. */
export interface Rule<A> {
  readonly name: string
  readonly holds: (value: A) => boolean
}

/** What a decision must satisfy. */
export interface Constraints<A> {
  /** the longest a run may take (the seed's `max_allocation_time`) */
  readonly maxDuration?: Duration.DurationInput | undefined
  readonly rules?: ReadonlyArray<Rule<A>> | undefined
}

/** What a coordination knows about the run it is part of. */
export interface RunContext<A> {
  readonly id: string
  /** 1 for the first run */
  readonly run: number
  /** the value of the last successful run */
  readonly previous: Option.Option<A>
}

/** A variable: its agents, how they decide it, and the constraints on the decision. */
export interface Variable<A, E = never, R = never> {
  readonly id: string
  /** what kind of coordination decides it (`auction`, `consensus`, `negotiation`, ...), for humans */
  readonly type: string
  readonly agents: ReadonlyArray<AgentId>
  readonly coordinate: (agents: ReadonlyArray<AgentId>, context: RunContext<A>) => Effect.Effect<A, E, R>
  readonly constraints?: Constraints<A> | undefined
}

/** Declares a variable (it takes effect with `register`). */
export const make = <A, E = never, R = never>(variable: Variable<A, E, R>): Variable<A, E, R> => variable

/** One run, as kept in the history. */
export interface HistoryEntry {
  readonly run: number
  readonly startedAt: number
  readonly durationMs: number
  readonly outcome: "decided" | "failed" | "violated"
  /** the value (decided), or the value that broke a rule (violated) */
  readonly value?: unknown
  /** why it failed, or which constraint it broke */
  readonly detail?: string
}

/** The decision broke a constraint: `constraint` is `maxDuration` or a rule's name. */
export class ConstraintViolated extends Schema.TaggedError<ConstraintViolated>()("ConstraintViolated", {
  variable: Schema.String,
  constraint: Schema.String,
  detail: Schema.String
}) {
  get message(): string {
    return `Orchestration variable ${this.variable} broke its constraint ${this.constraint}: ${this.detail}`
  }
}

/** No variable with this id is registered on this node. */
export class UnknownVariable extends Schema.TaggedError<UnknownVariable>()("UnknownVariable", {
  variable: Schema.String,
  known: Schema.Array(Schema.String)
}) {
  get message(): string {
    return `Orchestration variable ${this.variable} is not registered on this node. Registered: [${this.known.join(", ")}]`
  }
}

/** The orchestration variables of this node. */
export class OrchestrationVariables extends Context.Tag("@foundation/mabeam/OrchestrationVariables")<
  OrchestrationVariables,
  {
    /** Registers (or redefines) a variable; fails if one of its agents is not registered. */
    readonly register: <A, E, R>(variable: Variable<A, E, R>) => Effect.Effect<void, UnknownAgents>
    /** Runs the registered variable's coordination under its constraints; see the module's guarantees. */
    readonly run: <A, E, R>(
      variable: Variable<A, E, R>
    ) => Effect.Effect<A, E | ConstraintViolated | UnknownVariable, R>
    /** The value of the last successful run. */
    readonly value: (id: string) => Effect.Effect<Option.Option<unknown>, UnknownVariable>
    /** The runs, oldest first. */
    readonly history: (id: string) => Effect.Effect<ReadonlyArray<HistoryEntry>, UnknownVariable>
    /** The registered variables. */
    readonly list: Effect.Effect<
      ReadonlyArray<{ readonly id: string; readonly type: string; readonly agents: ReadonlyArray<AgentId> }>
    >
  }
>() {}

const show = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

interface Slot {
  variable: Variable<any, any, any>
  value: Option.Option<unknown>
  runs: number
  history: Array<HistoryEntry>
}

/** The variables of this node, in memory; needs `AgentCalls` to check agents. */
export const layer = (options?: {
  readonly historyLimit?: number | undefined
}): Layer.Layer<OrchestrationVariables, never, AgentCalls> =>
  Layer.effect(
    OrchestrationVariables,
    Effect.gen(function* () {
      const calls = yield* AgentCalls
      const limit = options?.historyLimit ?? 100
      const slots = new Map<string, Slot>()
      const slotOf = (id: string) =>
        Effect.suspend(() => {
          const slot = slots.get(id)
          return slot
            ? Effect.succeed(slot)
            : Effect.fail(new UnknownVariable({ variable: id, known: Array.from(slots.keys()) }))
        })
      const record = (slot: Slot, entry: HistoryEntry) => {
        slot.history.push(entry)
        if (slot.history.length > limit) slot.history.splice(0, slot.history.length - limit)
      }

      const run = <A, E, R>(variable: Variable<A, E, R>) =>
        Effect.gen(function* () {
          const slot = yield* slotOf(variable.id)
          const number = ++slot.runs
          const startedAt = yield* Clock.currentTimeMillis
          const context: RunContext<A> = {
            id: variable.id,
            run: number,
            previous: slot.value as Option.Option<A>
          }
          const maxDuration = variable.constraints?.maxDuration
          const coordinate = variable.coordinate(variable.agents, context)
          const bounded: Effect.Effect<A, E | ConstraintViolated, R> =
            maxDuration === undefined
              ? coordinate
              : Effect.timeoutFail(coordinate, {
                  duration: maxDuration,
                  onTimeout: () =>
                    new ConstraintViolated({
                      variable: variable.id,
                      constraint: "maxDuration",
                      detail: `the run took longer than ${Duration.format(Duration.decode(maxDuration))}`
                    })
                })
          const exit = yield* Effect.exit(bounded)
          const durationMs = (yield* Clock.currentTimeMillis) - startedAt
          const base = { run: number, startedAt, durationMs }
          if (Exit.isFailure(exit)) {
            const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
            const violated = failure instanceof ConstraintViolated
            record(slot, {
              ...base,
              outcome: violated ? "violated" : "failed",
              detail: violated ? failure.constraint : describeCause(exit.cause)
            })
            return yield* exit
          }
          const broken = (variable.constraints?.rules ?? []).find((rule) => !rule.holds(exit.value))
          if (broken) {
            record(slot, { ...base, outcome: "violated", value: exit.value, detail: broken.name })
            return yield* new ConstraintViolated({
              variable: variable.id,
              constraint: broken.name,
              detail: `the decided value does not satisfy it: ${show(exit.value)}`
            })
          }
          slot.value = Option.some(exit.value)
          record(slot, { ...base, outcome: "decided", value: exit.value })
          return exit.value
        })

      return OrchestrationVariables.of({
        register: (variable) =>
          Effect.map(calls.resolve(variable.agents), () => {
            const existing = slots.get(variable.id)
            if (existing) existing.variable = variable
            else slots.set(variable.id, { variable, value: Option.none(), runs: 0, history: [] })
          }),
        run,
        value: (id) => Effect.map(slotOf(id), (slot) => slot.value),
        history: (id) => Effect.map(slotOf(id), (slot) => [...slot.history]),
        list: Effect.sync(() =>
          Array.from(slots.values(), ({ variable }) => ({
            id: variable.id,
            type: variable.type,
            agents: variable.agents
          }))
        )
      })
    })
  )
