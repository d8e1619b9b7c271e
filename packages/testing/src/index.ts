/**
 * @foundation/testing: multi-node Foundation clusters in one process, with fault injection.
 */
export * as TestCluster from "./TestCluster.js"
export * as Lives from "./Lives.js"
