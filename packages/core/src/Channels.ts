/**
 * Cluster-wide publish/subscribe on four logical channels, the seed's `Foundation.Channels` (there
 * Phoenix.PubSub topics over one Distributed Erlang connection; here one connection per channel class,
 * so an urgent control message is never queued behind bulk data).
 *
 * | channel     | topic                  | lane (connection)   | for                                   |
 * | ----------- | ---------------------- | ------------------- | ------------------------------------- |
 * | `control`   | `foundation:control`   | `control`           | urgent, small: commands, consensus    |
 * | `events`    | `foundation:events`    | `events`            | the default                           |
 * | `data`      | `foundation:data`      | `data`              | bulk: anything over 10 KB encoded     |
 * | `telemetry` | `foundation:telemetry` | `telemetry`         | metrics and measurements              |
 *
 * What it does underneath, in raw calls:
 * - `broadcast` encodes the message once (msgpack, the transport's own format), then for every node
 *   that has a subscriber for the topic appends it to that node's queue for the channel's lane; the
 *   queue leaves as batched `ChannelRpcs.Deliver` calls over
 *   `Node.clientFor(ChannelRpcs, { lane })(nodeId)`, at most `window` batches unacknowledged per node
 *   and lane (the pacing). Subscribers on this node get the message directly.
 * - which node subscribes to which topic is a replicated view: every node announces its topics with
 *   `ChannelRpcs.Interest` on the control lane when they change, to a node that comes up, and every
 *   `interestSyncInterval`; `subscribe` returns once the nodes that are up acknowledged.
 * - the receiving node decodes each lane's frames on its own worker: control is never behind another
 *   lane's work, and the data worker hands the event loop back between frames. Large messages travel
 *   in `chunkSize` parts. While a control round trip is under way (a control frame of this node
 *   unacknowledged, or one arrived or acknowledged within 1 ms), a node neither sends nor processes
 *   `data` frames, for at most 10 ms at a time.
 *
 * Drop down to `Node.clientFor(group, { lane })` and `Node.layerServe(group)` for request/response, or
 * for delivery guarantees other than at-most-once (acknowledged, persisted: an entity with
 * `ClusterSchema.Persisted`).
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as Internal from "./internal/channels.js"
import * as Wire from "./internal/channelWire.js"
import type { Node, NodeId } from "./Node.js"

/** A logical channel. */
export type Channel = "control" | "events" | "data" | "telemetry"

/** Every channel, in priority order (the receiving node serves them in this order). */
export const channels: ReadonlyArray<Channel> = ["control", "events", "telemetry", "data"]

/** The topic each channel publishes on: the seed's `@topic_mapping`. */
export const topicMapping: { readonly [C in Channel]: string } = {
  control: "foundation:control",
  events: "foundation:events",
  data: "foundation:data",
  telemetry: "foundation:telemetry"
}

/** The node-RPC lane (a connection of its own) each channel travels on. */
export const laneOf = (channel: Channel): string => channel

/**
 * A typed topic: messages are encoded with `schema` by the publisher and decoded with it by every
 * subscriber. It travels on `channel`'s lane (default `events`).
 */
export interface Topic<A, I = A> {
  readonly _tag: "Topic"
  readonly name: string
  readonly channel: Channel
  readonly schema: Schema.Schema<A, I>
  /** @internal */
  readonly codec: Internal.TopicCodec
}

/**
 * A custom topic, typed with a Schema: `Channels.topic("orders", Order)`. Names starting with
 * `foundation:` are the built-in channels' topics.
 */
export const topic = <A, I>(
  name: string,
  schema: Schema.Schema<A, I>,
  options?: { readonly channel?: Channel | undefined }
): Topic<A, I> => ({
  _tag: "Topic",
  name,
  channel: options?.channel ?? "events",
  schema,
  codec: Internal.codecOf(schema)
})

/** The built-in channels as topics: their messages are any msgpack-encodable value. */
export const builtin: { readonly [C in Channel]: Topic<unknown> } = {
  control: topic(topicMapping.control, Schema.Unknown, { channel: "control" }),
  events: topic(topicMapping.events, Schema.Unknown, { channel: "events" }),
  data: topic(topicMapping.data, Schema.Unknown, { channel: "data" }),
  telemetry: topic(topicMapping.telemetry, Schema.Unknown, { channel: "telemetry" })
}

/**
 * One delivered message.
 * - `seq` counts the publisher's messages on this topic (1, 2, ...; it restarts with a new
 *   `incarnation` of the publisher);
 * - `missed` is how many of them this subscriber did not get between the previous message it got
 *   from that publisher and this one: lost in transit (at most once), dropped by this subscriber's
 *   full buffer, or not sent because the publisher's queue to this node overflowed. 0 means no gap.
 */
export interface Envelope<A> {
  readonly topic: string
  readonly channel: Channel
  readonly from: NodeId
  /** the publisher node's `startedAt` */
  readonly incarnation: number
  readonly seq: number
  readonly missed: number
  readonly message: A
}

/** Per-message options. */
export interface BroadcastOptions {
  /**
   * Compress the encoded message (`true` = `deflate`). Receivers decompress transparently. The ratio
   * is logged at debug level.
   */
  readonly compression?: boolean | Wire.Compression | undefined
}

/** `route`'s options: the seed's `priority: :high` sends on `control`. */
export interface RouteOptions extends BroadcastOptions {
  readonly priority?: "high" | "normal" | "low" | undefined
}

/** Which rule picked the channel, in the order they are tried. */
export type RoutingRule = "priority" | "size" | "telemetry" | "default"

/** What `route` chose and why. */
export interface RoutingDecision {
  readonly channel: Channel
  readonly rule: RoutingRule
  /** the message's encoded size in bytes (msgpack, before compression) */
  readonly size: number
  /** the seed's `explain_routing_decision` text, e.g. `Large message (20480 bytes) -> data` */
  readonly explanation: string
}

/** Messages whose encoded size is above this go on `data` (the seed's 10 KB threshold). */
export const largeMessageBytes = 10_240

/** What a subscriber does when its buffer is full. */
export type OverflowPolicy = "dropOldest" | "dropNewest"

/** Per-subscription options. */
export interface SubscribeOptions {
  /** messages held for this subscriber before the overflow policy applies (default 10,000) */
  readonly bufferSize?: number | undefined
  /** `dropOldest` (default: the subscriber sees the newest messages) or `dropNewest` */
  readonly overflow?: OverflowPolicy | undefined
}

/** Counters of one channel on this node, since the node started. */
export interface ChannelStats {
  /** messages broadcast from this node */
  readonly published: number
  /** copies queued for other nodes (one per subscribing node) */
  readonly sent: number
  /** `Deliver` calls (batches and parts) sent */
  readonly frames: number
  /** bytes of the frames sent (after compression) */
  readonly bytesSent: number
  /** bytes of the frames received */
  readonly bytesReceived: number
  /** messages received from other nodes */
  readonly received: number
  /** envelopes handed to this node's subscribers */
  readonly delivered: number
  /** envelopes a full subscriber buffer dropped (the overflow policy) */
  readonly overflowed: number
  /** copies dropped before sending: the queue to an unreachable node was full, or it went down */
  readonly undelivered: number
  /** frames not acknowledged in time (their messages may or may not have arrived) */
  readonly unacknowledged: number
  /** received messages that did not decode (a different schema, corrupt compression) */
  readonly undecodable: number
}

/**
 * The channel named is not one of the four. Use a custom topic for other names.
 */
export class UnknownChannel extends Schema.TaggedError<UnknownChannel>()("UnknownChannel", {
  channel: Schema.String,
  available: Schema.Array(Schema.String)
}) {
  get message(): string {
    return [
      `Invalid channel: ${JSON.stringify(this.channel)}`,
      `Available channels: ${this.available.join(", ")}`,
      "",
      `Or use a custom topic: Channels.broadcast(Channels.topic("your-custom-topic", schema), message),`,
      `or the raw node RPC: Node.clientFor(ChannelRpcs, { lane })(nodeId).Deliver(...)`
    ].join("\n")
  }
}

/** A message could not be encoded: it does not fit its topic's Schema, or msgpack cannot encode it. */
export class InvalidMessage extends Schema.TaggedError<InvalidMessage>()("InvalidMessage", {
  topic: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `Cannot publish on ${this.topic}: ${this.reason}`
  }
}

/**
 * The node-to-node protocol of Channels, served on every node running `Channels.layer`:
 * - `Deliver`: a frame of messages from `from` on `lane` (and the next `part` of a large message),
 *   acknowledged once this node processed it
 *   (the publisher keeps at most `window` frames unacknowledged per node and lane);
 * - `Interest`: the topics the caller's node subscribes to (a versioned snapshot); the reply is the
 *   callee's own.
 */
export class ChannelRpcs extends RpcGroup.make(
  Rpc.make("Channels.Deliver", {
    payload: {
      from: Schema.String,
      incarnation: Schema.Number,
      lane: Schema.Literal("control", "events", "data", "telemetry"),
      frame: Schema.Uint8ArrayFromSelf,
      /** the next part of the large message the frame ends with, kept out of `frame` (no copy) */
      part: Schema.optional(Schema.Uint8ArrayFromSelf)
    }
  }),
  Rpc.make("Channels.Interest", {
    payload: Internal.InterestSnapshot.fields,
    success: Internal.InterestSnapshot
  })
) {}

/** How a node's Channels are tuned. Every field has a default (`defaults`). */
export interface Settings {
  /** a message whose encoded body is larger travels in parts of this size (default 64 KiB) */
  readonly chunkSize: number
  /** the largest frame a batch fills (default 64 KiB) */
  readonly maxFrameBytes: number
  /** unacknowledged frames per node and lane (default 8): the pacing of a publisher */
  readonly window: number
  /**
   * bytes queued per node and lane before `broadcast` waits (default 8 MiB); a node that is not up
   * loses its oldest queued messages instead
   */
  readonly maxQueuedBytes: number
  /** how long a frame may go unacknowledged before its slot is freed (default 5 s) */
  readonly ackTimeout: Duration.Duration
  /** how long `subscribe` waits for each node to acknowledge the new topic (default 1 s) */
  readonly announceTimeout: Duration.Duration
  /** every node re-announces its topics this often, repairing lost announcements (default 2 s) */
  readonly interestSyncInterval: Duration.Duration
  /** subscriber buffer, unless `subscribe` says otherwise (default 10,000) */
  readonly bufferSize: number
  /** subscriber overflow policy, unless `subscribe` says otherwise (default `dropOldest`) */
  readonly overflow: OverflowPolicy
}

/** The default settings. */
export const defaults: Settings = {
  chunkSize: 64 * 1024,
  maxFrameBytes: 64 * 1024,
  window: 8,
  maxQueuedBytes: 8 * 1024 * 1024,
  ackTimeout: Duration.seconds(5),
  announceTimeout: Duration.seconds(1),
  interestSyncInterval: Duration.seconds(2),
  bufferSize: 10_000,
  overflow: "dropOldest"
}

/** Publishes on a channel (by name, checked) or a typed topic. */
export interface Broadcast {
  (
    channel: Channel | (string & {}),
    message: unknown,
    options?: BroadcastOptions
  ): Effect.Effect<void, UnknownChannel | InvalidMessage>
  <A, I>(topic: Topic<A, I>, message: A, options?: BroadcastOptions): Effect.Effect<void, InvalidMessage>
}

/** Subscribes to a channel (by name, checked) or a typed topic. */
export interface Subscribe {
  (
    channel: Channel | (string & {}),
    options?: SubscribeOptions
  ): Effect.Effect<Stream.Stream<Envelope<unknown>>, UnknownChannel, Scope.Scope>
  <A, I>(
    topic: Topic<A, I>,
    options?: SubscribeOptions
  ): Effect.Effect<Stream.Stream<Envelope<A>>, never, Scope.Scope>
}

/** The Channels service of one node. */
export class Channels extends Context.Tag("@foundation/core/Channels")<
  Channels,
  {
    /**
     * Sends `message` to every subscriber of the channel or topic, on every node, at most once, FIFO
     * per publisher and topic. One copy per subscribing node; nodes without a subscriber get nothing.
     * Returns when the message is queued; waits while the queue to an up node is full.
     */
    readonly broadcast: Broadcast
    /**
     * The messages published on the channel or topic from now on, by any node, while the scope is
     * open. When the effect returns, every node that is up and counts this node as a member knows of
     * the subscription (or did not answer within `announceTimeout`).
     */
    readonly subscribe: Subscribe
    /** Picks a channel with `explainRouting`'s rules and broadcasts on it; returns the decision. */
    readonly route: (
      message: unknown,
      options?: RouteOptions
    ) => Effect.Effect<RoutingDecision, InvalidMessage>
    /** Which nodes (this one included) have a subscriber for a topic, as this node knows it. */
    readonly subscribers: (topic: string) => Effect.Effect<ReadonlyArray<NodeId>>
    /** Counters per channel. */
    readonly stats: Effect.Effect<{ readonly [C in Channel]: ChannelStats }>
  }
>() {}

/**
 * The seed's routing rules, in order:
 * 1. `priority: "high"` → `control`;
 * 2. encoded size > 10 KB (`largeMessageBytes`) → `data`;
 * 3. a telemetry shape (`{ _tag: "telemetry" }`, `["telemetry", ...]`, or `type: "metric" |
 *    "measurement"`) → `telemetry`;
 * 4. everything else → `events`.
 *
 * The size is the msgpack-encoded size (the analog of `byte_size(:erlang.term_to_binary(message))`).
 * Fails with `InvalidMessage` if msgpack cannot encode the message.
 */
export const explainRouting = (
  message: unknown,
  options?: RouteOptions
): Effect.Effect<RoutingDecision, InvalidMessage> =>
  Effect.map(Internal.encodeUnknown(topicMapping.events, message), (body) =>
    Internal.decide(message, options, body.length)
  )

/** Whether a message has the seed's telemetry shape. */
export const isTelemetry = (message: unknown): boolean => Internal.isTelemetry(message)

/**
 * Builds a node's Channels and serves `ChannelRpcs` on its endpoint (`Node.serve`) until the scope
 * closes.
 */
export const make = (
  settings?: Partial<Settings>
): Effect.Effect<Channels["Type"], never, Node | Scope.Scope> => Internal.make({ ...defaults, ...settings })

/**
 * The Channels layer: one per node, on top of `Node.Node`
 * (`Layer.provide(Channels.layer(), Foundation.layerNode(...))`, or `TestCluster.make({ layer })`).
 */
export const layer = (settings?: Partial<Settings>): Layer.Layer<Channels, never, Node> =>
  Layer.scoped(Channels, make(settings))

/** `Channels.broadcast` through the service in context. */
export const broadcast: {
  (
    channel: Channel | (string & {}),
    message: unknown,
    options?: BroadcastOptions
  ): Effect.Effect<void, UnknownChannel | InvalidMessage, Channels>
  <A, I>(
    topic: Topic<A, I>,
    message: A,
    options?: BroadcastOptions
  ): Effect.Effect<void, InvalidMessage, Channels>
} = ((target: any, message: unknown, options?: BroadcastOptions) =>
  Effect.flatMap(Channels, (channels) => channels.broadcast(target, message, options))) as any

/** `Channels.subscribe` through the service in context. */
export const subscribe: {
  (
    channel: Channel | (string & {}),
    options?: SubscribeOptions
  ): Effect.Effect<Stream.Stream<Envelope<unknown>>, UnknownChannel, Channels | Scope.Scope>
  <A, I>(
    topic: Topic<A, I>,
    options?: SubscribeOptions
  ): Effect.Effect<Stream.Stream<Envelope<A>>, never, Channels | Scope.Scope>
} = ((target: any, options?: SubscribeOptions) =>
  Effect.flatMap(Channels, (channels) => channels.subscribe(target, options))) as any

/** `Channels.route` through the service in context: the seed's `route_message`. */
export const route = (
  message: unknown,
  options?: RouteOptions
): Effect.Effect<RoutingDecision, InvalidMessage, Channels> =>
  Effect.flatMap(Channels, (channels) => channels.route(message, options))

/** `Channels.stats` through the service in context. */
export const stats: Effect.Effect<{ readonly [C in Channel]: ChannelStats }, never, Channels> =
  Effect.flatMap(Channels, (channels) => channels.stats)
