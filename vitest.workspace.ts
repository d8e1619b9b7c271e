import { defineWorkspace } from "vitest/config"

export default defineWorkspace([
  {
    test: {
      name: "core",
      include: ["packages/core/test/**/*.test.ts"],
      testTimeout: 30_000,
      hookTimeout: 30_000
    }
  },
  {
    test: {
      name: "testing",
      include: ["packages/testing/test/**/*.test.ts"],
      testTimeout: 30_000,
      hookTimeout: 30_000
    }
  },
  {
    test: {
      name: "mabeam",
      include: ["packages/mabeam/test/**/*.test.ts"],
      testTimeout: 30_000,
      hookTimeout: 30_000
    }
  },
  {
    test: {
      name: "node",
      include: ["packages/node/test/**/*.test.ts"],
      testTimeout: 60_000,
      hookTimeout: 60_000,
      pool: "forks"
    }
  }
])
