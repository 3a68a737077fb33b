// Reads every clock a script can reach before and after a busy loop of `?n=` steps; during one
// request's synchronous work none of them may move.
function clocks() {
  const fixed = new Intl.DateTimeFormat("en", {
    timeZone: "UTC",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    fractionalSecondDigits: 3,
    hour12: false,
  });
  const medium = new Intl.DateTimeFormat("en", { timeStyle: "medium", timeZone: "UTC" });
  const now = Date.now();
  const temporal =
    typeof Temporal === "undefined" ? "absent" : String(Temporal.Now.instant().epochMilliseconds);
  return {
    dateNow: now,
    perfNow: performance.now(),
    newDate: new Date().getTime(),
    dateString: Date(),
    intlFixed: fixed.format(),
    intlFixedOfNow: fixed.format(now),
    intlMedium: medium.format(),
    intlMediumOfNow: medium.format(now),
    intlParts: JSON.stringify(fixed.formatToParts()),
    relativeNow: new Intl.RelativeTimeFormat("en").format(0, "second"),
    temporal,
  };
}

export default {
  fetch(request) {
    const n = Number(new URL(request.url).searchParams.get("n") ?? "0");
    const before = clocks();
    let x = 0;
    for (let i = 0; i < n; i++) {
      x = (x * 31 + i) % 1000003;
    }
    const after = clocks();
    return Response.json({ before, after, work: x });
  },
};
