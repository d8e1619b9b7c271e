/**
 * `ClusterConfig` on Node.js: a resolved configuration (`ClusterConfig.resolve`) turned into the real
 * layers of one node. Named like `@effect/platform-node`'s `NodeClusterSocket`: the platform half of a
 * platform-independent module.
 *
 * What `layer(resolved)` builds, per mode:
 * ```ts
 * // NoClustering: one node, in memory, on two free loopback ports
 * FoundationNode.layer({ id, host: "127.0.0.1", port: free, runnerPort: free,
 *   storage: { _tag: "sqlite", filename: ":memory:" }, sharding: translation.sharding })
 * // local: the embedded default
 * FoundationNode.layer({ ..., storage: { _tag: "sqlite", filename: ".foundation/foundation.db" } })
 * // postgres
 * FoundationNode.layer({ ..., storage: { _tag: "postgres", url } })
 * // kubernetes: the pod IP, bound on 0.0.0.0, PostgreSQL; with failure detection "engine" the
 * // engine's health asks the Kubernetes API instead of pinging:
 * FoundationNode.layer({ ..., storage: { _tag: "postgres", url },
 *   engineRunnerHealth: RunnerHealth.layerK8s({ labelSelector, namespace })
 *     .pipe(Layer.provide(NodeClusterSocket.layerK8sHttpClient)) })
 * // Wizard with your layer: your layer, unchanged
 * ```
 * `sharding` is always the translation's (`Foundation.shardingDefaults` plus overrides, or your own
 * `ShardingConfig` in Wizard mode), never the engine's 35 s defaults. Drop down to
 * `FoundationNode.layer(NodeClusterConfig.nodeOptions(translation))` to change one option.
 */
import * as RunnerHealth from "@effect/cluster/RunnerHealth"
import type * as K8sHttpClient from "@effect/cluster/K8sHttpClient"
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import * as ClusterConfig from "@foundation/core/ClusterConfig"
import type * as Foundation from "@foundation/core/Foundation"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as FoundationNode from "./FoundationNode.js"
import * as SocketTransport from "./SocketTransport.js"

/**
 * The engine's Kubernetes runner health for a translation: `RunnerHealth.layerK8s({ labelSelector,
 * namespace })`. A runner is alive while the pod with its IP is ready (or still initializing); when
 * the API cannot be reached, every runner counts as alive. Needs a `K8sHttpClient`: in a pod,
 * `NodeClusterSocket.layerK8sHttpClient` (the service account's token and CA); in a test, your own.
 * The service account needs permission to list pods.
 */
export const layerK8sRunnerHealth = (
  kubernetes: ClusterConfig.Kubernetes
): Layer.Layer<RunnerHealth.RunnerHealth, never, K8sHttpClient.K8sHttpClient> =>
  RunnerHealth.layerK8s({ labelSelector: kubernetes.labelSelector, namespace: kubernetes.namespace })

/**
 * The `FoundationNode.Options` of a translation: id, addresses, storage, table prefix, sharding and
 * failure detection, as chosen (see `ClusterConfig.explain`), and for the k8s runner health
 * (`engine` mode on Kubernetes) `engineRunnerHealth: layerK8sRunnerHealth(kubernetes)` over
 * `NodeClusterSocket.layerK8sHttpClient`. A port of `0` means "pick a free one" (`layer` does it with
 * `SocketTransport.freePorts`).
 */
export const nodeOptions = (translation: ClusterConfig.Translation): FoundationNode.Options => ({
  id: translation.nodeId,
  host: translation.host,
  listenHost: translation.listenHost,
  port: translation.port,
  runnerPort: translation.runnerPort,
  storage: translation.storage,
  tablePrefix: translation.tablePrefix,
  sharding: translation.sharding,
  failureDetection: translation.failureDetection,
  runnerTransport: translation.runnerTransport,
  engineRunnerHealth:
    translation.runnerHealth._tag === "K8s"
      ? layerK8sRunnerHealth(translation.runnerHealth).pipe(
          Layer.provide(NodeClusterSocket.layerK8sHttpClient)
        )
      : undefined
})

/**
 * The node layer of a translation: `FoundationNode.layer(nodeOptions(translation))`, after picking
 * free loopback ports for a port of `0`.
 */
export const layerTranslation = (
  translation: ClusterConfig.Translation
): Layer.Layer<Foundation.NodeServices, FoundationNode.StartError> =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const options = nodeOptions(translation)
      const free =
        options.port === 0 || options.runnerPort === 0
          ? yield* SocketTransport.freePorts(2, translation.listenHost)
          : [options.port, options.runnerPort]
      return FoundationNode.layer({
        ...options,
        port: options.port === 0 ? free[0] : options.port,
        runnerPort: options.runnerPort === 0 ? free[1] : options.runnerPort
      })
    })
  )

/**
 * The node layer of a resolved configuration: `layerTranslation(resolved.translation)`, or in
 * `Wizard` mode with your own layer, that layer, unchanged. Provide your entities and singletons on
 * top of it, as with `FoundationNode.layer`.
 */
export const layer = <E>(
  resolved: ClusterConfig.Resolved<E>
): Layer.Layer<Foundation.NodeServices, FoundationNode.StartError | E> => {
  if (resolved._tag === "Wizard" && resolved.layer !== undefined) return resolved.layer
  const translation = ClusterConfig.translationOf(resolved)
  return translation === undefined
    ? Layer.die(
        new Error("NodeClusterConfig.layer: a Wizard configuration with neither a layer nor a translation")
      )
    : layerTranslation(translation)
}

/**
 * `ClusterConfig.resolve(settings)` then `layer`, reading the environment through the current
 * `ConfigProvider`; the node also provides `ClusterConfig.ClusterConfig` (the resolved
 * configuration, for `Health` and for printing `ClusterConfig.explainText`).
 */
export const layerFromSettings = <E = never>(
  settings: ClusterConfig.Settings<E> = {}
): Layer.Layer<
  Foundation.NodeServices | ClusterConfig.ClusterConfig,
  FoundationNode.StartError | E | ClusterConfig.ClusterConfigError
> =>
  Layer.unwrapEffect(
    Effect.map(ClusterConfig.resolve(settings), (resolved) =>
      Layer.merge(layer(resolved), ClusterConfig.layerResolved(resolved))
    )
  )
