// Echoes the request body back byte for byte, with its length and a checksum in headers.
export default {
  async fetch(request) {
    const body = new Uint8Array(await request.arrayBuffer());
    let sum = 0;
    for (let i = 0; i < body.length; i++) sum = (sum * 31 + body[i]) >>> 0;
    return new Response(body, { headers: { "x-length": String(body.length), "x-sum": String(sum) } });
  },
};
