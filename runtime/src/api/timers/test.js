import { eq, ok } from "./assert.js";

export default {
  async fetch() {
    const order = [];
    queueMicrotask(() => order.push("micro"));
    const t = setTimeout(() => order.push("cancelled"), 1);
    clearTimeout(t);
    await new Promise((resolve) => setTimeout(() => { order.push("timeout"); resolve(); }, 5));
    let n = 0;
    await new Promise((resolve) => {
      const i = setInterval(() => { if (++n === 3) { clearInterval(i); resolve(); } }, 1);
    });
    eq(order, ["micro", "timeout"], "order of callbacks");
    eq(n, 3, "interval ran three times");
    const args = await new Promise((resolve) => setTimeout((a, b) => resolve([a, b]), 0, "x", 2));
    eq(args, ["x", 2], "timer arguments");
    ok(typeof performance.now() === "number", "performance.now");
    // The frozen clock still makes a real Date.
    const d = new Date();
    ok(d instanceof Date && !isNaN(d.getTime()), "new Date() is a Date");
    eq(new Date(0).toISOString(), "1970-01-01T00:00:00.000Z", "Date with arguments");
    ok(Math.abs(Date.now() - d.getTime()) < 1000, "Date.now() agrees with new Date()");
    eq(typeof Date(), "string", "Date() called as a function");
    class MyDate extends Date {}
    ok(new MyDate(5) instanceof Date && new MyDate(5).getTime() === 5, "subclassing Date");
    ok(Date.UTC(2000, 0) === 946684800000 && Date.parse("2000-01-01T00:00:00Z") === 946684800000, "Date.UTC/parse");
    return new Response("ok");
  },
};
