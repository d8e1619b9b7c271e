/**
 * @foundation/node: Foundation nodes on Node.js (TCP sockets, SQLite or PostgreSQL storage), the
 * `foundation` CLI and its demo.
 */
export * as Cli from "./Cli.js"
export * as Demo from "./Demo.js"
export * as FoundationNode from "./FoundationNode.js"
export * as HealthHttp from "./HealthHttp.js"
export * as NodeClusterConfig from "./NodeClusterConfig.js"
export * as NodeVitals from "./NodeVitals.js"
export * as Sample from "./Sample.js"
export * as SocketTransport from "./SocketTransport.js"
export * as SqlStorage from "./SqlStorage.js"
