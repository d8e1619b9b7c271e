import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as FoundationNode from "../src/FoundationNode.js"

const fromEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(FoundationNode.config, ConfigProvider.fromMap(new Map(Object.entries(env))))

const failure = (env: Record<string, string>) =>
  fromEnv(env).pipe(
    Effect.flip,
    Effect.map((error) => String(error))
  )

describe("node options from FOUNDATION_* variables", () => {
  it.effect("apply the defaults and never read HOST or PORT", () =>
    Effect.gen(function* () {
      const options = yield* fromEnv({ FOUNDATION_NODE_ID: "n1", HOST: "10.1.2.3", PORT: "8080" })
      expect(options).toMatchObject({
        id: "n1",
        host: "127.0.0.1",
        port: 4370,
        runnerPort: 4371,
        storage: { _tag: "sqlite", filename: ".foundation/foundation.db" },
        failureDetection: "foundation"
      })
    })
  )

  it.effect("choose PostgreSQL when FOUNDATION_DATABASE_URL is set", () =>
    Effect.gen(function* () {
      const options = yield* fromEnv({
        FOUNDATION_NODE_ID: "n1",
        FOUNDATION_PORT: "7001",
        FOUNDATION_RUNNER_PORT: "7101",
        FOUNDATION_DATABASE_URL: "postgres://u@db:5432/app",
        FOUNDATION_TABLE_PREFIX: "shop",
        FOUNDATION_SHARDS_PER_GROUP: "60"
      })
      expect(options).toMatchObject({
        port: 7001,
        runnerPort: 7101,
        storage: { _tag: "postgres", url: "postgres://u@db:5432/app" },
        tablePrefix: "shop",
        sharding: { shardsPerGroup: 60 }
      })
    })
  )

  it.effect("reject a bad value with a ConfigError naming its variable", () =>
    Effect.gen(function* () {
      expect(yield* failure({ FOUNDATION_NODE_ID: "n1", FOUNDATION_PORT: "abc" })).toContain(
        "FOUNDATION_PORT"
      )
      expect(yield* failure({ FOUNDATION_NODE_ID: "n1", FOUNDATION_RUNNER_PORT: "70000" })).toContain(
        "FOUNDATION_RUNNER_PORT"
      )
      expect(yield* failure({ FOUNDATION_NODE_ID: "n1", FOUNDATION_DATABASE_URL: "mysql://x" })).toContain(
        "FOUNDATION_DATABASE_URL"
      )
      expect(yield* failure({ FOUNDATION_NODE_ID: "n1", FOUNDATION_FAILURE_DETECTION: "fast" })).toContain(
        "FOUNDATION_FAILURE_DETECTION"
      )
      expect(yield* failure({ FOUNDATION_NODE_ID: "n1", FOUNDATION_TABLE_PREFIX: "a-b" })).toContain(
        "FOUNDATION_TABLE_PREFIX"
      )
      expect(yield* failure({ FOUNDATION_NODE_ID: " " })).toContain("FOUNDATION_NODE_ID")
      expect(yield* failure({})).toContain("FOUNDATION_NODE_ID")
      expect(
        yield* failure({
          FOUNDATION_NODE_ID: "n1",
          FOUNDATION_DATABASE_URL: "postgres://u@db/app",
          FOUNDATION_SQLITE_FILE: "x.db"
        })
      ).toContain("not both")
    })
  )
})
