/**
 * @foundation/node: Foundation nodes on Node.js (TCP sockets, SQLite or PostgreSQL storage), the
 * `foundation` CLI and its demo.
 */
export * as FoundationNode from "./FoundationNode.js"
export * as SocketTransport from "./SocketTransport.js"
export * as SqlStorage from "./SqlStorage.js"
