export default {
  async fetch(request) {
    const x = ;
    return new Response("unreachable");
  },
};
