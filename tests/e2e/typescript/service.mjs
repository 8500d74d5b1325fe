// A Restate service written with the official TypeScript SDK (@restatedev/restate-sdk 1.17.2),
// served by Node's HTTP/2 server (restate.serve). tests/e2e/test_typescript_service.py runs it
// through the server under test (durably, or the real Restate server as the oracle).
//
//   PORT=9080 node service.mjs
//
// Prints "listening on <port>" once the HTTP/2 server accepts connections.

// SDK 1.17.2 uses Promise.withResolvers (Node >= 22). On Node 20 it must exist *before* the
// SDK module is evaluated, hence the dynamic import below (static imports are hoisted).
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

const restate = await import("@restatedev/restate-sdk");
const { randomUUID } = await import("node:crypto");

// Python services of tests/conformance/services/, called through the server.
const Counter = { name: "Counter" };
const TestUtilsService = { name: "TestUtilsService" };

// How often the ctx.run closure actually ran in this process (not journaled on purpose).
let runExecutions = 0;

const tsObject = restate.object({
  name: "TsObject",
  handlers: {
    // input: {"name": string, "delta": number, "sleepMs": number}
    process: async (ctx, input) => {
      const { name, delta, sleepMs } = input;

      // object state: read, then write
      const visits = ((await ctx.get("visits")) ?? 0) + 1;
      ctx.set("visits", visits);
      const previousRunId = (await ctx.get("lastRunId")) ?? null;

      // a side effect whose result is journaled
      const runId = await ctx.run("make-run-id", () => {
        runExecutions += 1;
        return `run-${randomUUID()}`;
      });
      ctx.set("lastRunId", runId);

      // a durable timer, bracketed by journaled clock readings
      const beforeSleep = await ctx.date.now();
      await ctx.sleep(sleepMs);
      const afterSleep = await ctx.date.now();

      // calls into the Python services
      const counter = await ctx.objectClient(Counter, ctx.key).add(delta);
      // Counter.get takes no input: send no body and no content-type
      const counterValue = await ctx
        .objectClient(Counter, ctx.key)
        .get(restate.rpc.opts({ input: restate.serde.empty }));
      const upper = await ctx.serviceClient(TestUtilsService).uppercaseEcho(name);

      return {
        key: ctx.key,
        visits,
        previousRunId,
        runId,
        sleptMs: afterSleep - beforeSleep,
        counter,
        counterValue,
        upper,
      };
    },

    getState: restate.handlers.object.shared(async (ctx) => ({
      visits: (await ctx.get("visits")) ?? null,
      lastRunId: (await ctx.get("lastRunId")) ?? null,
    })),

    runExecutions: restate.handlers.object.shared(async () => runExecutions),
  },
});

// A handler whose input declares a JSON schema: the web UI's playground draws a form from it
// (tests/ui/test_playground_typescript.py).
const tsShop = restate.service({
  name: "TsShop",
  handlers: {
    order: restate.handlers.handler(
      {
        input: new restate.serde.JsonSerde({
          type: "object",
          properties: {
            item: { type: "string", minLength: 1, description: "What to order" },
            quantity: { type: "integer", minimum: 1, maximum: 10 },
            express: { type: "boolean" },
            size: { enum: ["S", "M", "L"] },
          },
          required: ["item"],
          additionalProperties: false,
        }),
      },
      async (ctx, req) => ({ ...req, total: (req.quantity ?? 1) * 3 }),
    ),
  },
});

const port = await restate.serve({ services: [tsObject, tsShop], port: Number(process.env.PORT ?? 9080) });
console.log(`listening on ${port}`);
