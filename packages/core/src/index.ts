/**
 * @foundation/core: BEAM-style distributed programming on `@effect/cluster`.
 */
export * as ClusterConfig from "./ClusterConfig.js"
export * as FailureDetector from "./FailureDetector.js"
export * as Foundation from "./Foundation.js"
export * as Node from "./Node.js"
export * as NodeDirectory from "./NodeDirectory.js"
export * as NodeError from "./NodeError.js"
export * as NodeFault from "./NodeFault.js"
export * as NodeTransport from "./NodeTransport.js"
