/**
 * Errors raised by Foundation's node layer: membership, discovery and node-to-node calls.
 * Each carries the data needed to act on it.
 */
import * as Schema from "effect/Schema"

/**
 * The node id is not a current member of the cluster.
 * `members` lists the ids that are, so the caller can see what it could have asked for.
 */
export class NodeNotFound extends Schema.TaggedError<NodeNotFound>()("NodeNotFound", {
  nodeId: Schema.String,
  members: Schema.Array(Schema.String)
}) {
  get message(): string {
    return `Node "${this.nodeId}" is not a member of the cluster. Members: [${this.members.join(", ")}]`
  }
}

/**
 * The node directory (the table or in-memory store that lists the nodes) could not be read or written.
 * Raw equivalent: the `SqlClient` query against `foundation_nodes`.
 */
export class NodeDirectoryError extends Schema.TaggedError<NodeDirectoryError>()("NodeDirectoryError", {
  operation: Schema.String,
  cause: Schema.Defect
}) {
  get message(): string {
    return `Node directory ${this.operation} failed: ${String(this.cause)}`
  }
}

/**
 * A node endpoint received bytes it could not decode as a Foundation frame.
 * The connection that sent them is closed; the node keeps serving everyone else.
 */
export class MalformedFrame extends Schema.TaggedError<MalformedFrame>()("MalformedFrame", {
  reason: Schema.String
}) {
  get message(): string {
    return `Malformed frame: ${this.reason}`
  }
}
