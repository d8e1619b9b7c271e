/**
 * HTTP endpoints of a node's health, for people, Kubernetes probes and Prometheus:
 *
 * | route              | answers                                                            | status          |
 * | ------------------ | ------------------------------------------------------------------ | --------------- |
 * | `GET /health`      | a check run now (`Health.getClusterHealth`), the report as JSON     | 200; 503 critical |
 * | `GET /health/live` | `Health.liveness`: the process should keep running                 | 200; 503        |
 * | `GET /health/ready`| `Health.readiness`: the node should receive traffic                | 200; 503        |
 * | `GET /metrics`     | every Effect metric of the process, Prometheus text format 0.0.4   | 200             |
 *
 * Probe semantics (Kubernetes): liveness fails only when the node's runtime is shutting down, so a
 * database outage or a partition never gets pods restarted in a loop; readiness fails while the node
 * cannot do its share (storage unreachable, its runner not registered or marked unhealthy, no
 * quorum), so traffic goes to the nodes that can. `/metrics` samples Health's metrics from their
 * sources first (`Health.collectMetrics`), then renders `Metric.snapshot` (`Metrics.prometheus`):
 * Foundation's `foundation_*` and the engine's `effect_cluster_*`.
 *
 * Underneath: an `HttpRouter` served with `HttpServer.serve` on `NodeHttpServer.layer` (a plain
 * `http.createServer`). It listens on `127.0.0.1` by default: in a pod, set `host` (or
 * `FOUNDATION_HEALTH_HOST`) to `0.0.0.0` so that the kubelet and Prometheus reach it. Drop down to
 * `router` to mount the routes in a server of your own.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Health from "@foundation/core/Health"
import * as Metrics from "@foundation/core/Metrics"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Http from "node:http"

/** Where the endpoints listen. */
export interface Options {
  /** the port (default `defaultPort`; `0` picks a free one, read it from `HttpServer.HttpServer`'s address) */
  readonly port?: number | undefined
  /** the host to bind (default `127.0.0.1`) */
  readonly host?: string | undefined
}

/** The default port of the health endpoints: 4380 (the node endpoint is 4370, the runner 4371). */
export const defaultPort = 4380

const noStore = { "cache-control": "no-store" }

const json = <A, I>(schema: Schema.Schema<A, I>, value: A, status: number) =>
  HttpServerResponse.unsafeJson(Schema.encodeSync(schema)(value), { status, headers: noStore })

/** The four routes, needing the node's `Health`. */
export const router: HttpRouter.HttpRouter<never, Health.Health> = HttpRouter.empty.pipe(
  HttpRouter.get(
    "/health",
    Effect.map(Health.getClusterHealth, (report) =>
      json(Health.HealthReport, report, report.overallStatus === "critical" ? 503 : 200)
    )
  ),
  HttpRouter.get(
    "/health/live",
    Effect.flatMap(Health.Health, (health) =>
      Effect.map(health.liveness, (liveness) => json(Health.Liveness, liveness, liveness.alive ? 200 : 503))
    )
  ),
  HttpRouter.get(
    "/health/ready",
    Effect.flatMap(Health.Health, (health) =>
      Effect.map(health.readiness, (readiness) =>
        json(Health.Readiness, readiness, readiness.ready ? 200 : 503)
      )
    )
  ),
  HttpRouter.get(
    "/metrics",
    Effect.flatMap(Health.Health, (health) =>
      Effect.zipRight(
        health.collectMetrics,
        Effect.map(Metrics.prometheus, (text) =>
          HttpServerResponse.text(text, { contentType: Metrics.prometheusContentType, headers: noStore })
        )
      )
    )
  )
)

/**
 * Serves `router` on `host:port` until the layer's scope closes; provides the `HttpServer` (its
 * `address` gives the port chosen for `port: 0`).
 */
export const layer = (options?: Options): Layer.Layer<HttpServer.HttpServer, ServeError, Health.Health> =>
  HttpServer.serve(router).pipe(
    Layer.provideMerge(
      NodeHttpServer.layer(() => Http.createServer(), {
        port: options?.port ?? defaultPort,
        host: options?.host ?? "127.0.0.1"
      })
    )
  )

/** `FOUNDATION_HEALTH_PORT` (default 4380) and `FOUNDATION_HEALTH_HOST` (default `127.0.0.1`). */
export const env = {
  port: Config.port("FOUNDATION_HEALTH_PORT").pipe(Config.withDefault(defaultPort)),
  host: Config.string("FOUNDATION_HEALTH_HOST").pipe(
    Config.validate({
      message: "Expected a host name or address",
      validation: (host) => host.trim().length > 0
    }),
    Config.withDefault("127.0.0.1")
  )
}

/** `layer` with the port and host read from `env`; a bad value names its variable. */
export const layerConfig: Layer.Layer<
  HttpServer.HttpServer,
  ServeError | ConfigError.ConfigError,
  Health.Health
> = Layer.unwrapEffect(Effect.map(Config.all(env), (options) => layer(options)))

/** The URL of a served endpoint, e.g. `http://127.0.0.1:4380/health`. */
export const url = (path: string): Effect.Effect<string, never, HttpServer.HttpServer> =>
  HttpServer.addressWith((address) =>
    Effect.succeed(
      address._tag === "TcpAddress"
        ? `http://${address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname}:${address.port}${path}`
        : `unix:${address.path}${path}`
    )
  )
