/**
 * The errors shared by the MABEAM modules: agents that are not registered, modules that are not
 * declared, handlers that are missing or fail, and options that make a run impossible. The errors
 * of one protocol (`NoWinner`, `QuorumNotMet`, `NoDecision`, `NoAgreement`, ...) live in its module.
 */
import * as Schema from "effect/Schema"

/** Why an agent gave no usable answer to one request. */
export const NoAnswerReason = Schema.Literal(
  /** it did not answer within the call timeout */
  "timeout",
  /** its node could not be reached (crashed, partitioned, leaving) */
  "unreachable",
  /** it is not registered (or was deregistered) */
  "unknown-agent",
  /** its module has no handler for this request */
  "not-supported",
  /** its handler failed or died */
  "failed",
  /** its handler answered something that is not a reply of the protocol */
  "invalid-reply"
)
/** @see NoAnswerReason */
export type NoAnswerReason = typeof NoAnswerReason.Type

/** The agent is not in the `AgentRegistry` (raw call: `AgentRegistry.lookup`). */
export class UnknownAgent extends Schema.TaggedError<UnknownAgent>()("UnknownAgent", {
  agent: Schema.String
}) {
  get message(): string {
    return `Agent "${this.agent}" is not registered. Register it with AgentRegistry.register or Mabeam.startCoordinationAgent first`
  }
}

/** Some agents of a run are not in the `AgentRegistry`; nothing was asked. */
export class UnknownAgents extends Schema.TaggedError<UnknownAgents>()("UnknownAgents", {
  agents: Schema.Array(Schema.String)
}) {
  get message(): string {
    return `Not registered: ${this.agents.join(", ")}. Register them (AgentRegistry.register), or pick registered agents with AgentRegistry.find`
  }
}

/** The agent's module has no handler for `protocol` (`bid`, `vote`, `offer` or `respond`). */
export class ProtocolNotSupported extends Schema.TaggedError<ProtocolNotSupported>()("ProtocolNotSupported", {
  agent: Schema.String,
  protocol: Schema.String
}) {
  get message(): string {
    return `Agent "${this.agent}" has no ${this.protocol} handler: add one to its module, or leave it out of ${this.protocol} runs`
  }
}

/** The agent's handler failed (`failed`) or answered something its protocol does not allow (`invalid-reply`). */
export class AgentFailed extends Schema.TaggedError<AgentFailed>()("AgentFailed", {
  agent: Schema.String,
  reason: Schema.Literal("failed", "invalid-reply"),
  detail: Schema.String
}) {
  get message(): string {
    return `Agent "${this.agent}" ${this.reason === "failed" ? "failed" : "answered an invalid reply"}: ${this.detail}`
  }
}

/** What a call to an agent's entity can fail with (the `error` of every rpc of `Agent.AgentRpcs`). */
export const AgentError = Schema.Union(UnknownAgent, ProtocolNotSupported, AgentFailed)
/** @see AgentError */
export type AgentError = typeof AgentError.Type

/** The module is not declared on this node (`Mabeam.layer({ modules })` must list it on every node). */
export class UnknownModule extends Schema.TaggedError<UnknownModule>()("UnknownModule", {
  module: Schema.String,
  known: Schema.Array(Schema.String)
}) {
  get message(): string {
    return `Agent module "${this.module}" is not declared on this node. Declared: [${this.known.join(", ")}]. Add it to Mabeam.layer({ modules }) on every node`
  }
}

/** The registration is not valid: its arguments do not fit the module's `args` Schema, or a field is out of range. */
export class InvalidAgentSpec extends Schema.TaggedError<InvalidAgentSpec>()("InvalidAgentSpec", {
  agent: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `Invalid registration of agent "${this.agent}": ${this.reason}`
  }
}

/** The agent is already registered; `register` with `replace: true` to update it. */
export class AgentAlreadyRegistered extends Schema.TaggedError<AgentAlreadyRegistered>()(
  "AgentAlreadyRegistered",
  { agent: Schema.String, module: Schema.String }
) {
  get message(): string {
    return `Agent "${this.agent}" is already registered (module ${this.module}). Pass replace: true to update it, or deregister it first`
  }
}

/** The agent is registered but its entity did not start (answer its `Status`) within the timeout. */
export class AgentNotStarted extends Schema.TaggedError<AgentNotStarted>()("AgentNotStarted", {
  agent: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `Agent "${this.agent}" is registered but did not start: ${this.reason}. It starts on its next call; raw call: AgentEntity.client`
  }
}

/** The options of a run make it impossible (a negative increment, a threshold outside (0, 1], no agents, ...). */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  protocol: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `Invalid ${this.protocol} options: ${this.reason}`
  }
}
