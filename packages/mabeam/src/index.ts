/**
 * @foundation/mabeam: multi-agent coordination across Foundation nodes. Agents are
 * `@effect/cluster` entities with a typed protocol; auctions, votes, negotiations and orchestration
 * variables run from any node.
 */
export * as Agent from "./Agent.js"
export * as AgentCalls from "./AgentCalls.js"
export * as AgentRegistry from "./AgentRegistry.js"
export * as Auction from "./Auction.js"
export * as Consensus from "./Consensus.js"
export * as Mabeam from "./Mabeam.js"
export * as MabeamError from "./MabeamError.js"
export * as Negotiation from "./Negotiation.js"
export * as OrchestrationVariable from "./OrchestrationVariable.js"
