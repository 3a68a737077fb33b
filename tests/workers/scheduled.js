// The Worker the Cron Trigger tests run (tests/e2e/cron.rs). `scheduled` logs which cron fired
// and when it was due; a cron of "0 0 1 1 *" makes it throw, "0 0 2 1 *" makes it reject after
// a waitUntil'd timer.
export default {
  async fetch(request) {
    return new Response("fetch\n");
  },
  async scheduled(controller, env, ctx) {
    if (controller.cron === "0 0 1 1 *") throw new Error("thrown on purpose");
    ctx.waitUntil(new Promise((resolve) => setTimeout(resolve, 20)));
    if (controller.cron === "0 0 2 1 *") {
      await new Promise((resolve) => setTimeout(resolve, 10));
      throw new Error("rejected on purpose");
    }
    controller.noRetry();
    console.log(`fired cron=${controller.cron} scheduledTime=${controller.scheduledTime} env=${env.WHO ?? "-"} ${controller instanceof ScheduledController}`);
  },
};
