// Spins at top level, before the handler exists: only the start-up CPU limit can stop it.
while (true) {}
export default {
  fetch() {
    return new Response("unreachable\n");
  },
};
