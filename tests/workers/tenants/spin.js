// `/spin` never returns: only the CPU time limit can stop it. Every other path answers at once.
export default {
  fetch(request) {
    if (new URL(request.url).pathname === "/spin") {
      while (true) {}
    }
    return new Response("spin ok\n");
  },
};
