// The README quickstart's Greeter, written with the official TypeScript SDK and started with
// identity keys: it accepts only requests signed with one of $IDENTITY_KEYS (comma-separated
// publickeyv1_... ids). tests/security/test_request_identity.py runs it through durably.
//
//   PORT=9080 IDENTITY_KEYS=publickeyv1_... node signed_service.mjs

if (typeof Promise.withResolvers !== "function") {
  // SDK 1.17.2 needs it (Node >= 22); see service.mjs
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

const greeter = restate.service({
  name: "TsGreeter",
  handlers: {
    greet: async (ctx, name) => {
      const count = await ctx.run("count", () => 1);
      await ctx.sleep(100);
      return `Hello ${name}! (${count})`;
    },
  },
});

const identityKeys = (process.env.IDENTITY_KEYS ?? "").split(",").filter((k) => k);
const port = await restate.serve({
  services: [greeter],
  port: Number(process.env.PORT ?? 9080),
  identityKeys,
});
console.log(`listening on ${port}`);
