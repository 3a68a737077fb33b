// Reports which of the setter tenant's traces it can see (all must be "undefined").
export default {
  fetch() {
    return Response.json({
      topLevelVar: typeof globalThis.topLevelVar,
      leaked: typeof globalThis.leaked,
      leakedAtRequest: typeof globalThis.leakedAtRequest,
      arrayPolluted: typeof [].polluted,
      objectPolluted: typeof {}.isobarTestPolluted,
    });
  },
};
