import { eq, ok } from "./assert.js";

// A multipart upload as a client sends it (the request is made by formdata/mod.rs).
export default {
  async fetch(request) {
    const form = await request.formData();
    eq(form.get("title"), "Hello, world", "text field");
    const upload = form.get("upload");
    ok(upload instanceof File, "the file part is a File");
    eq([upload.name, upload.type, upload.size], ["a.bin", "application/x-thing", 4], "file metadata");
    eq([...new Uint8Array(await upload.arrayBuffer())], [0, 1, 2, 255], "file bytes");
    ok(request.bodyUsed, "the body is used");
    return new Response("ok");
  },
};
