/**
 * The demo's Channels and SharedConfig step: a subscriber on every channel of every node, four
 * messages routed by `Channels.route` from the first node (one per rule of the seed), and a setting
 * changed cluster-wide by majority with `SharedConfig.set`, then read on every node.
 *
 * Wiring: add `layer` to each node's application layer (it needs only `Node.Node`), then run `run`
 * with the running nodes (`FoundationNode.RunningNode`s), all up:
 * ```ts
 * FoundationNode.start(options, Layer.merge(Sample.layer(report), ChannelsDemo.layer))
 * yield* ChannelsDemo.run(nodes)
 * ```
 */
import * as Channels from "@foundation/core/Channels"
import type * as Node from "@foundation/core/Node"
import * as SharedConfig from "@foundation/core/SharedConfig"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as Scope from "effect/Scope"
import * as Table from "../internal/table.js"

/** What each node needs for this step: `Channels.layer()` and `SharedConfig.layer()`. */
export const layer = Layer.merge(Channels.layer(), SharedConfig.layer())

/** The services `layer` provides. */
export type Services = Channels.Channels | SharedConfig.SharedConfig

/** A running node with `layer` in its application: a `FoundationNode.RunningNode` fits. */
export interface DemoNode {
  readonly info: Node.NodeInfo
  readonly run: <X, E>(effect: Effect.Effect<X, E, Services>) => Effect.Effect<X, E>
}

/** The setting the demo changes. */
export const Greeting = SharedConfig.key("demo.greeting", Schema.String, { default: "(not set)" })

/** The step did not finish in time. */
export class ChannelsDemoError extends Schema.TaggedError<ChannelsDemoError>()("ChannelsDemoError", {
  step: Schema.String,
  detail: Schema.String
}) {
  get message(): string {
    return `The Channels demo got stuck at "${this.step}": ${this.detail}`
  }
}

/** What the step observed. */
export interface Report {
  readonly routed: ReadonlyArray<Channels.RoutingDecision>
  /** per node: the channel of every message it received, in order */
  readonly received: Record<string, ReadonlyArray<string>>
  readonly setting: SharedConfig.Entry<string>
  /** per node: the value and version it holds after the set */
  readonly held: Record<string, { readonly value: string; readonly version: number }>
}

const waitFor = <A>(
  step: string,
  check: Effect.Effect<A | undefined>,
  timeoutMs: number
): Effect.Effect<A, ChannelsDemoError> =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const result = yield* check
      if (result !== undefined) return result
      yield* Effect.sleep(20)
    }
    return yield* new ChannelsDemoError({ step, detail: `not done after ${timeoutMs} ms` })
  })

const describeMessage = (message: unknown): string => {
  const text = JSON.stringify(message)
  return text.length > 48 ? `${text.slice(0, 45)}...` : text
}

/**
 * Runs the step on `nodes` (the first one publishes, the second one changes the setting) and prints
 * its progress.
 */
export const run = (
  nodes: ReadonlyArray<DemoNode>
): Effect.Effect<Report, ChannelsDemoError | Channels.InvalidMessage, Scope.Scope> =>
  Effect.gen(function* () {
    const [publisher, setter] = [nodes[0], nodes[1] ?? nodes[0]]
    yield* Console.log(
      `\nChannels: a subscriber on each of the four channels on every node; ${publisher.info.id} routes four messages`
    )
    const received = new Map<string, Array<string>>()
    for (const node of nodes) {
      const log: Array<string> = []
      received.set(node.info.id, log)
      const channels = yield* node.run(Channels.Channels)
      for (const channel of Channels.channels) {
        const stream = yield* channels.subscribe(Channels.builtin[channel])
        yield* stream.pipe(
          Stream.runForEach((envelope) =>
            Effect.sync(() => log.push(`${envelope.channel} #${envelope.seq} from ${envelope.from}`))
          ),
          Effect.forkScoped
        )
      }
    }

    const messages: ReadonlyArray<readonly [unknown, Channels.RouteOptions | undefined]> = [
      [{ command: "pause-imports" }, { priority: "high" }],
      [{ report: "nightly", rows: "r".repeat(20_000) }, { compression: true }],
      [{ type: "metric", name: "orders.per_second", value: 412 }, undefined],
      [{ event: "order.placed", id: "o-17" }, undefined]
    ]
    const routed = yield* publisher.run(
      Effect.forEach(messages, ([message, options]) => Channels.route(message, options))
    )
    yield* Console.log(
      Table.render(
        ["message", "options", "channel", "why"],
        routed.map((decision, i) => [
          describeMessage(messages[i]![0]),
          messages[i]![1] ? JSON.stringify(messages[i]![1]) : "-",
          decision.channel,
          decision.explanation
        ])
      )
    )
    yield* waitFor(
      "every node receiving the four messages",
      Effect.sync(() => (Array.from(received.values()).every((log) => log.length >= 4) ? true : undefined)),
      10_000
    )
    yield* Console.log(
      `\nWhat each node's subscribers received\n` +
        Table.render(
          ["node", "received, in order"],
          nodes.map((node) => [node.info.id, received.get(node.info.id)!.join(", ")])
        )
    )

    yield* Console.log(
      `\nSharedConfig: ${setter.info.id} sets ${Greeting.name} (a majority must accept, then every node applies)`
    )
    const value = `hello from ${setter.info.id}`
    const setting = yield* setter
      .run(SharedConfig.set(Greeting, value))
      .pipe(
        Effect.mapError((error) => new ChannelsDemoError({ step: "SharedConfig.set", detail: error.message }))
      )
    const held = yield* waitFor(
      "every node holding the new setting",
      Effect.map(
        Effect.forEach(nodes, (node) => node.run(SharedConfig.entry(Greeting))),
        (entries) => (entries.every((entry) => entry.version === setting.version) ? entries : undefined)
      ),
      10_000
    )
    yield* Console.log(
      Table.render(
        ["node", Greeting.name, "version", "set by"],
        nodes.map((node, i) => [
          node.info.id,
          JSON.stringify(held[i]!.value),
          `${held[i]!.version}`,
          `${held[i]!.by}`
        ])
      )
    )
    return {
      routed,
      received: Object.fromEntries(received),
      setting,
      held: Object.fromEntries(
        nodes.map((node, i) => [node.info.id, { value: held[i]!.value, version: held[i]!.version }])
      )
    }
  })
