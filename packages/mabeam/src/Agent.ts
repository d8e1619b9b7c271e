/**
 * The agent model: the agent protocol (`Bid`, `Vote`, `Offer`, `Respond`, `Status`) as an
 * `@effect/rpc` group, the engine entity every agent is (`AgentEntity`), and agent modules, the
 * behaviours a user writes.
 *
 * An agent is an `@effect/cluster` entity of type `MabeamAgent` whose entity id is the agent id: the
 * engine places it on the node that owns its shard and starts it again elsewhere when that node
 * dies. What it does is its module's: `module(name, { args, make })` declares a behaviour, and
 * `make(args, context)` builds one agent's handlers (and its state, in a `Ref` it closes over). A
 * module is declared on every node (`Mabeam.layer({ modules })`), as a BEAM module is loaded on
 * every node; a registration (`AgentRegistry.register`) names the module and its arguments.
 *
 * Raw calls: `AgentEntity.client` (`Sharding.makeClient`) gives a typed client of one agent:
 * `(yield* AgentEntity.client)(agentId).Bid(request)`. The coordination runs (`Auction`,
 * `Consensus`, `Negotiation`) reach many agents at once through `AgentCalls`, which batches per node.
 */
import * as Entity from "@effect/cluster/Entity"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { AgentError } from "./MabeamError.js"

/** An agent's id: its name in the `AgentRegistry` and its entity id. */
export const AgentId = Schema.NonEmptyTrimmedString
/** @see AgentId */
export type AgentId = string

/** The auction types. */
export const AuctionType = Schema.Literal("sealed-bid", "english", "dutch")
/** @see AuctionType */
export type AuctionType = typeof AuctionType.Type

// -----------------------------------------------------------------------------
// Requests
// -----------------------------------------------------------------------------

/**
 * A call for bids.
 * - `sealed-bid`: one round; bid what the resources are worth to you (`paymentRule` says what the
 *   winner pays);
 * - `english`: `price` is the standing bid (or the opening price), `leader` its holder, and a bid
 *   counts only if it is at least `minimumBid`; passing leaves the auction;
 * - `dutch`: `price` is the asking price of this round; a bid of at least `price` takes the
 *   resources at `price`, `Pass` waits for a lower price.
 */
export const BidRequest = Schema.Struct({
  auctionId: Schema.String,
  auctionType: AuctionType,
  resources: Schema.Unknown,
  round: Schema.Int,
  paymentRule: Schema.optional(Schema.Literal("first-price", "second-price")),
  reserve: Schema.optional(Schema.Number),
  price: Schema.optional(Schema.Number),
  minimumBid: Schema.optional(Schema.Number),
  leader: Schema.optional(Schema.String)
})
/** @see BidRequest */
export type BidRequest = typeof BidRequest.Type

/** A proposal to vote on: answer a `Ballot` for one of `options`, or `Abstain`. */
export const VoteRequest = Schema.Struct({
  voteId: Schema.String,
  proposal: Schema.Unknown,
  options: Schema.Array(Schema.String)
})
/** @see VoteRequest */
export type VoteRequest = typeof VoteRequest.Type

/** One round of a negotiation, as every party sees it in the history. */
export const NegotiationRound = Schema.Struct({
  round: Schema.Int,
  proposer: Schema.String,
  /** the terms on the table; absent when the proposer made no valid offer */
  terms: Schema.optional(Schema.Unknown),
  /** why there was no offer (`timeout`, `invalid: ...`) */
  note: Schema.optional(Schema.String),
  accepted: Schema.Array(Schema.String),
  rejected: Schema.Array(Schema.String),
  /** responders that did not answer (counted as rejecting) */
  silent: Schema.Array(Schema.String)
})
/** @see NegotiationRound */
export type NegotiationRound = typeof NegotiationRound.Type

const negotiationFields = {
  negotiationId: Schema.String,
  topic: Schema.Unknown,
  round: Schema.Int,
  maxRounds: Schema.Int,
  /** epoch ms after which no round starts */
  deadline: Schema.Number,
  parties: Schema.Array(Schema.String),
  history: Schema.Array(NegotiationRound)
}

/** Your turn in a negotiation: make a `Proposal` (terms, and their utility to you), or `Withdraw`. */
export const OfferRequest = Schema.Struct(negotiationFields)
/** @see OfferRequest */
export type OfferRequest = typeof OfferRequest.Type

/** Another party's offer: `Accept` it (with its utility to you) or `Reject` it. */
export const RespondRequest = Schema.Struct({
  ...negotiationFields,
  proposer: Schema.String,
  terms: Schema.Unknown
})
/** @see RespondRequest */
export type RespondRequest = typeof RespondRequest.Type

/** Any request of the protocol, tagged by its rpc (`Bid`, `Vote`, `Offer`, `Respond`, `Status`). */
export const AgentRequest = Schema.Union(
  Schema.TaggedStruct("Bid", BidRequest.fields),
  Schema.TaggedStruct("Vote", VoteRequest.fields),
  Schema.TaggedStruct("Offer", OfferRequest.fields),
  Schema.TaggedStruct("Respond", RespondRequest.fields),
  Schema.TaggedStruct("Status", {})
)
/** @see AgentRequest */
export type AgentRequest = typeof AgentRequest.Type

// -----------------------------------------------------------------------------
// Replies
// -----------------------------------------------------------------------------

/** A bid (`amount`), or `Pass`. */
export const BidReply = Schema.Union(
  Schema.TaggedStruct("Bid", { amount: Schema.Number }),
  Schema.TaggedStruct("Pass", {})
)
/** @see BidReply */
export type BidReply = typeof BidReply.Type

/** A ballot for one of the options (with the voter's `confidence` in [0, 1], default 1), or `Abstain`. */
export const VoteReply = Schema.Union(
  Schema.TaggedStruct("Ballot", { choice: Schema.String, confidence: Schema.optional(Schema.Number) }),
  Schema.TaggedStruct("Abstain", { reason: Schema.optional(Schema.String) })
)
/** @see VoteReply */
export type VoteReply = typeof VoteReply.Type

/** The proposer's offer: `terms` and their `utility` to the proposer; or `Withdraw`, which ends the negotiation. */
export const OfferReply = Schema.Union(
  Schema.TaggedStruct("Proposal", { terms: Schema.Unknown, utility: Schema.Number }),
  Schema.TaggedStruct("Withdraw", { reason: Schema.String })
)
/** @see OfferReply */
export type OfferReply = typeof OfferReply.Type

/** A responder's answer: `Accept` (with the terms' utility to it) or `Reject`. */
export const RespondReply = Schema.Union(
  Schema.TaggedStruct("Accept", { utility: Schema.Number }),
  Schema.TaggedStruct("Reject", { reason: Schema.optional(Schema.String) })
)
/** @see RespondReply */
export type RespondReply = typeof RespondReply.Type

/** An agent's status: where it runs, its load (its module's figure, or its requests in flight). */
export const StatusReply = Schema.TaggedStruct("Status", {
  agent: Schema.String,
  node: Schema.String,
  module: Schema.String,
  load: Schema.Number,
  inFlight: Schema.Int,
  detail: Schema.optional(Schema.Unknown)
})
/** @see StatusReply */
export type StatusReply = typeof StatusReply.Type

/** Any reply of the protocol. */
export const AgentReply = Schema.Union(BidReply, VoteReply, OfferReply, RespondReply, StatusReply)
/** @see AgentReply */
export type AgentReply = typeof AgentReply.Type

/** The reply of each request. */
export interface Replies {
  readonly Bid: BidReply
  readonly Vote: VoteReply
  readonly Offer: OfferReply
  readonly Respond: RespondReply
  readonly Status: StatusReply
}

/** The reply Schema of each request, to check what a handler answered. */
export const replySchemas: { readonly [K in keyof Replies]: Schema.Schema<Replies[K], any> } = {
  Bid: BidReply,
  Vote: VoteReply,
  Offer: OfferReply,
  Respond: RespondReply,
  Status: StatusReply
}

/** The reply type of a request. */
export type ReplyOf<R extends AgentRequest> = Replies[R["_tag"]]

// -----------------------------------------------------------------------------
// The protocol as rpcs and as an entity
// -----------------------------------------------------------------------------

/**
 * The agent protocol. Every rpc fails with `AgentError`: `UnknownAgent` (not registered),
 * `ProtocolNotSupported` (its module has no such handler), `AgentFailed` (its handler failed or
 * answered an invalid reply).
 */
export class AgentRpcs extends RpcGroup.make(
  Rpc.make("Bid", { payload: BidRequest, success: BidReply, error: AgentError }),
  Rpc.make("Vote", { payload: VoteRequest, success: VoteReply, error: AgentError }),
  Rpc.make("Offer", { payload: OfferRequest, success: OfferReply, error: AgentError }),
  Rpc.make("Respond", { payload: RespondRequest, success: RespondReply, error: AgentError }),
  Rpc.make("Status", { success: StatusReply, error: AgentError })
) {}

/**
 * Every agent is one `MabeamAgent` entity, its entity id the agent id. `Mabeam.layer` registers it
 * on every node (`AgentEntity.toLayer`, concurrency unbounded, never reaped for idleness).
 * `(yield* AgentEntity.client)(id)` is the raw, one-agent-at-a-time way to call an agent.
 */
export const AgentEntity = Entity.fromRpcGroup("MabeamAgent", AgentRpcs)

// -----------------------------------------------------------------------------
// Modules
// -----------------------------------------------------------------------------

/** What a running agent knows about itself. */
export interface AgentContext {
  readonly agentId: AgentId
  /** the node it runs on */
  readonly node: string
  readonly module: string
  readonly capabilities: ReadonlyArray<string>
  readonly metadata: Readonly<Record<string, unknown>>
}

/** What an agent's `status` handler reports: its load (lower is less busy) and any detail. */
export interface StatusReport {
  readonly load?: number | undefined
  readonly detail?: unknown
}

/**
 * An agent's handlers, one per request it takes part in. A missing handler answers
 * `ProtocolNotSupported` (the agent is counted as not answering). A failure or a defect of a
 * handler is caught and reported as `AgentFailed`; it never fails the run.
 */
export interface AgentHandlers {
  readonly bid?: ((request: BidRequest) => Effect.Effect<BidReply, unknown>) | undefined
  readonly vote?: ((request: VoteRequest) => Effect.Effect<VoteReply, unknown>) | undefined
  readonly offer?: ((request: OfferRequest) => Effect.Effect<OfferReply, unknown>) | undefined
  readonly respond?: ((request: RespondRequest) => Effect.Effect<RespondReply, unknown>) | undefined
  /** the load figure `AgentRegistry.leastLoaded` sorts by (default: requests in flight) */
  readonly status?: Effect.Effect<StatusReport, unknown> | undefined
}

/**
 * A behaviour: a name, a Schema for its arguments (they travel in the registration, encoded), and
 * `make`, which builds one agent's handlers when its entity starts (again after a failover: state
 * lives in memory, as in any entity). `make` runs in the agent's scope, closed when the agent stops
 * or moves.
 */
export interface AgentModule<A = any> {
  readonly name: string
  readonly args: Schema.Schema<A, any>
  readonly make: (args: A, context: AgentContext) => Effect.Effect<AgentHandlers, unknown, Scope.Scope>
}

/**
 * Declares a module:
 * ```ts
 * const Bidder = Agent.module("bidder", {
 *   args: Schema.Struct({ valuation: Schema.Number }),
 *   make: ({ valuation }) => Effect.succeed({ bid: () => Effect.succeed(Agent.bid(valuation)) })
 * })
 * ```
 */
export const module = <A, I>(
  name: string,
  options: {
    readonly args: Schema.Schema<A, I>
    readonly make: (args: A, context: AgentContext) => Effect.Effect<AgentHandlers, unknown, Scope.Scope>
  }
): AgentModule<A> => ({ name, args: options.args, make: options.make })

// -----------------------------------------------------------------------------
// Reply constructors
// -----------------------------------------------------------------------------

/** A bid of `amount`. */
export const bid = (amount: number): BidReply => ({ _tag: "Bid", amount })
/** No bid. */
export const pass: BidReply = { _tag: "Pass" }
/** A ballot for `choice`, with the voter's confidence in [0, 1] (default 1). */
export const ballot = (choice: string, confidence?: number): VoteReply =>
  confidence === undefined ? { _tag: "Ballot", choice } : { _tag: "Ballot", choice, confidence }
/** No ballot; the agent is counted as abstaining, with `reason`. */
export const abstain = (reason?: string): VoteReply =>
  reason === undefined ? { _tag: "Abstain" } : { _tag: "Abstain", reason }
/** An offer of `terms`, worth `utility` to the proposer. */
export const proposal = (terms: unknown, utility: number): OfferReply => ({
  _tag: "Proposal",
  terms,
  utility
})
/** Leaves the negotiation, which ends without agreement. */
export const withdraw = (reason: string): OfferReply => ({ _tag: "Withdraw", reason })
/** Accepts the offer, worth `utility` to the responder. */
export const accept = (utility: number): RespondReply => ({ _tag: "Accept", utility })
/** Rejects the offer. */
export const reject = (reason?: string): RespondReply =>
  reason === undefined ? { _tag: "Reject" } : { _tag: "Reject", reason }

// -----------------------------------------------------------------------------
// Registration
// -----------------------------------------------------------------------------

/**
 * What happens to an agent when its node dies:
 * - `permanent` (default): the engine places its entity on a survivor, and MABEAM starts it there
 *   at once (a fresh `make(args)`); meanwhile it is `starting`;
 * - `temporary`: it is marked `unhealthy` and started again only if something calls it.
 */
export const RestartPolicy = Schema.Literal("permanent", "temporary")
/** @see RestartPolicy */
export type RestartPolicy = typeof RestartPolicy.Type

/**
 * How an agent is distributed. `singleton` (the seed's default and the only one): one instance
 * in the cluster, the entity placed by the engine's shard assignment.
 */
export const Strategy = Schema.Literal("singleton")
/** @see Strategy */
export type Strategy = typeof Strategy.Type

/** A registration, as replicated to every node (`args` encoded with the module's Schema). */
export const AgentSpec = Schema.Struct({
  id: AgentId,
  module: Schema.String,
  args: Schema.Unknown,
  capabilities: Schema.Array(Schema.String),
  protocols: Schema.Array(Schema.String),
  resources: Schema.Record({ key: Schema.String, value: Schema.Number }),
  metadata: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  strategy: Strategy,
  restart: RestartPolicy
})
/** @see AgentSpec */
export type AgentSpec = typeof AgentSpec.Type
