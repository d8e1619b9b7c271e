import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import type { ParseError } from "effect/ParseResult"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Channels from "../Channels.js"
import {
  ChannelRpcs,
  InvalidMessage,
  UnknownChannel,
  builtin,
  channels,
  largeMessageBytes,
  topicMapping
} from "../Channels.js"
import { Node, type NodeId } from "../Node.js"
import * as Wire from "./channelWire.js"
import * as FastCodec from "./fastCodec.js"

// -----------------------------------------------------------------------------
// Codecs and routing (pure)
// -----------------------------------------------------------------------------

/** A topic's Schema, compiled once. `identity` for `Schema.Unknown`: msgpack carries the value as is. */
export interface TopicCodec {
  readonly identity: boolean
  readonly encode: (value: unknown) => Either.Either<unknown, ParseError>
  readonly decode: (encoded: unknown) => Either.Either<unknown, ParseError>
}

export const codecOf = <A, I>(schema: Schema.Schema<A, I>): TopicCodec => {
  const identity = schema.ast._tag === "UnknownKeyword" || schema.ast._tag === "AnyKeyword"
  return {
    identity,
    encode: identity ? Either.right : FastCodec.encodeUnknownEither(schema),
    decode: identity ? Either.right : FastCodec.decodeUnknownEither(schema)
  }
}

/** The topics a node subscribes to: a snapshot, versioned per incarnation of the node. */
export class InterestSnapshot extends Schema.Class<InterestSnapshot>("@foundation/Channels/InterestSnapshot")(
  {
    node: Schema.String,
    incarnation: Schema.Number,
    version: Schema.Number,
    topics: Schema.Array(Schema.String)
  }
) {}

/** The msgpack bytes of `message`, or `InvalidMessage`. */
export const encodeUnknown = (
  topic: string,
  message: unknown,
  allocate?: (size: number) => Uint8Array
): Either.Either<Uint8Array, InvalidMessage> => {
  try {
    return Either.right(Wire.encode(message, allocate))
  } catch (cause) {
    return Either.left(
      new InvalidMessage({
        topic,
        reason: `msgpack cannot encode it (${cause instanceof Error ? cause.message : String(cause)})`
      })
    )
  }
}

export const isTelemetry = (message: unknown): boolean => {
  if (Array.isArray(message)) return message[0] === "telemetry"
  if (typeof message !== "object" || message === null) return false
  const record = message as { readonly _tag?: unknown; readonly type?: unknown }
  return record._tag === "telemetry" || record.type === "metric" || record.type === "measurement"
}

export const decide = (
  message: unknown,
  options: Channels.RouteOptions | undefined,
  size: number
): Channels.RoutingDecision => {
  if (options?.priority === "high") {
    return { channel: "control", rule: "priority", size, explanation: "High priority specified -> control" }
  }
  if (size > largeMessageBytes) {
    return { channel: "data", rule: "size", size, explanation: `Large message (${size} bytes) -> data` }
  }
  if (isTelemetry(message)) {
    return {
      channel: "telemetry",
      rule: "telemetry",
      size,
      explanation: "Telemetry pattern detected -> telemetry"
    }
  }
  return { channel: "events", rule: "default", size, explanation: "Default routing -> events" }
}

const compressionOption = (options: Channels.BroadcastOptions | undefined): Wire.Compression | undefined =>
  options?.compression === true ? "deflate" : options?.compression || undefined

// -----------------------------------------------------------------------------
// The engine
// -----------------------------------------------------------------------------

type MutableStats = {
  -readonly [K in keyof Channels.ChannelStats]: number
}

const emptyStats = (): MutableStats => ({
  published: 0,
  sent: 0,
  frames: 0,
  bytesSent: 0,
  bytesReceived: 0,
  received: 0,
  delivered: 0,
  overflowed: 0,
  undelivered: 0,
  unacknowledged: 0,
  undecodable: 0
})

class Envelope<A> implements Channels.Envelope<A> {
  constructor(
    readonly topic: string,
    readonly channel: Channels.Channel,
    readonly from: NodeId,
    readonly incarnation: number,
    readonly seq: number,
    public missed: number,
    readonly message: A
  ) {}
}

interface Subscriber {
  readonly topic: Channels.Topic<any, any>
  readonly mailbox: Mailbox.Mailbox<Envelope<unknown>>
  readonly capacity: number
  readonly stats: MutableStats
}

interface Outbox extends Wire.Queue {
  readonly peer: NodeId
  readonly lane: Channels.Channel
  readonly stats: MutableStats
  /** body bytes queued and not yet taken into a frame */
  queuedBytes: number
  inFlight: number
  /**
   * since when this outbox has been waiting without an acknowledgement: the last acknowledgement,
   * or the send of a frame while none was in flight
   */
  waitingSince: number
  /** a frame timed out and nothing was acknowledged since: the peer is treated as unreachable */
  silent: boolean
  /** a flush is queued */
  scheduled: boolean
  /** the frames awaiting their acknowledgement, with when they were sent */
  readonly sending: Set<Sending>
  readonly waiters: Set<() => void>
}

interface Sending {
  readonly sentAt: number
  fiber: Fiber.RuntimeFiber<void> | undefined
}

interface Inbound {
  readonly from: string
  readonly incarnation: number
  readonly frame: Uint8Array
  readonly part: Uint8Array | undefined
  readonly done: (() => void) | undefined
}

interface Partial {
  readonly topic: string
  readonly seq: number
  readonly flags: number
  /** the body, filled part by part */
  readonly body: Uint8Array
  offset: number
}

interface Lane {
  readonly channel: Channels.Channel
  /** frames waiting; slots before `head` are `undefined`, so a processed frame is not kept alive */
  readonly inbox: Array<Inbound | undefined>
  head: number
  /** a frame of this lane is being processed: the next waits, so frames are processed in order */
  busy: boolean
  wake: (() => void) | undefined
  /** chunked messages being reassembled, by publisher */
  readonly partial: Map<string, Partial>
}

/** The longest bulk frames wait for control (see `controlBusy`), at a time. */
const controlHoldMs = 10

/** How long bulk keeps holding after a control frame arrived or was acknowledged. */
const controlGraceMs = 1

/** A sub-millisecond clock: the grace is 1 ms. */
const now: () => number = () => performance.now()

/** How long an outbox waits after a failed `Deliver` (a broken connection) before sending again. */
const retryDelay = Duration.millis(100)

/** Runs `f` after the event loop's next I/O poll (`setImmediate` where the platform has it). */
const nextTurn: (f: () => void) => void =
  typeof setImmediate === "function" ? (f) => void setImmediate(f) : (f) => void setTimeout(f, 0)

/** Gives the event loop a turn (socket reads of the other lanes) before the next bulk frame. */
const yieldToEventLoop: Effect.Effect<void> = Effect.async<void>((resume) =>
  nextTurn(() => resume(Effect.void))
)

export const make = (
  settings: Channels.Settings
): Effect.Effect<Channels.Channels["Type"], never, Node | Scope.Scope> =>
  Effect.gen(function* () {
    const node = yield* Node
    const self = node.self
    const selfId: string = self.id
    const incarnation = self.startedAt
    const run = yield* FiberSet.makeRuntime<never>()
    const clock = yield* Effect.clock
    const stats: Record<Channels.Channel, MutableStats> = {
      control: emptyStats(),
      events: emptyStats(),
      data: emptyStats(),
      telemetry: emptyStats()
    }

    // --- subscriptions: local, and the replicated view of the other nodes' ---------------------

    const local = new Map<string, Set<Subscriber>>()
    let interestVersion = 0
    const remote = new Map<string, { incarnation: number; version: number; topics: ReadonlySet<string> }>()
    const subscribersOf = new Map<string, Set<string>>()

    const snapshot = () =>
      new InterestSnapshot({
        node: selfId,
        incarnation,
        version: interestVersion,
        topics: Array.from(local.keys())
      })

    /** Bumped whenever the view changes: a publisher's cached targets are stale then. */
    let interestEpoch = 0

    const forgetInterest = (peer: string) => {
      const known = remote.get(peer)
      if (!known) return
      interestEpoch++
      remote.delete(peer)
      warmed.delete(peer)
      for (const topic of known.topics) {
        const nodes = subscribersOf.get(topic)
        nodes?.delete(peer)
        if (nodes?.size === 0) subscribersOf.delete(topic)
      }
    }

    const applyInterest = (interest: InterestSnapshot) => {
      if (interest.node === selfId) return
      const known = remote.get(interest.node)
      if (
        known &&
        (interest.incarnation < known.incarnation ||
          (interest.incarnation === known.incarnation && interest.version <= known.version))
      ) {
        return
      }
      forgetInterest(interest.node)
      interestEpoch++
      remote.set(interest.node, {
        incarnation: interest.incarnation,
        version: interest.version,
        topics: new Set(interest.topics)
      })
      for (const topic of interest.topics) {
        let nodes = subscribersOf.get(topic)
        if (!nodes) subscribersOf.set(topic, (nodes = new Set()))
        nodes.add(interest.node)
      }
      if (interest.topics.length > 0) warmUp(interest.node, interest.incarnation)
    }

    // The lanes to a subscribing node are connected as soon as it subscribes, not by the first
    // message: a publisher busy publishing would only notice the connection afterwards.
    const warmed = new Map<string, number>()
    const warmUp = (peer: string, peerIncarnation: number) => {
      if (warmed.get(peer) === peerIncarnation) return
      warmed.set(peer, peerIncarnation)
      run(
        Effect.forEach(channels, (lane) => node.clientFor(ChannelRpcs, { lane })(peer as NodeId), {
          discard: true
        }).pipe(Effect.ignore)
      )
    }

    const announceTo = (peer: NodeId) =>
      node
        .clientFor(ChannelRpcs, { lane: "control" })(peer)
        .pipe(
          Effect.flatMap((client) => client.Channels.Interest(snapshot())),
          Effect.timeout(settings.announceTimeout),
          Effect.tap((interest) => Effect.sync(() => applyInterest(interest))),
          // a peer without Channels, or not answering: the periodic sync repairs it
          Effect.catchAllCause(() => Effect.void)
        )

    const announceAll = Effect.flatMap(node.members, (members) =>
      Effect.forEach(
        members.filter((member) => member.info.id !== selfId && member.status !== "down"),
        (member) => announceTo(member.info.id),
        { concurrency: "unbounded", discard: true }
      )
    )

    // --- sending ------------------------------------------------------------------------------

    /** By lane, then by peer. */
    const outboxes = new Map<Channels.Channel, Map<string, Outbox>>(channels.map((lane) => [lane, new Map()]))

    const outboxOf = (peer: NodeId, lane: Channels.Channel): Outbox => {
      const byPeer = outboxes.get(lane)!
      let outbox = byPeer.get(peer)
      if (!outbox) {
        outbox = {
          peer,
          lane,
          stats: stats[lane],
          queue: [],
          head: 0,
          partOffset: 0,
          queuedBytes: 0,
          inFlight: 0,
          waitingSince: clock.unsafeCurrentTimeMillis(),
          silent: false,
          scheduled: false,
          sending: new Set(),
          waiters: new Set()
        }
        byPeer.set(peer, outbox)
      }
      return outbox
    }

    const wakeWaiters = (outbox: Outbox) => {
      if (outbox.waiters.size === 0) return
      const waiters = Array.from(outbox.waiters)
      outbox.waiters.clear()
      for (const wake of waiters) wake()
    }

    const compact = (outbox: Outbox) => {
      if (outbox.head > 1024 && outbox.head * 2 > outbox.queue.length) {
        outbox.queue = outbox.queue.slice(outbox.head)
        outbox.head = 0
      }
    }

    const writer = Wire.makeFrameWriter(settings)

    const send = (
      outbox: Outbox,
      frame: Uint8Array,
      part: Uint8Array | undefined,
      sending: Sending,
      partOf: Wire.Outgoing | undefined
    ): Effect.Effect<void> => {
      // an acknowledged part has been read by the peer; an unacknowledged one may still be read
      let acknowledged = false
      return node
        .clientFor(ChannelRpcs, { lane: outbox.lane })(outbox.peer)
        .pipe(
          Effect.flatMap((client) =>
            client.Channels.Deliver({ from: selfId, incarnation, lane: outbox.lane, frame, part })
          ),
          Effect.matchCause({
            onSuccess: () => {
              acknowledged = true
              outbox.waitingSince = clock.unsafeCurrentTimeMillis()
              outbox.silent = false
              return true
            },
            onFailure: () => {
              outbox.stats.unacknowledged++
              return false
            }
          }),
          Effect.flatMap((acknowledged) =>
            Effect.sync(() => {
              outbox.sending.delete(sending)
              landed(outbox)
              if (acknowledged) schedule(outbox)
              else retryLater(outbox)
            })
          ),
          Effect.onInterrupt(() =>
            Effect.sync(() => {
              landed(outbox)
              schedule(outbox)
            })
          ),
          Effect.ensuring(Effect.sync(() => partOf !== undefined && letGo(partOf, !acknowledged)))
        )
    }

    const bodies = Wire.makeBodyPool(settings.maxQueuedBytes)

    /** One holder of `message`'s pooled body lets go (`spoil`: a peer may still read it). */
    const letGo = (message: Wire.Outgoing, spoil: boolean) => {
      const lease = message.lease
      if (lease === undefined) return
      if (spoil) lease.spoiled = true
      if (--lease.holders === 0 && !lease.spoiled) bodies.recycle(message.body)
    }

    /** A frame is no longer in flight (acknowledged, failed or timed out). */
    const landed = (outbox: Outbox) => {
      outbox.inFlight--
      if (outbox.lane === "control") {
        controlQuietAt = now() + controlGraceMs
        if (--controlInFlight === 0) controlIdle()
      }
    }

    // Control first, on this node too: while a control frame is unacknowledged, and for
    // `controlGraceMs` after a control frame arrived or was acknowledged (its answer is usually on
    // its way), bulk frames are neither sent nor processed, for at most `controlHoldMs` at a time
    // (bulk is never starved).
    let controlInFlight = 0
    let controlQuietAt = 0
    const controlBusy = () => controlInFlight > 0 || now() < controlQuietAt
    const controlWaiters = new Set<() => void>()
    const controlIdle = () => {
      const waiters = Array.from(controlWaiters)
      controlWaiters.clear()
      for (const waiter of waiters) waiter()
    }
    const whenControlIdle = (f: () => void) => {
      if (!controlBusy()) return f()
      const deadline = now() + controlHoldMs
      let done = false
      let timer: ReturnType<typeof setTimeout> | undefined
      const check = () => {
        if (done) return
        clearTimeout(timer)
        controlWaiters.delete(check)
        const at = now()
        if (!controlBusy() || at >= deadline) {
          done = true
          return f()
        }
        // woken early when the last control frame lands (`controlIdle`), else when the grace ends
        controlWaiters.add(check)
        const until = controlInFlight > 0 ? deadline : Math.min(deadline, controlQuietAt)
        timer = setTimeout(check, Math.max(0, until - at))
      }
      check()
    }

    // The connection failed (the transport reconnects within ~100 ms): the queue waits for it
    // rather than being drained into calls that fail at once.
    const retryLater = (outbox: Outbox) => {
      if (outbox.scheduled) return
      outbox.scheduled = true
      run(Effect.sleep(retryDelay).pipe(Effect.zipRight(Effect.sync(() => flush(outbox)))))
    }

    const sendFrame = (outbox: Outbox) => {
      if (outbox.inFlight === 0) outbox.waitingSince = clock.unsafeCurrentTimeMillis()
      if (outbox.lane === "control") controlInFlight++
      const { frame, part, partOf, completed, bytes } = writer.take(outbox)
      // the send holds the body of its part before the queue lets go of it
      const lease = partOf?.lease
      if (lease !== undefined) lease.holders++
      for (const message of completed) letGo(message, false)
      outbox.queuedBytes -= bytes
      compact(outbox)
      outbox.inFlight++
      outbox.stats.frames++
      outbox.stats.bytesSent += frame.length + (part?.length ?? 0)
      const sending: Sending = { sentAt: clock.unsafeCurrentTimeMillis(), fiber: undefined }
      outbox.sending.add(sending)
      sending.fiber = run(send(outbox, frame, part, sending, partOf))
    }

    const canSend = (outbox: Outbox) => outbox.inFlight < settings.window && outbox.head < outbox.queue.length

    /** `held`: the data lane just waited for control; one frame goes whatever control does now. */
    const flush = (outbox: Outbox, held = false) => {
      outbox.scheduled = false
      if (outbox.lane === "data") {
        // bulk is paced: one frame per turn of the event loop, so the frames of the other lanes
        // (and everything else this node does) are never queued behind a burst of bulk frames
        if (!held && controlBusy() && canSend(outbox)) {
          outbox.scheduled = true
          whenControlIdle(() => nextTurn(() => flush(outbox, true)))
          return
        }
        if (canSend(outbox)) sendFrame(outbox)
        if (canSend(outbox)) {
          outbox.scheduled = true
          nextTurn(() => flush(outbox))
        }
      } else {
        while (canSend(outbox)) sendFrame(outbox)
      }
      // publishers waiting for room are woken once there is room, not on every frame
      if (outbox.queuedBytes <= settings.maxQueuedBytes) wakeWaiters(outbox)
    }

    /**
     * Sends what is queued once the publishing code yields (a microtask): what it published in the
     * meantime leaves in one frame. At most `window` frames per peer and lane are unacknowledged;
     * what is published meanwhile waits for an acknowledgement and leaves in the next frames.
     */
    const schedule = (outbox: Outbox) => {
      if (outbox.scheduled || !canSend(outbox)) return
      outbox.scheduled = true
      queueMicrotask(() => flush(outbox))
    }

    // A frame unacknowledged after `ackTimeout` (a partition drops it silently) gives its slot back.
    // One sweep for every outbox: a timer per frame would cost more than the frame.
    const ackTimeoutMs = Duration.toMillis(settings.ackTimeout)
    const sweep = Effect.sync(() => {
      const now = clock.unsafeCurrentTimeMillis()
      for (const outbox of Array.from(outboxes.values(), (byPeer) => Array.from(byPeer.values())).flat()) {
        for (const sending of outbox.sending) {
          if (now - sending.sentAt <= ackTimeoutMs) continue
          outbox.sending.delete(sending)
          outbox.stats.unacknowledged++
          outbox.silent = true
          sending.fiber?.unsafeInterruptAsFork(sending.fiber.id())
        }
      }
    })
    yield* sweep.pipe(
      Effect.delay(Duration.millis(Math.max(10, ackTimeoutMs / 4))),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )

    /** Drops whole queued messages from the head until the queue fits (an unreachable peer). */
    const dropOldest = (outbox: Outbox) => {
      // a message partly sent stays: its remaining parts are what the receiver waits for
      if (outbox.partOffset > 0) return
      while (outbox.queuedBytes > settings.maxQueuedBytes && outbox.head < outbox.queue.length) {
        const message = outbox.queue[outbox.head]!
        outbox.queuedBytes -= message.body.length
        letGo(message, true)
        outbox.queue[outbox.head++] = undefined
        outbox.stats.undelivered++
      }
      compact(outbox)
    }

    const clearOutboxes = (peer: string) => {
      for (const byPeer of outboxes.values()) {
        const outbox = byPeer.get(peer)
        if (!outbox) continue
        outbox.stats.undelivered += outbox.queue.length - outbox.head
        for (let index = outbox.head; index < outbox.queue.length; index++) letGo(outbox.queue[index]!, true)
        outbox.queue = []
        outbox.head = 0
        outbox.partOffset = 0
        outbox.queuedBytes = 0
        wakeWaiters(outbox)
        byPeer.delete(peer)
      }
      interestEpoch++
    }

    /** Until `outbox` has room, or 100 ms passed (to look again whether its peer is unreachable). */
    const awaitRoom = (outbox: Outbox): Effect.Effect<void> =>
      Effect.async<void>((resume) => {
        const wake = () => {
          clearTimeout(timer)
          outbox.waiters.delete(wake)
          resume(Effect.void)
        }
        const timer = setTimeout(wake, 100)
        outbox.waiters.add(wake)
        return Effect.sync(() => {
          clearTimeout(timer)
          outbox.waiters.delete(wake)
        })
      })

    /**
     * Waits while the queue to a peer is over its limit. A peer that is down, or has acknowledged
     * nothing for `ackTimeout` while frames were waiting, loses its oldest queued messages instead:
     * an unreachable node must not stop the publisher. A merely suspect peer is waited for (a busy
     * publisher delays its own heartbeats).
     */
    const backpressure = (outbox: Outbox): Effect.Effect<void> =>
      Effect.gen(function* () {
        while (outbox.queuedBytes > settings.maxQueuedBytes) {
          const member = yield* Effect.option(node.member(outbox.peer))
          const stuck =
            outbox.silent ||
            (outbox.inFlight > 0 && clock.unsafeCurrentTimeMillis() - outbox.waitingSince > ackTimeoutMs)
          if (Option.isNone(member) || member.value.status === "down" || stuck) {
            dropOldest(outbox)
            return
          }
          yield* awaitRoom(outbox)
        }
      })

    const enqueue = (outbox: Outbox, message: Wire.Outgoing) => {
      outbox.queue.push(message)
      outbox.queuedBytes += message.body.length
      outbox.stats.sent++
      schedule(outbox)
    }

    // --- delivering to this node's subscribers --------------------------------------------------

    const offer = (subscriber: Subscriber, envelope: Envelope<unknown>) => {
      const size = subscriber.mailbox.unsafeSize()
      const full = Option.isSome(size) && size.value >= subscriber.capacity
      const accepted = subscriber.mailbox.unsafeOffer(envelope)
      if (full || !accepted) subscriber.stats.overflowed++
      if (accepted) subscriber.stats.delivered++
    }

    const deliverLocal = (topic: Channels.Topic<any, any>, seq: number, message: unknown) => {
      const subscribers = local.get(topic.name)
      if (!subscribers) return
      for (const subscriber of subscribers) {
        offer(
          subscriber,
          new Envelope(topic.name, subscriber.topic.channel, self.id, incarnation, seq, 0, message)
        )
      }
    }

    const dispatch = (
      lane: Lane,
      from: string,
      fromIncarnation: number,
      topic: string,
      seq: number,
      encoded: unknown
    ) => {
      const laneStats = stats[lane.channel]
      laneStats.received++
      const subscribers = local.get(topic)
      if (!subscribers) return
      let lastCodec: TopicCodec | undefined
      let lastDecoded: Either.Either<unknown, ParseError> | undefined
      for (const subscriber of subscribers) {
        const codec = subscriber.topic.codec
        if (codec !== lastCodec) {
          lastCodec = codec
          lastDecoded = codec.decode(encoded)
        }
        const decoded = lastDecoded!
        if (Either.isLeft(decoded)) {
          subscriber.stats.undecodable++
          continue
        }
        offer(
          subscriber,
          new Envelope(
            topic,
            subscriber.topic.channel,
            from as NodeId,
            fromIncarnation,
            seq,
            0,
            decoded.right
          )
        )
      }
    }

    const undecodable = (lane: Lane, from: string, what: string, cause: unknown) => {
      stats[lane.channel].undecodable++
      return Effect.logWarning(`Channels: dropped ${what} from ${from} on ${lane.channel}`, cause)
    }

    /**
     * Processes one frame in order. Plain messages are dispatched synchronously; a compressed or
     * chunked one suspends the rest of the frame until it is decoded, so order is kept.
     */
    const processFrame = (lane: Lane, inbound: Inbound): Effect.Effect<void> | undefined => {
      stats[lane.channel].bytesReceived += inbound.frame.length + (inbound.part?.length ?? 0)
      let values: ReadonlyArray<unknown>
      try {
        values = inbound.frame.length === 0 ? [] : Wire.decodeAll(inbound.frame)
      } catch (cause) {
        return undecodable(lane, inbound.from, "an undecodable frame", cause)
      }
      // the part comes after the frame's messages, as if it were their last bin
      if (inbound.part !== undefined) values = [...values, inbound.part]
      const key = `${inbound.from}\u0000${inbound.incarnation}`
      /** Decodes a message's body bytes and dispatches it; an Effect if it must wait (decompression). */
      const complete = (
        topic: string,
        seq: number,
        flagBits: number,
        bytes: Uint8Array
      ): Effect.Effect<void> | undefined => {
        const compression = Wire.compressionOf(flagBits)
        const what = `message ${seq} of ${topic}`
        const decodeAndDispatch = (plain: Uint8Array): Effect.Effect<void> | undefined => {
          let value: unknown
          try {
            value = Wire.decodeAll(plain)[0]
          } catch (cause) {
            return undecodable(lane, inbound.from, what, cause)
          }
          dispatch(lane, inbound.from, inbound.incarnation, topic, seq, value)
          return undefined
        }
        if (compression === undefined) return decodeAndDispatch(bytes)
        return Wire.decompress(bytes, compression).pipe(
          Effect.matchCauseEffect({
            onSuccess: (plain) => decodeAndDispatch(plain) ?? Effect.void,
            onFailure: (cause) => undecodable(lane, inbound.from, what, cause)
          })
        )
      }
      // what remains of the frame after an asynchronous step, run only once that step is done
      const then = (
        first: Effect.Effect<void> | undefined,
        index: number
      ): Effect.Effect<void> | undefined =>
        first === undefined
          ? loop(index)
          : Effect.zipRight(
              first,
              Effect.suspend(() => loop(index) ?? Effect.void)
            )
      const loop = (start: number): Effect.Effect<void> | undefined => {
        let index = start
        while (index < values.length) {
          const value = values[index]
          const partial = lane.partial.get(key)
          if (partial) {
            if (value instanceof Uint8Array && value.length <= partial.body.length - partial.offset) {
              index++
              partial.body.set(value, partial.offset)
              partial.offset += value.length
              if (partial.offset < partial.body.length) continue
              lane.partial.delete(key)
              return then(complete(partial.topic, partial.seq, partial.flags, partial.body), index)
            }
            // the frame carrying the rest of it was lost: that message is gone, this is a new one
            lane.partial.delete(key)
            stats[lane.channel].undecodable++
          }
          index++
          // parts whose header was in a lost frame
          if (!Array.isArray(value)) continue
          const [topic, seq, flagBits, count] = value as [string, number, number, number]
          if (flagBits & Wire.flags.chunked) {
            let body: Uint8Array
            try {
              body = new Uint8Array(count)
            } catch (cause) {
              return then(
                undecodable(lane, inbound.from, `message ${seq} of ${topic} (${count} bytes)`, cause),
                index
              )
            }
            lane.partial.set(key, { topic, seq, flags: flagBits, body, offset: 0 })
            continue
          }
          if (Wire.compressionOf(flagBits) !== undefined) {
            const body = values[index++]
            if (!(body instanceof Uint8Array)) continue
            return then(complete(topic, seq, flagBits, body), index)
          }
          const end = Math.min(values.length, index + count)
          for (let offset = 0; index < end; offset++)
            dispatch(lane, inbound.from, inbound.incarnation, topic, seq + offset, values[index++])
        }
        return undefined
      }
      return loop(0)
    }

    const lanes = Object.fromEntries(
      channels.map((channel) => [
        channel,
        { channel, inbox: [], head: 0, busy: false, wake: undefined, partial: new Map() } satisfies Lane
      ])
    ) as unknown as Record<Channels.Channel, Lane>

    const awaitInbound = (lane: Lane) =>
      Effect.async<void>((resume) => {
        lane.wake = () => {
          lane.wake = undefined
          resume(Effect.void)
        }
        return Effect.sync(() => (lane.wake = undefined))
      })

    const release = (lane: Lane) => {
      lane.busy = false
      if (lane.head < lane.inbox.length) lane.wake?.()
    }

    // One worker per lane processes the frames that arrive while another frame of the lane is being
    // processed, in arrival order; a lane's slow frame (a large or compressed message) never holds
    // up another lane. The data worker gives the event loop a turn after every frame, so frames of
    // the other lanes that arrived meanwhile are read and processed first.
    const worker = (lane: Lane) =>
      Effect.gen(function* () {
        while (true) {
          if (lane.busy || lane.head >= lane.inbox.length) {
            if (lane.head >= lane.inbox.length) {
              lane.inbox.length = 0
              lane.head = 0
            }
            yield* awaitInbound(lane)
            continue
          }
          const inbound = lane.inbox[lane.head]!
          lane.inbox[lane.head++] = undefined
          if (lane.head > 1024 && lane.head * 2 > lane.inbox.length) {
            lane.inbox.splice(0, lane.head)
            lane.head = 0
          }
          lane.busy = true
          const pending = processFrame(lane, inbound)
          if (pending)
            yield* Effect.ensuring(
              pending,
              Effect.sync(() => (lane.busy = false))
            )
          lane.busy = false
          inbound.done?.()
          if (lane.channel === "data") {
            yield* yieldToEventLoop
            if (controlBusy()) {
              yield* Effect.async<void>((resume) => whenControlIdle(() => resume(Effect.void)))
            }
          }
        }
      })

    /**
     * A frame that finds its lane idle is processed at once by the request's fiber (no hop to the
     * worker); data frames always go through the worker, which paces them.
     */
    const receive = (lane: Lane, inbound: Inbound): Effect.Effect<void> => {
      if (lane.channel !== "data" && !lane.busy && lane.head >= lane.inbox.length) {
        lane.busy = true
        const pending = processFrame(lane, inbound)
        if (pending === undefined) {
          release(lane)
          return Effect.void
        }
        return Effect.ensuring(
          pending,
          Effect.sync(() => release(lane))
        )
      }
      return Effect.async<void>((resume) => {
        lane.inbox.push({ ...inbound, done: () => resume(Effect.void) })
        if (!lane.busy) lane.wake?.()
      })
    }

    for (const channel of channels) yield* Effect.forkScoped(Effect.interruptible(worker(lanes[channel])))

    yield* node.serve(
      ChannelRpcs,
      yield* ChannelRpcs.toHandlersContext({
        "Channels.Deliver": ({ from, incarnation: fromIncarnation, lane, frame, part }) =>
          Effect.suspend(() => {
            if (lane === "control") controlQuietAt = now() + controlGraceMs
            return receive(lanes[lane], { from, incarnation: fromIncarnation, frame, part, done: undefined })
          }),
        // Interest from a node this node does not count as a member yet (discovery polls the
        // directory) is not applied: a copy could not be sent to it. It is exchanged again when
        // that node comes up here (`NodeUp`, below).
        "Channels.Interest": (interest) =>
          node.member(interest.node as NodeId).pipe(
            Effect.map((member) => {
              if (member.status !== "down") applyInterest(interest)
              return snapshot()
            }),
            Effect.orElseSucceed(snapshot)
          )
      })
    )

    // --- membership: announce to nodes that come up, forget nodes that go down ------------------

    const events = yield* node.events
    yield* events.pipe(
      Stream.runForEach((event) => {
        switch (event._tag) {
          case "NodeUp":
            return event.node.id === selfId
              ? Effect.void
              : Effect.asVoid(Effect.sync(() => run(announceTo(event.node.id))))
          case "NodeDown":
            return Effect.sync(() => {
              forgetInterest(event.node.id)
              clearOutboxes(event.node.id)
            })
          default:
            return Effect.void
        }
      }),
      Effect.interruptible,
      Effect.forkScoped
    )
    yield* announceAll.pipe(
      Effect.schedule(Schedule.spaced(settings.interestSyncInterval)),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )
    run(announceAll)

    // --- the API --------------------------------------------------------------------------------

    const resolve = (
      target: string | Channels.Topic<any, any>
    ): Either.Either<Channels.Topic<any, any>, UnknownChannel> => {
      if (typeof target !== "string") return Either.right(target)
      const topic = (builtin as Record<string, Channels.Topic<unknown>>)[target]
      return topic && Object.hasOwn(builtin, target)
        ? Either.right(topic)
        : Either.left(new UnknownChannel({ channel: target, available: Object.keys(topicMapping) }))
    }

    /** What this node keeps per topic it publishes on. */
    interface Publishing {
      readonly bytes: Uint8Array
      seq: number
      /** the outboxes of the nodes subscribing, as of `epoch` */
      targets: ReadonlyArray<Outbox>
      epoch: number
      lane: Channels.Channel | undefined
    }
    const publishing = new Map<string, Publishing>()

    const publishingOf = (topic: Channels.Topic<any, any>): Publishing => {
      let state = publishing.get(topic.name)
      if (state === undefined) {
        state = { bytes: Wire.topicBytes(topic.name), seq: 0, targets: [], epoch: -1, lane: undefined }
        publishing.set(topic.name, state)
      }
      if (state.epoch !== interestEpoch || state.lane !== topic.channel) {
        const nodes = subscribersOf.get(topic.name)
        state.targets =
          nodes === undefined ? [] : Array.from(nodes, (peer) => outboxOf(peer as NodeId, topic.channel))
        state.epoch = interestEpoch
        state.lane = topic.channel
      }
      return state
    }

    /**
     * Delivers the message here and queues it for every subscribing node. `body` is its msgpack
     * bytes when the caller has them already (`route`).
     */
    const publish = (
      topic: Channels.Topic<any, any>,
      message: unknown,
      body: Uint8Array | undefined,
      compression: Wire.Compression | undefined
    ): Effect.Effect<void, InvalidMessage> => {
      let value = message
      // validated even when no other node listens: a message is valid or not regardless of who listens
      if (!topic.codec.identity) {
        const encoded = topic.codec.encode(message)
        if (Either.isLeft(encoded)) {
          return Effect.fail(new InvalidMessage({ topic: topic.name, reason: encoded.left.message }))
        }
        value = encoded.right
      }
      const remoteTargets = publishingOf(topic).targets.length > 0
      let bytes = body
      if (remoteTargets && bytes === undefined) {
        const encoded = encodeUnknown(topic.name, value, bodies.allocate)
        if (Either.isLeft(encoded)) return Effect.fail(encoded.left)
        bytes = encoded.right
      }
      if (!remoteTargets || compression === undefined) return enqueueAll(topic, message, bytes, 0)
      const plain = bytes!
      return Wire.compress(plain, compression).pipe(
        Effect.orDie,
        Effect.ensuring(Effect.sync(() => bodies.recycle(plain))),
        Effect.tap((compressed) =>
          Effect.logDebug(
            `Foundation.Channels: message compressed (${compression}): ${plain.length} -> ${compressed.length} bytes (ratio ${(compressed.length / Math.max(1, plain.length)).toFixed(3)})`
          )
        ),
        Effect.flatMap((compressed) =>
          enqueueAll(
            topic,
            message,
            compressed,
            compression === "gzip" ? Wire.flags.gzip : Wire.flags.deflate
          )
        )
      )
    }

    const enqueueAll = (
      topic: Channels.Topic<any, any>,
      message: unknown,
      body: Uint8Array | undefined,
      flagBits: number
    ): Effect.Effect<void> => {
      const state = publishingOf(topic)
      const seq = ++state.seq
      stats[topic.channel].published++
      deliverLocal(topic, seq, message)
      const targets = state.targets
      if (body === undefined) return Effect.void
      if (targets.length === 0) {
        bodies.recycle(body)
        return Effect.void
      }
      const outgoing: Wire.Outgoing = {
        topic: state.bytes,
        seq,
        flags: flagBits,
        body,
        chunked: body.length > settings.chunkSize,
        // held by this loop until every queue holds it
        lease: bodies.owns(body) ? { holders: 1, spoiled: false } : undefined
      }
      let full: Array<Outbox> | undefined
      for (const outbox of targets) {
        if (outgoing.lease !== undefined) outgoing.lease.holders++
        enqueue(outbox, outgoing)
        if (outbox.queuedBytes > settings.maxQueuedBytes) (full ??= []).push(outbox)
      }
      letGo(outgoing, false)
      return full === undefined ? Effect.void : Effect.forEach(full, backpressure, { discard: true })
    }

    const addSubscriber = (subscriber: Subscriber) =>
      Effect.suspend(() => {
        const name = subscriber.topic.name
        let set = local.get(name)
        const first = set === undefined
        if (!set) local.set(name, (set = new Set()))
        set.add(subscriber)
        if (!first) return Effect.void
        interestVersion++
        return announceAll
      })

    const removeSubscriber = (subscriber: Subscriber) =>
      Effect.sync(() => {
        subscriber.mailbox.unsafeDone(Exit.void)
        const name = subscriber.topic.name
        const set = local.get(name)
        if (!set) return
        set.delete(subscriber)
        if (set.size > 0) return
        local.delete(name)
        interestVersion++
        run(announceAll)
      })

    const subscribe = (target: string | Channels.Topic<any, any>, options?: Channels.SubscribeOptions) =>
      Effect.gen(function* () {
        const topic = yield* resolve(target)
        const capacity = Math.max(1, options?.bufferSize ?? settings.bufferSize)
        const dropNewest = (options?.overflow ?? settings.overflow) === "dropNewest"
        const mailbox = yield* Mailbox.make<Envelope<unknown>>({
          capacity,
          strategy: dropNewest ? "dropping" : "sliding"
        })
        const subscriber: Subscriber = { topic, mailbox, capacity, stats: stats[topic.channel] }
        yield* Effect.acquireRelease(addSubscriber(subscriber), () => removeSubscriber(subscriber))
        return Stream.suspend(() => {
          const last = new Map<string, number>()
          return Mailbox.toStream(mailbox).pipe(
            Stream.mapChunks((chunk) =>
              Chunk.map(chunk, (envelope) => {
                const key = `${envelope.from}\u0000${envelope.incarnation}`
                const previous = last.get(key)
                if (previous !== undefined && envelope.seq > previous + 1)
                  envelope.missed = envelope.seq - previous - 1
                last.set(key, envelope.seq)
                return envelope
              })
            )
          )
        })
      })

    return {
      broadcast: ((
        target: string | Channels.Topic<any, any>,
        message: unknown,
        options?: Channels.BroadcastOptions
      ) =>
        Effect.suspend((): Effect.Effect<void, UnknownChannel | InvalidMessage> => {
          const topic = resolve(target)
          if (Either.isLeft(topic)) return Effect.fail(topic.left)
          return publish(topic.right, message, undefined, compressionOption(options))
        })) as Channels.Broadcast,
      subscribe: subscribe as Channels.Subscribe,
      route: (message, options) =>
        Effect.suspend(() => {
          const body = encodeUnknown(topicMapping.events, message)
          if (Either.isLeft(body)) return Effect.fail(body.left)
          const decision = decide(message, options, body.right.length)
          return Effect.logDebug(
            `Foundation.Channels: Auto-routing message to ${decision.channel} channel`,
            `Routing logic: ${decision.explanation}`
          ).pipe(
            Effect.zipRight(
              publish(builtin[decision.channel], message, body.right, compressionOption(options))
            ),
            Effect.as(decision)
          )
        }),
      subscribers: (topic) =>
        Effect.sync(() => {
          const nodes = Array.from(subscribersOf.get(topic) ?? []) as Array<NodeId>
          return local.has(topic) ? [self.id, ...nodes] : nodes
        }),
      stats: Effect.sync(() => ({
        control: { ...stats.control },
        events: { ...stats.events },
        data: { ...stats.data },
        telemetry: { ...stats.telemetry }
      }))
    }
  })
